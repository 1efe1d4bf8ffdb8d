package webhook

import (
	"errors"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// patch is an RFC 6902 JSON Patch of "add" operations only, written against
// the pod as the API server sent it. It never replaces or removes what is
// there, so fields that this build's k8s.io/api does not know survive.
type patch []operation

// operation is one JSON Patch operation.
type operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// add adds value at path.
func (p *patch) add(path string, value any) {
	*p = append(*p, operation{Op: "add", Path: path, Value: value})
}

// appendTo appends items to the array at path, which holds n items: with
// none, one operation sets the whole array (the member may be absent or
// null); otherwise each item is added at path/-.
func appendTo[T any](p *patch, path string, n int, items ...T) {
	switch {
	case len(items) == 0:
	case n == 0:
		p.add(path, items)
	default:
		for _, item := range items {
			p.add(path+"/-", item)
		}
	}
}

// escapePointer escapes s as one JSON Pointer (RFC 6901) reference token.
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// inject returns the patch that adds the sidecar, its volumes and the app
// containers' mounts to pod as s configures them, and marks the pod with
// [AnnotationStatus]. pod carries the inject annotation. The native sidecar
// (or the --once init container) is appended last to the init containers:
// init containers that set up the pod's network (service meshes) run first,
// and the app containers start only after it is ready. Init containers
// therefore cannot read the passwords. A name or mount path taken by the pod
// is an error that says what collides and how to fix it.
func inject(pod *corev1.Pod, s *settings, image string) (patch, error) {
	vols := volumes(s)
	if err := checkCollisions(pod, s, vols); err != nil {
		return nil, err
	}
	mounts := sidecarMounts(s)
	id, err := appIdentity(pod.Spec.Containers).missing(nil, mounts)
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, id.mounts...)

	var p patch
	appendTo(&p, "/spec/volumes", len(pod.Spec.Volumes), vols...)
	for _, i := range s.appContainers {
		appendTo(&p, fmt.Sprintf("/spec/containers/%d/volumeMounts", i), len(pod.Spec.Containers[i].VolumeMounts), appMount(s))
	}
	sidecar := sidecarContainer(s, image, id.env, mounts)
	if s.native {
		appendTo(&p, "/spec/initContainers", len(pod.Spec.InitContainers), sidecar)
	} else {
		appendTo(&p, "/spec/initContainers", len(pod.Spec.InitContainers), onceContainer(s, image, id.env, mounts))
		appendTo(&p, "/spec/containers", len(pod.Spec.Containers), sidecar)
	}
	p.add("/metadata/annotations/"+escapePointer(AnnotationStatus), StatusInjected)
	return p, nil
}

// checkCollisions reports every volume, container and mount path of pod
// that the injection, which adds vols, would collide with.
func checkCollisions(pod *corev1.Pod, s *settings, vols []corev1.Volume) error {
	var problems []string
	if len(pod.Spec.Containers) == 0 {
		problems = append(problems, "the pod has no containers")
	}
	for _, v := range vols {
		for _, have := range pod.Spec.Volumes {
			if have.Name == v.Name {
				problems = append(problems, fmt.Sprintf("the pod already has a volume named %q, which the webhook adds: rename the pod's volume", v.Name))
			}
		}
	}
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == "" {
			problems = append(problems, fmt.Sprintf("spec.containers[%d] has no name", i))
		}
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		names = append(names, c.Name)
	}
	for _, n := range names {
		if isSidecar(n) {
			problems = append(problems, fmt.Sprintf("the pod already has a container named %q, a name the webhook reserves for its sidecar (%s, %s): rename the pod's container", n, ContainerName, InitContainerName))
		}
	}
	for _, i := range s.appContainers {
		c := pod.Spec.Containers[i]
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == s.mountPath {
				problems = append(problems, fmt.Sprintf("container %q already mounts %q at %s, where the webhook mounts the passwords: set %s to a free path, or leave the container out with %s",
					c.Name, m.Name, s.mountPath, AnnotationMountPath, AnnotationContainers))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// reinvoke returns the patch for a pod that was injected before: its sidecar
// containers get the AWS identity that app containers acquired since (the
// EKS Pod Identity or IRSA webhook running after this one), and nothing
// else. A second call on the patched pod returns an empty patch.
func reinvoke(pod *corev1.Pod) (patch, error) {
	id := appIdentity(pod.Spec.Containers)
	var p patch
	found := false
	for _, list := range []struct {
		field      string
		containers []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i, c := range list.containers {
			if !isSidecar(c.Name) {
				continue
			}
			found = true
			add, err := id.missing(c.Env, c.VolumeMounts)
			if err != nil {
				return nil, fmt.Errorf("container %q: %w", c.Name, err)
			}
			base := fmt.Sprintf("/spec/%s/%d", list.field, i)
			appendTo(&p, base+"/env", len(c.Env), add.env...)
			appendTo(&p, base+"/volumeMounts", len(c.VolumeMounts), add.mounts...)
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: %q is set but the pod has no %s container: remove the annotation, the webhook writes it",
			AnnotationStatus, StatusInjected, ContainerName)
	}
	return p, nil
}

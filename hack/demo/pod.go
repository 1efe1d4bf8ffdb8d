package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/apply"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// createPod is step 4: the example's ConfigMaps and ServiceAccount are
// applied, and its Deployment's pod template is created as a Pod, as the
// Deployment's ReplicaSet would (there is no controller-manager here).
func (d *demo) createPod(ctx context.Context) error {
	dir := filepath.Join(d.manifests, "examples", "clouddriver")
	_, objs, err := apply.Build(dir)
	if err != nil {
		return err
	}
	var deployment *unstructured.Unstructured
	var rest []*unstructured.Unstructured
	var names []string
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deployment = o
			continue
		}
		rest = append(rest, o)
		names = append(names, o.GetKind()+" "+o.GetName())
	}
	if deployment == nil {
		return fmt.Errorf("%s has no Deployment", dir)
	}
	ns := deployment.GetNamespace()
	err = d.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	d.printf("    created Namespace %s (the example joins an existing Spinnaker namespace)\n", ns)
	if err := apply.Objects(ctx, d.client, fieldManager, rest...); err != nil {
		return err
	}
	d.printf("    applied %s without its Deployment: %s\n", dir, strings.Join(names, ", "))
	for _, o := range rest {
		if o.GetKind() != "ConfigMap" {
			continue
		}
		cm := &corev1.ConfigMap{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, cm); err != nil {
			return err
		}
		d.configMaps = append(d.configMaps, cm)
		for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
			d.printf("    ConfigMap %s, %s:\n", cm.Name, key)
			for _, line := range strings.Split(strings.TrimRight(cm.Data[key], "\n"), "\n") {
				d.printf("      | %s\n", line)
			}
		}
	}

	pod, err := apply.TemplatePod(deployment)
	if err != nil {
		return err
	}
	var envNames []string
	for _, kv := range d.srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		envNames = append(envNames, k)
		for i := range pod.Spec.Containers {
			pod.Spec.Containers[i].Env = append(pod.Spec.Containers[i].Env, corev1.EnvVar{Name: k, Value: v})
		}
	}
	d.printf("    Deployment %s's pod template becomes a Pod, as its ReplicaSet would create it; its containers get\n", deployment.GetName())
	d.printf("    %s pointing at the loopback endpoint, standing in for the AWS identity IRSA or EKS Pod Identity gives them\n", strings.Join(envNames, ", "))

	// The API server may need a moment to use the new webhook
	// configuration and its caBundle: dry runs until the pod comes back
	// injected, then the real create.
	var lastErr error
	if err := waitFor(ctx, 30*time.Second, "the API server to call the webhook", d.webhook, func() (bool, error) {
		p := pod.DeepCopy()
		if lastErr = d.client.Create(ctx, p, client.DryRunAll); lastErr != nil {
			return false, nil
		}
		lastErr = fmt.Errorf("a dry run came back without annotation %s", webhook.AnnotationStatus)
		return p.Annotations[webhook.AnnotationStatus] == webhook.StatusInjected, nil
	}); err != nil {
		return fmt.Errorf("%w (last: %v)", err, lastErr)
	}
	_ = d.warnings.take()
	created := pod.DeepCopy()
	if err := d.client.Create(ctx, created); err != nil {
		return err
	}
	warnings := d.warnings.take()
	d.printf("    created Pod %s/%s; the webhook added:\n", created.Namespace, created.Name)
	for _, line := range added(pod, created) {
		d.printf("      %s\n", line)
	}
	if len(warnings) == 0 {
		d.printf("    admission warnings: none\n")
	}
	for _, w := range warnings {
		d.printf("    admission warning: %s\n", w)
	}
	if created.Annotations[webhook.AnnotationStatus] != webhook.StatusInjected {
		return fmt.Errorf("pod %s was created without the sidecar", created.Name)
	}
	d.pod = created
	return nil
}

// added describes what after has that before has not: annotations,
// containers, volumes and mounts. Env values are left out, names only.
func added(before, after *corev1.Pod) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(after.Annotations)) {
		if _, ok := before.Annotations[k]; !ok {
			out = append(out, fmt.Sprintf("annotation %s: %q", k, after.Annotations[k]))
		}
	}
	describe := func(kind string, was []corev1.Container, now []corev1.Container) {
		for _, c := range now {
			i := slices.IndexFunc(was, func(w corev1.Container) bool { return w.Name == c.Name })
			if i < 0 {
				out = append(out, container(kind, c)...)
				continue
			}
			for _, m := range c.VolumeMounts {
				if !slices.ContainsFunc(was[i].VolumeMounts, func(w corev1.VolumeMount) bool { return w.MountPath == m.MountPath }) {
					out = append(out, fmt.Sprintf("%s %s: mounts %s", kind, c.Name, mount(m)))
				}
			}
		}
	}
	describe("init container", before.Spec.InitContainers, after.Spec.InitContainers)
	describe("container", before.Spec.Containers, after.Spec.Containers)
	for _, v := range after.Spec.Volumes {
		if slices.ContainsFunc(before.Spec.Volumes, func(w corev1.Volume) bool { return w.Name == v.Name }) {
			continue
		}
		switch {
		case v.EmptyDir != nil && v.EmptyDir.Medium != "":
			out = append(out, fmt.Sprintf("volume %s: emptyDir, medium %s", v.Name, v.EmptyDir.Medium))
		case v.EmptyDir != nil:
			out = append(out, fmt.Sprintf("volume %s: emptyDir", v.Name))
		case v.ConfigMap != nil:
			out = append(out, fmt.Sprintf("volume %s: configMap %s", v.Name, v.ConfigMap.Name))
		default:
			out = append(out, "volume "+v.Name)
		}
	}
	return out
}

// container describes an added container in a few lines.
func container(kind string, c corev1.Container) []string {
	head := fmt.Sprintf("%s %s", kind, c.Name)
	if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
		head += ", a native sidecar (restartPolicy: Always)"
	}
	lines := []string{head, "  image: " + c.Image, "  args: " + strings.Join(c.Args, " ")}
	var env, mounts, probes []string
	for _, e := range c.Env {
		env = append(env, e.Name)
	}
	if len(env) > 0 {
		lines = append(lines, "  env: "+strings.Join(env, ", ")+" (values not shown)")
	}
	for _, m := range c.VolumeMounts {
		mounts = append(mounts, mount(m))
	}
	if len(mounts) > 0 {
		lines = append(lines, "  mounts: "+strings.Join(mounts, ", "))
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
	}{{"startup", c.StartupProbe}, {"readiness", c.ReadinessProbe}, {"liveness", c.LivenessProbe}} {
		if p.probe != nil && p.probe.HTTPGet != nil {
			probes = append(probes, fmt.Sprintf("%s GET :%s%s", p.name, p.probe.HTTPGet.Port.String(), p.probe.HTTPGet.Path))
		}
	}
	if len(probes) > 0 {
		lines = append(lines, "  probes: "+strings.Join(probes, ", "))
	}
	if r := c.Resources; len(r.Requests)+len(r.Limits) > 0 {
		lines = append(lines, "  resources: requests "+resources(r.Requests)+"; limits "+resources(r.Limits))
	}
	if s := c.SecurityContext; s != nil {
		var sc []string
		if s.RunAsUser != nil {
			sc = append(sc, fmt.Sprintf("user %d", *s.RunAsUser))
		}
		if s.RunAsNonRoot != nil && *s.RunAsNonRoot {
			sc = append(sc, "non-root")
		}
		if s.ReadOnlyRootFilesystem != nil && *s.ReadOnlyRootFilesystem {
			sc = append(sc, "read-only root filesystem")
		}
		if s.AllowPrivilegeEscalation != nil && !*s.AllowPrivilegeEscalation {
			sc = append(sc, "no privilege escalation")
		}
		if s.Capabilities != nil && len(s.Capabilities.Drop) > 0 {
			sc = append(sc, fmt.Sprintf("capabilities dropped: %v", s.Capabilities.Drop))
		}
		if s.SeccompProfile != nil {
			sc = append(sc, "seccomp "+string(s.SeccompProfile.Type))
		}
		lines = append(lines, "  securityContext: "+strings.Join(sc, ", "))
	}
	return lines
}

// mount describes a volume mount.
func mount(m corev1.VolumeMount) string {
	s := fmt.Sprintf("%s at %s", m.Name, m.MountPath)
	if m.ReadOnly {
		s += " (read-only)"
	}
	return s
}

// resources describes a resource list, e.g. "cpu 10m, memory 32Mi".
func resources(l corev1.ResourceList) string {
	if len(l) == 0 {
		return "none"
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(l)) {
		q := l[name]
		out = append(out, string(name)+" "+q.String())
	}
	return strings.Join(out, ", ")
}

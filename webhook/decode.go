package webhook

import (
	"bytes"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	corev1 "k8s.io/api/core/v1"
)

// The bytes whose presence in the pod as sent decide how much of it the
// webhook decodes. The API server sends objects encoded by Go's JSON
// encoder, which writes annotation keys (letters, digits, "-", "_", ".",
// "/") unescaped: a pod without these bytes has no such key.
var (
	// prefixJSON starts every annotation key of the webhook's.
	prefixJSON = []byte(`"` + annotationPrefix)
	// statusJSON is the key of the status annotation.
	statusJSON = []byte(`"` + AnnotationStatus + `"`)
)

// decodePod decodes the pod of an admission request as the API server
// does: case-sensitively, ignoring unknown fields, rejecting duplicate
// ones (which a patch written against the raw object could not address).
// These are the defaults of JSON v2 (github.com/go-json-experiment/json,
// the encoding/json/v2 of GOEXPERIMENT=jsonv2), which decodes a pod in half
// the time of encoding/json; k8s.io/api's own JSON methods (for
// quantities, times, int-or-strings) still apply.
//
// It decodes only what the decision reads: for a pod without the webhook's
// annotations its annotations and phase, for an injected pod also its
// containers' names, variables and mounts (see reinvoke), and only for a
// pod to inject the whole pod.
func decodePod(raw []byte) (*corev1.Pod, error) {
	if len(raw) == 0 {
		return nil, errors.New("the admission request has no object")
	}
	var err error
	pod := &corev1.Pod{}
	switch {
	case !bytes.Contains(raw, prefixJSON):
		var head podHead
		err = jsonv2.Unmarshal(raw, &head)
		pod.Annotations, pod.Status.Phase = head.Metadata.Annotations, head.Status.Phase
	case bytes.Contains(raw, statusJSON):
		var injected injectedPod
		if err = jsonv2.Unmarshal(raw, &injected); err == nil {
			if _, ok := injected.Metadata.Annotations[AnnotationStatus]; !ok {
				// The bytes were elsewhere, say in a variable's value.
				err = jsonv2.Unmarshal(raw, pod)
				break
			}
			pod.Annotations, pod.Status.Phase = injected.Metadata.Annotations, injected.Status.Phase
			pod.Spec.InitContainers = injected.Spec.InitContainers.containers()
			pod.Spec.Containers = injected.Spec.Containers.containers()
		}
	default:
		err = jsonv2.Unmarshal(raw, pod)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	return pod, nil
}

// podHead is the part of a pod that decides on a pod without the
// webhook's annotations.
type podHead struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Status struct {
		Phase corev1.PodPhase `json:"phase"`
	} `json:"status"`
}

// injectedPod is the part of a pod that reinvoke reads.
type injectedPod struct {
	podHead
	Spec struct {
		InitContainers slimContainers `json:"initContainers"`
		Containers     slimContainers `json:"containers"`
	} `json:"spec"`
}

// slimContainers are containers as reinvoke reads them.
type slimContainers []struct {
	Name         string               `json:"name"`
	Env          []corev1.EnvVar      `json:"env"`
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts"`
}

// containers returns s as containers with those fields alone.
func (s slimContainers) containers() []corev1.Container {
	if s == nil {
		return nil
	}
	out := make([]corev1.Container, len(s))
	for i, c := range s {
		out[i] = corev1.Container{Name: c.Name, Env: c.Env, VolumeMounts: c.VolumeMounts}
	}
	return out
}

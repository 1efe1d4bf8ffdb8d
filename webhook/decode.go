package webhook

import (
	"bytes"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	corev1 "k8s.io/api/core/v1"
)

// prefixJSON starts every annotation key of the webhook's. The API server
// sends objects encoded by Go's JSON encoder, which writes annotation keys
// (letters, digits, "-", "_", ".", "/") unescaped: a pod without these
// bytes has none of the webhook's annotations.
var prefixJSON = []byte(`"` + annotationPrefix)

// decodePod decodes the pod of an admission request as the API server
// does: case-sensitively, ignoring unknown fields, rejecting duplicate
// ones (which a patch written against the raw object could not address).
// These are the defaults of JSON v2 (github.com/go-json-experiment/json,
// the encoding/json/v2 of GOEXPERIMENT=jsonv2), which decodes a pod in half
// the time of encoding/json.
//
// It decodes only what the decision reads, which the API server has
// validated: for a pod without the webhook's annotations its annotations
// and phase; for any other the containers' names, variables and mounts
// and the volumes' names too. The rest of the pod (resources, probes,
// volume sources...) is skipped, not decoded: a function of the decision
// that reads more of the pod must add it to slimPod.
func decodePod(raw []byte) (*corev1.Pod, error) {
	if len(raw) == 0 {
		return nil, errors.New("the admission request has no object")
	}
	pod := &corev1.Pod{}
	if !bytes.Contains(raw, prefixJSON) {
		var head podHead
		if err := jsonv2.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("decoding the pod: %w", err)
		}
		pod.Annotations, pod.Status.Phase = head.Metadata.Annotations, head.Status.Phase
		return pod, nil
	}
	var slim slimPod
	if err := jsonv2.Unmarshal(raw, &slim); err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	pod.Annotations, pod.Status.Phase = slim.Metadata.Annotations, slim.Status.Phase
	pod.Spec.InitContainers = slim.Spec.InitContainers.containers()
	pod.Spec.Containers = slim.Spec.Containers.containers()
	if slim.Spec.EphemeralContainers != nil {
		pod.Spec.EphemeralContainers = make([]corev1.EphemeralContainer, len(slim.Spec.EphemeralContainers))
		for i, c := range slim.Spec.EphemeralContainers {
			pod.Spec.EphemeralContainers[i].Name = c.Name
		}
	}
	if slim.Spec.Volumes != nil {
		pod.Spec.Volumes = make([]corev1.Volume, len(slim.Spec.Volumes))
		for i, v := range slim.Spec.Volumes {
			pod.Spec.Volumes[i].Name = v.Name
		}
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

// slimPod is the part of a pod that the decision reads.
type slimPod struct {
	podHead
	Spec struct {
		InitContainers      slimContainers `json:"initContainers"`
		Containers          slimContainers `json:"containers"`
		EphemeralContainers []named        `json:"ephemeralContainers"`
		Volumes             []named        `json:"volumes"`
	} `json:"spec"`
}

// named is an item of a list as the decision reads it: its name.
type named struct {
	Name string `json:"name"`
}

// slimContainers are containers as the decision reads them.
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

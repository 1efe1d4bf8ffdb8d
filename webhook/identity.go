package webhook

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Volumes holding the projected service account tokens that the IRSA
// (aws-iam-token) and EKS Pod Identity (eks-pod-identity-token) webhooks
// mount into app containers; the sidecar needs them to call AWS as the pod.
var awsTokenVolumes = []string{"aws-iam-token", "eks-pod-identity-token"}

// awsEnvPrefix starts the names of the environment variables the AWS SDK
// reads (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE,
// AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_REGION, ...).
const awsEnvPrefix = "AWS_"

// identity is the AWS identity that other webhooks gave a pod's app
// containers: AWS_* variables and token volume mounts.
type identity struct {
	env    []corev1.EnvVar
	mounts []corev1.VolumeMount
}

// appIdentity collects the AWS identity of containers, skipping the
// webhook's own; for a variable or mount found in several containers the
// first occurrence wins.
func appIdentity(containers []corev1.Container) identity {
	var id identity
	for _, c := range containers {
		if isSidecar(c.Name) {
			continue
		}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, awsEnvPrefix) && !slices.ContainsFunc(id.env, func(x corev1.EnvVar) bool { return x.Name == e.Name }) {
				id.env = append(id.env, e)
			}
		}
		for _, m := range c.VolumeMounts {
			if slices.Contains(awsTokenVolumes, m.Name) && !slices.ContainsFunc(id.mounts, func(x corev1.VolumeMount) bool { return x.Name == m.Name }) {
				id.mounts = append(id.mounts, m)
			}
		}
	}
	return id
}

// missing returns the part of id that a container with env and mounts lacks:
// variables by name, mounts by volume name. A lacking mount whose path the
// container already uses for another volume is an error.
func (id identity) missing(env []corev1.EnvVar, mounts []corev1.VolumeMount) (identity, error) {
	var out identity
	for _, e := range id.env {
		if !slices.ContainsFunc(env, func(x corev1.EnvVar) bool { return x.Name == e.Name }) {
			out.env = append(out.env, e)
		}
	}
	for _, m := range id.mounts {
		if slices.ContainsFunc(mounts, func(x corev1.VolumeMount) bool { return x.Name == m.Name }) {
			continue
		}
		if i := slices.IndexFunc(mounts, func(x corev1.VolumeMount) bool { return x.MountPath == m.MountPath }); i >= 0 {
			return identity{}, fmt.Errorf("the sidecar mounts %q at %s, where the app containers mount the AWS token volume %q: set %s to another path (e.g. %s)",
				mounts[i].Name, m.MountPath, m.Name, AnnotationMountPath, DefaultMountPath)
		}
		out.mounts = append(out.mounts, m)
	}
	return out, nil
}

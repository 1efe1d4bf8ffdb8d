package webhook

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Names of the volumes the webhook adds to a pod. A pod that already has a
// volume of either name is denied.
const (
	// PasswordsVolumeName is the shared emptyDir (medium Memory, 1Mi) the
	// sidecar writes the passwords to and the app containers read them from.
	PasswordsVolumeName = "ecr-token-refresh-passwords"
	// ConfigVolumeName is the ConfigMap volume of [AnnotationConfigMap].
	ConfigVolumeName = "ecr-token-refresh-config"
)

// ConfigMountPath is where the sidecar mounts the ConfigMap of
// [AnnotationConfigMap], read-only; the sidecar's default --config is
// config.yaml in this directory.
const ConfigMountPath = "/opt/config/ecr-token-refresh"

// configKey is the ConfigMap key that holds the sidecar's config.
const configKey = "config.yaml"

// passwordsSizeLimit caps the memory-backed passwords volume: a password
// file is a few KiB, so 1Mi holds hundreds.
const passwordsSizeLimit = 1 << 20

// volumes returns the volumes the sidecar needs: the passwords emptyDir, and
// the config volume when the pod names a ConfigMap.
func volumes(s *settings) []corev1.Volume {
	vols := []corev1.Volume{{
		Name: PasswordsVolumeName,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium:    corev1.StorageMediumMemory,
			SizeLimit: resource.NewQuantity(passwordsSizeLimit, resource.BinarySI),
		}},
	}}
	if s.configMap != "" {
		vols = append(vols, corev1.Volume{
			Name: ConfigVolumeName,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: s.configMap},
				Items:                []corev1.KeyToPath{{Key: configKey, Path: configKey}},
			}},
		})
	}
	return vols
}

// sidecarMounts returns the sidecar's own mounts: the passwords volume,
// writable, and the config volume, read-only.
func sidecarMounts(s *settings) []corev1.VolumeMount {
	mounts := []corev1.VolumeMount{{Name: PasswordsVolumeName, MountPath: s.mountPath}}
	if s.configMap != "" {
		mounts = append(mounts, corev1.VolumeMount{Name: ConfigVolumeName, MountPath: ConfigMountPath, ReadOnly: true})
	}
	return mounts
}

// appMount is the read-only passwords mount of an app container.
func appMount(s *settings) corev1.VolumeMount {
	return corev1.VolumeMount{Name: PasswordsVolumeName, MountPath: s.mountPath, ReadOnly: true}
}

package webhook

import (
	"path"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Names of the containers the webhook adds. Both are reserved: a pod that
// already has a container of either name is denied.
const (
	// ContainerName is the sidecar: a native sidecar (an init container
	// with restartPolicy Always) by default, a regular container with
	// native-sidecar "false".
	ContainerName = "ecr-token-refresh"
	// InitContainerName is the init container that refreshes once before
	// the app starts, added with native-sidecar "false" only.
	InitContainerName = "ecr-token-refresh-init"
)

// HealthPort is the sidecar's health port (its default --health-addr :3277):
// GET /readyz answers 200 once every password file holds an unexpired
// token, GET /healthz is the liveness check. The port is taken in the pod's
// network namespace, so an app container cannot listen on it too.
const HealthPort = 3277

// sidecarUser is the sidecar's numeric user and group, the image's USER, so
// that runAsNonRoot can be checked by the kubelet.
const sidecarUser = 65532

// The startup probe gives the first refresh about two minutes (1s × 120)
// before the kubelet restarts the sidecar; the app containers start only
// after it succeeds.
const (
	startupPeriodSeconds    = 1
	startupFailureThreshold = 120
)

// isSidecar reports whether name is one of the webhook's containers.
func isSidecar(name string) bool {
	return name == ContainerName || name == InitContainerName
}

// sidecarArgs returns the sidecar's arguments (the image's entrypoint is the
// binary). With a ConfigMap the sidecar reads its default --config, which is
// config.yaml under ConfigMountPath; otherwise every registry-NAME becomes
// --registry HOST=<mount-path>/NAME.pass, followed by --interval and
// --role-arn when annotated.
func sidecarArgs(s *settings) []string {
	args := []string{"sidecar"}
	for _, r := range s.registries {
		args = append(args, "--registry", r.host+"="+path.Join(s.mountPath, r.name+".pass"))
	}
	if s.interval != "" {
		args = append(args, "--interval", s.interval)
	}
	if s.roleARN != "" {
		args = append(args, "--role-arn", s.roleARN)
	}
	return args
}

// sidecarContainer returns the long-running sidecar. As a native sidecar it
// has restartPolicy Always and a startup probe on /readyz, so that the app
// containers start once the first passwords are written.
func sidecarContainer(s *settings, image string, env []corev1.EnvVar, mounts []corev1.VolumeMount) corev1.Container {
	c := baseContainer(ContainerName, image, sidecarArgs(s), s, env, mounts)
	c.ReadinessProbe = healthProbe("/readyz")
	c.LivenessProbe = healthProbe("/healthz")
	if s.native {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		c.StartupProbe = healthProbe("/readyz")
		c.StartupProbe.PeriodSeconds = startupPeriodSeconds
		c.StartupProbe.FailureThreshold = startupFailureThreshold
	}
	return c
}

// onceContainer returns the init container of native-sidecar "false": the
// sidecar's arguments plus --once, so the app starts with passwords.
func onceContainer(s *settings, image string, env []corev1.EnvVar, mounts []corev1.VolumeMount) corev1.Container {
	return baseContainer(InitContainerName, image, append(sidecarArgs(s), "--once"), s, env, mounts)
}

// baseContainer is what both sidecar containers share.
func baseContainer(name, image string, args []string, s *settings, env []corev1.EnvVar, mounts []corev1.VolumeMount) corev1.Container {
	return corev1.Container{
		Name:                     name,
		Image:                    image,
		ImagePullPolicy:          corev1.PullIfNotPresent,
		Args:                     args,
		Env:                      slices.Clone(env),
		Resources:                s.resources,
		VolumeMounts:             slices.Clone(mounts),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          securityContext(),
	}
}

// healthProbe probes the sidecar's health server at path.
func healthProbe(path string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: path,
		Port: intstr.FromInt32(HealthPort),
	}}}
}

// securityContext is the sidecar's hardened security context; it meets the
// restricted Pod Security Standard on its own. The sidecar writes its files
// with mode 0444, so app containers running as any user read them without
// an fsGroup.
func securityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](sidecarUser),
		RunAsGroup:               ptr.To[int64](sidecarUser),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// Package webhook is the mutating admission webhook of ecr-token-refresh: it
// injects the token-refresh sidecar into pods that ask for it with
// annotations, so that a Spinnaker operator only annotates the Clouddriver
// Deployment's pod template.
//
// The files follow one concern each: annotations.go parses and validates the
// annotation contract into settings, container.go builds the sidecar
// containers, volumes.go the volumes and mounts, identity.go copies the AWS
// identity that other webhooks gave the app containers, patch.go builds the
// JSON patch, handler.go answers admission requests and metrics.go counts
// them.
//
// # Annotations
//
// All annotations live under the prefix ecr-token-refresh.io/ and are read
// from the pod (the Deployment's pod template).
//
//	annotation      default                    meaning
//	inject          absent: not injected       "true" injects the sidecar; absent or "false" leaves the pod unchanged
//	config-map      none                       ConfigMap whose key config.yaml (the sidecar's format) is mounted read-only at /opt/config/ecr-token-refresh
//	registry-NAME   none                       registry host, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com (FIPS, China, dual-stack, GovCloud, ISO too); the password goes to <mount-path>/NAME.pass
//	mount-path      /opt/passwords             where the passwords volume is mounted in the sidecar and the app containers
//	containers      all of spec.containers     comma-separated names of the app containers that mount the passwords
//	interval        the sidecar's, 30m         refresh interval of the registry-NAME registries, 1m to 6h
//	role-arn        none                       IAM role the sidecar assumes for the registry-NAME registries
//	cpu-request     10m                        sidecar CPU request
//	memory-request  32Mi                       sidecar memory request
//	cpu-limit       none                       sidecar CPU limit
//	memory-limit    64Mi                       sidecar memory limit
//	native-sidecar  "true"                     "false": a regular container plus an init container that refreshes once (--once)
//	status          written by the webhook     "injected" once the sidecar is in the pod
//
// Either config-map or at least one registry-NAME is required; config-map
// cannot be combined with registry-NAME, interval or role-arn (see
// [AnnotationConfigMap]). An empty resource value removes that default. An
// invalid value denies the pod with a message naming the annotation and the
// expected form; so does a collision with the pod's own volumes, containers
// or mount paths. An unknown annotation under the prefix admits the pod with
// an admission warning naming it.
//
// # What is injected
//
// The passwords volume (emptyDir, medium Memory, sizeLimit 1Mi), mounted
// read-only into the app containers; with config-map, the config volume,
// mounted read-only into the sidecar; and the sidecar, running "sidecar"
// with --registry HOST=<mount-path>/NAME.pass per registry (or its default
// --config), image pull policy IfNotPresent, the small default resources
// above, and a security context that meets the restricted Pod Security
// Standard (non-root user 65532, read-only root filesystem, no privilege
// escalation, all capabilities dropped, seccomp RuntimeDefault). The sidecar
// writes the files with mode 0444, so app containers read them whatever
// their user, without an fsGroup.
//
// By default the sidecar is a native sidecar, appended last to the init
// containers: the pod's own init containers (and a service mesh's) run
// before it, and the app containers start after its startup probe (GET
// /readyz on port 3277, every second for up to two minutes) saw the first
// passwords written. Init containers therefore cannot read the passwords.
//
// The sidecar also gets the app containers' AWS_* variables and their
// aws-iam-token and eks-pod-identity-token mounts (IRSA and EKS Pod
// Identity), the first occurrence of each winning, so that it calls AWS as
// the pod. On a pod that already carries status "injected" the webhook adds
// only what the sidecar lacks of those, so it is safe to run again, and it
// sees what those webhooks add after it.
//
// # Server
//
// [Handler] serves AdmissionReviews at [Path] (ServeHTTP) and answers single
// requests (Review), without controller-runtime, whose packages would cost
// every process of the binary, the sidecar's too, some 15 MiB of resident
// memory at start. The webhook needs
// only the CREATE operation on pods, has no side effects, and must be
// configured with reinvocationPolicy: IfNeeded to see what the EKS Pod
// Identity or IRSA webhook adds after it. Other operations, and pods that
// are no longer Pending, are admitted unchanged.
package webhook

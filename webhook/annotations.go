package webhook

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ecr-token-refresh/ecr-token-refresh/refresher"
)

// annotationPrefix starts every annotation of the contract.
const annotationPrefix = "ecr-token-refresh.io/"

// The annotation contract. Values are read from the pod's annotations.
const (
	// AnnotationInject opts a pod in with "true". Absent or "false", the pod
	// is left unchanged; any other value denies the pod.
	AnnotationInject = annotationPrefix + "inject"

	// AnnotationStatus is written by the webhook with the value
	// [StatusInjected] once the sidecar is in the pod. A pod that carries it
	// gets only what appeared since (AWS identity the sidecar lacks), never a
	// second sidecar.
	AnnotationStatus = annotationPrefix + "status"

	// AnnotationConfigMap names a ConfigMap in the pod's namespace whose key
	// config.yaml, in the sidecar's config format, is mounted read-only at
	// [ConfigMountPath]; the sidecar then runs with its default --config.
	// The password files that config names should lie under the mount path.
	//
	// It cannot be combined with registry-NAME annotations, nor with
	// interval or role-arn: the sidecar reads its registries either from a
	// file or from flags, never both, so the webhook denies a pod that mixes
	// them instead of guessing which to drop. Use one or the other.
	AnnotationConfigMap = annotationPrefix + "config-map"

	// AnnotationRegistryPrefix followed by NAME, e.g.
	// ecr-token-refresh.io/registry-my-registry, names a registry host such
	// as 123456789012.dkr.ecr.us-west-2.amazonaws.com (FIPS, China,
	// dual-stack, GovCloud and ISO hosts too). Its password is written to
	// <mount-path>/NAME.pass. NAME is lowercase letters, digits and '-'.
	AnnotationRegistryPrefix = annotationPrefix + "registry-"

	// AnnotationMountPath is the absolute path where the shared passwords
	// volume is mounted in the sidecar and the app containers; default
	// [DefaultMountPath]. It must not overlap [ConfigMountPath].
	AnnotationMountPath = annotationPrefix + "mount-path"

	// AnnotationContainers is a comma-separated list of the app containers
	// (spec.containers) that mount the passwords; default all of them.
	AnnotationContainers = annotationPrefix + "containers"

	// AnnotationInterval is the refresh interval of the registries named by
	// registry-NAME annotations, a Go duration from 1m to 6h; default the
	// sidecar's (30m).
	AnnotationInterval = annotationPrefix + "interval"

	// AnnotationRoleARN is an IAM role ARN the sidecar assumes for the
	// registries named by registry-NAME annotations.
	AnnotationRoleARN = annotationPrefix + "role-arn"

	// AnnotationCPURequest is the sidecar's CPU request; default 10m.
	AnnotationCPURequest = annotationPrefix + "cpu-request"
	// AnnotationMemoryRequest is the sidecar's memory request; default 32Mi.
	AnnotationMemoryRequest = annotationPrefix + "memory-request"
	// AnnotationCPULimit is the sidecar's CPU limit; default none.
	AnnotationCPULimit = annotationPrefix + "cpu-limit"
	// AnnotationMemoryLimit is the sidecar's memory limit; default 64Mi.
	AnnotationMemoryLimit = annotationPrefix + "memory-limit"

	// AnnotationNativeSidecar set to "false" runs the sidecar as a regular
	// container, preceded by an init container that refreshes once, instead
	// of as a native sidecar (an init container with restartPolicy Always,
	// Kubernetes 1.29 and later); default "true".
	AnnotationNativeSidecar = annotationPrefix + "native-sidecar"
)

// StatusInjected is the value of [AnnotationStatus] on an injected pod.
const StatusInjected = "injected"

// DefaultMountPath is where the passwords volume is mounted when the pod has
// no [AnnotationMountPath].
const DefaultMountPath = "/opt/passwords"

// Default sidecar resources. There is no CPU limit unless annotated.
const (
	defaultCPURequest    = "10m"
	defaultMemoryRequest = "32Mi"
	defaultMemoryLimit   = "64Mi"
)

// knownAnnotations are the annotation names after the prefix, except
// registry-NAME, as listed in the unknown-annotation warning.
var knownAnnotations = []string{
	"inject", "config-map", "registry-NAME", "mount-path", "containers",
	"interval", "role-arn", "cpu-request", "memory-request", "cpu-limit",
	"memory-limit", "native-sidecar", "status",
}

// settings is the validated annotation contract of one pod.
type settings struct {
	// configMap is the ConfigMap holding the sidecar's config, or "".
	configMap string
	// registries are the valid registry-NAME annotations, sorted by name.
	registries []registry
	// mountPath is where the passwords volume is mounted.
	mountPath string
	// appContainers are the indexes in spec.containers of the containers
	// that mount the passwords.
	appContainers []int
	// interval and roleARN are passed to the sidecar when not "".
	interval, roleARN string
	// resources are the sidecar's requests and limits.
	resources corev1.ResourceRequirements
	// native runs the sidecar as a native sidecar.
	native bool
}

// registry is one registry-NAME annotation.
type registry struct {
	// name is NAME, the base of the password file name.
	name string
	// host is the registry host, lower-cased.
	host string
}

// injectRequested reports whether annotations opt the pod in.
func injectRequested(annotations map[string]string) (bool, error) {
	v, ok := annotations[AnnotationInject]
	if !ok {
		return false, nil
	}
	return parseBool(AnnotationInject, v)
}

// parseBool parses a "true"/"false" annotation value (strconv.ParseBool's
// other spellings are accepted too).
func parseBool(key, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not a boolean (expected \"true\" or \"false\")", key, v)
	}
	return b, nil
}

// unknownAnnotations returns one warning per annotation under the prefix
// that the contract does not know, sorted.
func unknownAnnotations(annotations map[string]string) []string {
	var warnings []string
	for key := range annotations {
		name, ok := strings.CutPrefix(key, annotationPrefix)
		if !ok || strings.HasPrefix(name, "registry-") || slices.Contains(knownAnnotations, name) {
			continue
		}
		warnings = append(warnings, fmt.Sprintf("unknown annotation %s is ignored (known under %s: %s)",
			key, annotationPrefix, strings.Join(knownAnnotations, ", ")))
	}
	sort.Strings(warnings)
	return warnings
}

// parseSettings validates the annotations of pod, which opted in, into
// settings. Its error lists every invalid annotation, each named with the
// expected form.
func parseSettings(pod *corev1.Pod) (*settings, error) {
	a := pod.Annotations
	s := &settings{mountPath: DefaultMountPath, native: true}
	var problems []string
	fail := func(err error) { problems = append(problems, err.Error()) }

	if v, ok := a[AnnotationConfigMap]; ok {
		if len(validation.IsDNS1123Subdomain(v)) > 0 {
			fail(fmt.Errorf("%s: %q is not a ConfigMap name (expected lowercase letters, digits, '-' and '.', e.g. clouddriver-ecr)", AnnotationConfigMap, v))
		}
		s.configMap = v
	}
	var registryKeys []string
	for key := range a {
		if strings.HasPrefix(key, AnnotationRegistryPrefix) {
			registryKeys = append(registryKeys, key)
		}
	}
	sort.Strings(registryKeys)
	for _, key := range registryKeys {
		name, v := strings.TrimPrefix(key, AnnotationRegistryPrefix), a[key]
		if len(validation.IsDNS1123Label(name)) > 0 {
			fail(fmt.Errorf("%s: %q is not a registry name (expected lowercase letters, digits and '-', e.g. %smy-registry; the password goes to <mount-path>/NAME.pass)", key, name, AnnotationRegistryPrefix))
			continue
		}
		host, err := refresher.ParseHost(v)
		if err != nil {
			fail(fmt.Errorf("%s: %w", key, err))
			continue
		}
		s.registries = append(s.registries, registry{name: name, host: host.Name})
	}

	if v, ok := a[AnnotationInterval]; ok {
		if _, err := refresher.ParseInterval(v); err != nil {
			fail(fmt.Errorf("%s: %w", AnnotationInterval, err))
		}
		s.interval = v
	}
	if v, ok := a[AnnotationRoleARN]; ok {
		if err := refresher.ValidateRoleARN(v); err != nil {
			fail(fmt.Errorf("%s: %w", AnnotationRoleARN, err))
		}
		s.roleARN = v
	}
	if err := checkSource(a, s.configMap, registryKeys); err != nil {
		fail(err)
	}

	if v, ok := a[AnnotationMountPath]; ok {
		if err := checkMountPath(v); err != nil {
			fail(err)
		}
		s.mountPath = v
	}
	if v, ok := a[AnnotationContainers]; ok {
		idx, err := selectContainers(pod.Spec.Containers, v)
		if err != nil {
			fail(err)
		}
		s.appContainers = idx
	} else {
		for i := range pod.Spec.Containers {
			s.appContainers = append(s.appContainers, i)
		}
	}

	res, errs := parseResources(a)
	for _, err := range errs {
		fail(err)
	}
	s.resources = res

	if v, ok := a[AnnotationNativeSidecar]; ok {
		b, err := parseBool(AnnotationNativeSidecar, v)
		if err != nil {
			fail(err)
		}
		s.native = b
	}

	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return s, nil
}

// checkSource checks that the pod names its registries one way: a
// ConfigMap, or registry-NAME annotations (registryKeys, valid or not) with
// their interval and role-arn.
func checkSource(a map[string]string, configMap string, registryKeys []string) error {
	switch {
	case configMap == "" && len(registryKeys) == 0:
		return fmt.Errorf("%s: \"true\" needs %s or at least one %sNAME annotation (e.g. %smy-registry: 123456789012.dkr.ecr.us-west-2.amazonaws.com)",
			AnnotationInject, AnnotationConfigMap, AnnotationRegistryPrefix, AnnotationRegistryPrefix)
	case configMap == "":
		return nil
	case len(registryKeys) > 0:
		return fmt.Errorf("%s cannot be combined with %s: use one or the other (list the registries in the ConfigMap, or drop %s)",
			AnnotationConfigMap, strings.Join(registryKeys, ", "), AnnotationConfigMap)
	}
	var problems []string
	for _, f := range []struct{ key, field string }{{AnnotationInterval, "interval"}, {AnnotationRoleARN, "roleArn"}} {
		if _, ok := a[f.key]; ok {
			problems = append(problems, fmt.Sprintf("%s applies to %sNAME annotations only: with %s, set %s in the ConfigMap's config.yaml instead",
				f.key, AnnotationRegistryPrefix, AnnotationConfigMap, f.field))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// checkMountPath validates the mount-path annotation value.
func checkMountPath(p string) error {
	switch {
	case !path.IsAbs(p) || path.Clean(p) != p || p == "/":
		return fmt.Errorf("%s: %q is not an absolute, clean directory path other than / (expected e.g. %s)", AnnotationMountPath, p, DefaultMountPath)
	case strings.ContainsFunc(p, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }):
		// The sidecar splits --registry values at commas and blanks.
		return fmt.Errorf("%s: %q contains a comma or a blank (expected a path without, e.g. %s)", AnnotationMountPath, p, DefaultMountPath)
	case within(p, ConfigMountPath) || within(ConfigMountPath, p):
		return fmt.Errorf("%s: %q overlaps %s, where the sidecar reads its config (expected a separate path, e.g. %s)", AnnotationMountPath, p, ConfigMountPath, DefaultMountPath)
	}
	return nil
}

// within reports whether the clean absolute path p is dir or lies under it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// selectContainers resolves the containers annotation value to indexes in
// containers, in pod order.
func selectContainers(containers []corev1.Container, v string) ([]int, error) {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	have := make([]string, len(containers))
	for i, c := range containers {
		have[i] = c.Name
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: %q names no container (expected a comma-separated list of the pod's containers: %s)", AnnotationContainers, v, strings.Join(have, ", "))
	}
	var missing []string
	for _, n := range names {
		if !slices.Contains(have, n) {
			missing = append(missing, strconv.Quote(n))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: %s not among the pod's containers (expected some of: %s)", AnnotationContainers, strings.Join(missing, ", "), strings.Join(have, ", "))
	}
	var idx []int
	for i, c := range containers {
		if slices.Contains(names, c.Name) {
			idx = append(idx, i)
		}
	}
	return idx, nil
}

// parseResources builds the sidecar's resources from the defaults and the
// four resource annotations. An empty annotation value removes the default.
func parseResources(a map[string]string) (corev1.ResourceRequirements, []error) {
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	var errs []error
	set := func(list corev1.ResourceList, name corev1.ResourceName, key, def, example string) {
		v, ok := a[key]
		if !ok {
			v = def
		}
		if v == "" {
			return
		}
		q, err := resource.ParseQuantity(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a Kubernetes quantity (expected e.g. %s)", key, v, example))
		case q.Sign() <= 0:
			errs = append(errs, fmt.Errorf("%s: %q is not more than zero (expected e.g. %s)", key, v, example))
		default:
			list[name] = q
		}
	}
	set(res.Requests, corev1.ResourceCPU, AnnotationCPURequest, defaultCPURequest, "10m")
	set(res.Requests, corev1.ResourceMemory, AnnotationMemoryRequest, defaultMemoryRequest, "32Mi")
	set(res.Limits, corev1.ResourceCPU, AnnotationCPULimit, "", "100m")
	set(res.Limits, corev1.ResourceMemory, AnnotationMemoryLimit, defaultMemoryLimit, "64Mi")
	for _, pair := range []struct {
		name           corev1.ResourceName
		reqKey, limKey string
	}{
		{corev1.ResourceCPU, AnnotationCPURequest, AnnotationCPULimit},
		{corev1.ResourceMemory, AnnotationMemoryRequest, AnnotationMemoryLimit},
	} {
		req, okReq := res.Requests[pair.name]
		lim, okLim := res.Limits[pair.name]
		if okReq && okLim && req.Cmp(lim) > 0 {
			errs = append(errs, fmt.Errorf("%s (%s) exceeds %s (%s): a request must not exceed its limit (defaults: cpu-request %s, memory-request %s, memory-limit %s)",
				pair.reqKey, req.String(), pair.limKey, lim.String(), defaultCPURequest, defaultMemoryRequest, defaultMemoryLimit))
		}
	}
	if len(res.Requests) == 0 {
		res.Requests = nil
	}
	if len(res.Limits) == 0 {
		res.Limits = nil
	}
	return res, errs
}

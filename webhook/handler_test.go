package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

const (
	testHost  = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
	knownList = "known under ecr-token-refresh.io/: inject, config-map, registry-NAME, mount-path, containers, interval, role-arn, cpu-request, memory-request, cpu-limit, memory-limit, native-sidecar, status"
)

// testPod returns a pod with one container "app" and the given annotations;
// edit changes it further.
func testPod(annotations map[string]string, edit ...func(*corev1.Pod)) *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "spinnaker", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1.0"}}},
	}
	for _, e := range edit {
		e(pod)
	}
	return pod
}

// podJSON marshals pod.
func podJSON(t testing.TB, pod *corev1.Pod) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// withRegistry returns annotations that opt in with one registry, plus kv
// (key, value, key, value...).
func withRegistry(kv ...string) map[string]string {
	a := map[string]string{AnnotationInject: "true", AnnotationRegistryPrefix + "main": testHost}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = kv[i+1]
	}
	return a
}

// TestHandleDenies checks the message of every kind of denial: invalid
// annotation values, contradicting annotations and name collisions.
func TestHandleDenies(t *testing.T) {
	addVolume := func(name string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"inject not a boolean", testPod(withRegistry(AnnotationInject, "yes")),
			`ecr-token-refresh.io/inject: "yes" is not a boolean (expected "true" or "false")`},
		{"no registries", testPod(map[string]string{AnnotationInject: "true"}),
			`ecr-token-refresh.io/inject: "true" needs ecr-token-refresh.io/config-map or at least one ecr-token-refresh.io/registry-NAME annotation (e.g. ecr-token-refresh.io/registry-my-registry: 123456789012.dkr.ecr.us-west-2.amazonaws.com)`},
		{"config-map with registry", testPod(withRegistry(AnnotationConfigMap, "ecr", AnnotationRegistryPrefix+"other", "bad")),
			`ecr-token-refresh.io/registry-other: "bad" is not an ECR registry host (expected ACCOUNT.dkr.ecr.REGION.amazonaws.com, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com); ` +
				`ecr-token-refresh.io/config-map cannot be combined with ecr-token-refresh.io/registry-main, ecr-token-refresh.io/registry-other: use one or the other (list the registries in the ConfigMap, or drop ecr-token-refresh.io/config-map)`},
		{"config-map with interval and role-arn", testPod(map[string]string{AnnotationInject: "true", AnnotationConfigMap: "ecr", AnnotationInterval: "1h", AnnotationRoleARN: "arn:aws:iam::123456789012:role/r"}),
			`ecr-token-refresh.io/interval applies to ecr-token-refresh.io/registry-NAME annotations only: with ecr-token-refresh.io/config-map, set interval in the ConfigMap's config.yaml instead; ` +
				`ecr-token-refresh.io/role-arn applies to ecr-token-refresh.io/registry-NAME annotations only: with ecr-token-refresh.io/config-map, set roleArn in the ConfigMap's config.yaml instead`},
		{"config-map name", testPod(map[string]string{AnnotationInject: "true", AnnotationConfigMap: "Bad_Name"}),
			`ecr-token-refresh.io/config-map: "Bad_Name" is not a ConfigMap name (expected lowercase letters, digits, '-' and '.', e.g. clouddriver-ecr)`},
		{"registry host", testPod(map[string]string{AnnotationInject: "true", AnnotationRegistryPrefix + "main": "registry.example.com"}),
			`ecr-token-refresh.io/registry-main: "registry.example.com" is not an ECR registry host (expected ACCOUNT.dkr.ecr.REGION.amazonaws.com, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com)`},
		{"registry host with scheme", testPod(map[string]string{AnnotationInject: "true", AnnotationRegistryPrefix + "main": "https://" + testHost}),
			`ecr-token-refresh.io/registry-main: "https://123456789012.dkr.ecr.us-west-2.amazonaws.com" is not an ECR registry host (expected ACCOUNT.dkr.ecr.REGION.amazonaws.com, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com)`},
		{"registry name", testPod(map[string]string{AnnotationInject: "true", AnnotationRegistryPrefix + "My_Registry": testHost}),
			`ecr-token-refresh.io/registry-My_Registry: "My_Registry" is not a registry name (expected lowercase letters, digits and '-', e.g. ecr-token-refresh.io/registry-my-registry; the password goes to <mount-path>/NAME.pass)`},
		{"interval not a duration", testPod(withRegistry(AnnotationInterval, "abc")),
			`ecr-token-refresh.io/interval: "abc" is not a duration (expected e.g. 30m or 1h)`},
		{"interval out of range", testPod(withRegistry(AnnotationInterval, "10s")),
			`ecr-token-refresh.io/interval: 10s is out of range: use 1m0s to 6h (tokens live 12h)`},
		{"role-arn", testPod(withRegistry(AnnotationRoleARN, "arn:aws:iam::123:user/bob")),
			`ecr-token-refresh.io/role-arn: "arn:aws:iam::123:user/bob" is not an IAM role ARN (expected arn:aws:iam::123456789012:role/NAME)`},
		{"mount-path relative", testPod(withRegistry(AnnotationMountPath, "passwords")),
			`ecr-token-refresh.io/mount-path: "passwords" is not an absolute, clean directory path other than / (expected e.g. /opt/passwords)`},
		{"mount-path root", testPod(withRegistry(AnnotationMountPath, "/")),
			`ecr-token-refresh.io/mount-path: "/" is not an absolute, clean directory path other than / (expected e.g. /opt/passwords)`},
		{"mount-path unclean", testPod(withRegistry(AnnotationMountPath, "/opt/../etc/")),
			`ecr-token-refresh.io/mount-path: "/opt/../etc/" is not an absolute, clean directory path other than / (expected e.g. /opt/passwords)`},
		{"mount-path blank", testPod(withRegistry(AnnotationMountPath, "/opt/my passwords")),
			`ecr-token-refresh.io/mount-path: "/opt/my passwords" contains a comma or a blank (expected a path without, e.g. /opt/passwords)`},
		{"mount-path over config", testPod(withRegistry(AnnotationMountPath, "/opt/config")),
			`ecr-token-refresh.io/mount-path: "/opt/config" overlaps /opt/config/ecr-token-refresh, where the sidecar reads its config (expected a separate path, e.g. /opt/passwords)`},
		{"mount-path under config", testPod(withRegistry(AnnotationMountPath, "/opt/config/ecr-token-refresh/p")),
			`ecr-token-refresh.io/mount-path: "/opt/config/ecr-token-refresh/p" overlaps /opt/config/ecr-token-refresh, where the sidecar reads its config (expected a separate path, e.g. /opt/passwords)`},
		{"containers unknown", testPod(withRegistry(AnnotationContainers, "app,clouddriver,web")),
			`ecr-token-refresh.io/containers: "clouddriver", "web" not among the pod's containers (expected some of: app)`},
		{"containers empty", testPod(withRegistry(AnnotationContainers, " , ")),
			`ecr-token-refresh.io/containers: " , " names no container (expected a comma-separated list of the pod's containers: app)`},
		{"cpu-request", testPod(withRegistry(AnnotationCPURequest, "abc")),
			`ecr-token-refresh.io/cpu-request: "abc" is not a Kubernetes quantity (expected e.g. 10m)`},
		{"memory-request", testPod(withRegistry(AnnotationMemoryRequest, "32 MB")),
			`ecr-token-refresh.io/memory-request: "32 MB" is not a Kubernetes quantity (expected e.g. 32Mi)`},
		{"cpu-limit", testPod(withRegistry(AnnotationCPULimit, "0")),
			`ecr-token-refresh.io/cpu-limit: "0" is not more than zero (expected e.g. 100m)`},
		{"memory-limit", testPod(withRegistry(AnnotationMemoryLimit, "-64Mi")),
			`ecr-token-refresh.io/memory-limit: "-64Mi" is not more than zero (expected e.g. 64Mi)`},
		{"memory-request above default limit", testPod(withRegistry(AnnotationMemoryRequest, "128Mi")),
			`ecr-token-refresh.io/memory-request (128Mi) exceeds ecr-token-refresh.io/memory-limit (64Mi): a request must not exceed its limit (defaults: cpu-request 10m, memory-request 32Mi, memory-limit 64Mi)`},
		{"cpu-limit below default request", testPod(withRegistry(AnnotationCPULimit, "5m")),
			`ecr-token-refresh.io/cpu-request (10m) exceeds ecr-token-refresh.io/cpu-limit (5m): a request must not exceed its limit (defaults: cpu-request 10m, memory-request 32Mi, memory-limit 64Mi)`},
		{"native-sidecar", testPod(withRegistry(AnnotationNativeSidecar, "nope")),
			`ecr-token-refresh.io/native-sidecar: "nope" is not a boolean (expected "true" or "false")`},
		{"status other than injected", testPod(withRegistry(AnnotationStatus, "pending")),
			`ecr-token-refresh.io/status: "pending" is written by the webhook (expected "injected" or no annotation)`},
		{"status injected without sidecar", testPod(withRegistry(AnnotationStatus, StatusInjected)),
			`ecr-token-refresh.io/status: "injected" is set but the pod has no ecr-token-refresh container: remove the annotation, the webhook writes it`},
		{"every problem at once", testPod(withRegistry(AnnotationInterval, "soon", AnnotationCPURequest, "lots")),
			`ecr-token-refresh.io/interval: "soon" is not a duration (expected e.g. 30m or 1h); ecr-token-refresh.io/cpu-request: "lots" is not a Kubernetes quantity (expected e.g. 10m)`},

		{"volume collision", testPod(withRegistry(), addVolume(PasswordsVolumeName)),
			`the pod already has a volume named "ecr-token-refresh-passwords", which the webhook adds: rename the pod's volume`},
		{"config volume collision", testPod(map[string]string{AnnotationInject: "true", AnnotationConfigMap: "ecr"}, addVolume(ConfigVolumeName)),
			`the pod already has a volume named "ecr-token-refresh-config", which the webhook adds: rename the pod's volume`},
		{"container collision", testPod(withRegistry(), func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ContainerName, Image: "x"})
		}), `the pod already has a container named "ecr-token-refresh", a name the webhook reserves for its sidecar (ecr-token-refresh, ecr-token-refresh-init): rename the pod's container`},
		{"init container collision", testPod(withRegistry(), func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: InitContainerName, Image: "x"})
		}), `the pod already has a container named "ecr-token-refresh-init", a name the webhook reserves for its sidecar (ecr-token-refresh, ecr-token-refresh-init): rename the pod's container`},
		{"mount path collision", testPod(withRegistry(), addVolume("secrets"), func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "secrets", MountPath: "/opt/passwords/"}}
		}), `container "app" already mounts "secrets" at /opt/passwords, where the webhook mounts the passwords: set ecr-token-refresh.io/mount-path to a free path, or leave the container out with ecr-token-refresh.io/containers`},
		{"mount path of the AWS token", testPod(withRegistry(AnnotationMountPath, "/var/run/secrets/eks.amazonaws.com/serviceaccount"), addVolume("aws-iam-token"), func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "other", Image: "x",
				VolumeMounts: []corev1.VolumeMount{{Name: "aws-iam-token", MountPath: "/var/run/secrets/eks.amazonaws.com/serviceaccount"}}})
			p.Annotations[AnnotationContainers] = "app"
		}), `the sidecar mounts "ecr-token-refresh-passwords" at /var/run/secrets/eks.amazonaws.com/serviceaccount, where the app containers mount the AWS token volume "aws-iam-token": set ecr-token-refresh.io/mount-path to another path (e.g. /opt/passwords)`},
		{"no containers", testPod(withRegistry(), func(p *corev1.Pod) { p.Spec.Containers = nil }),
			`the pod has no containers`},
	}
	h, _ := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.Review(context.Background(), createRequest(podJSON(t, tt.pod)))
			if resp.Allowed {
				t.Fatalf("allowed with patch %+v; want denied: %s", resp.Patch, tt.want)
			}
			if resp.Result == nil || resp.Result.Code != http.StatusForbidden || resp.Result.Message != tt.want {
				t.Errorf("result %+v\nwant message %s", resp.Result, tt.want)
			}
			if len(resp.Patch) != 0 {
				t.Errorf("denied with a patch: %+v", resp.Patch)
			}
		})
	}
}

// TestHandleAdmits checks requests that are admitted: skipped ones with no
// patch, and injections whose result the golden files do not show.
func TestHandleAdmits(t *testing.T) {
	podRaw := podJSON(t, testPod(withRegistry()))
	tests := []struct {
		name      string
		req       func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest
		wantPatch bool
		warnings  []string
	}{
		{"create", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest { return r }, true, nil},
		{"update", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Operation = admissionv1.Update
			r.OldObject = r.Object
			return r
		}, false, nil},
		{"delete", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Operation, r.OldObject, r.Object = admissionv1.Delete, r.Object, runtime.RawExtension{}
			return r
		}, false, nil},
		{"subresource", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.SubResource = "binding"
			r.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Binding"}
			return r
		}, false, nil},
		{"not pending", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Object.Raw = podJSON(t, testPod(withRegistry(), func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }))
			return r
		}, false, nil},
		{"pending", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Object.Raw = podJSON(t, testPod(withRegistry(), func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }))
			return r
		}, true, nil},
		{"field names are case-sensitive", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Object.Raw = bytes.Replace(r.Object.Raw, []byte(`"metadata"`), []byte(`"Metadata"`), 1)
			return r
		}, false, nil},
		{"the status key as a label", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Object.Raw = podJSON(t, testPod(withRegistry(), func(p *corev1.Pod) { p.Labels = map[string]string{AnnotationStatus: StatusInjected} }))
			return r
		}, true, nil},
		{"no annotations", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Object.Raw = podJSON(t, testPod(nil))
			return r
		}, false, nil},
		{"container not selected may use the mount path", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Object.Raw = podJSON(t, testPod(withRegistry(AnnotationContainers, "app"), func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "b", Image: "x",
					VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: DefaultMountPath}}})
			}))
			return r
		}, true, nil},
		{"warnings on a denied-free skip", func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionRequest {
			r.Object.Raw = podJSON(t, testPod(map[string]string{AnnotationInject: "false", annotationPrefix + "b": "", annotationPrefix + "a": ""}))
			return r
		}, false, []string{
			"unknown annotation ecr-token-refresh.io/a is ignored (" + knownList + ")",
			"unknown annotation ecr-token-refresh.io/b is ignored (" + knownList + ")",
		}},
	}
	h, _ := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.Review(context.Background(), tt.req(createRequest(podRaw)))
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if got := len(resp.Patch) > 0; got != tt.wantPatch {
				t.Errorf("patch %+v, want one: %v", resp.Patch, tt.wantPatch)
			}
			if strings.Join(resp.Warnings, "\n") != strings.Join(tt.warnings, "\n") {
				t.Errorf("warnings %q, want %q", resp.Warnings, tt.warnings)
			}
		})
	}
}

// TestHandleErrors checks requests that cannot be read: an error answer
// with code 400, never a panic.
func TestHandleErrors(t *testing.T) {
	tests := []struct {
		name string
		req  *admissionv1.AdmissionRequest
		want string
	}{
		{"wrong kind", func() *admissionv1.AdmissionRequest {
			r := createRequest([]byte(`{}`))
			r.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
			return r
		}(), "expected a v1 Pod, got apps/v1, Kind=Deployment"},
		{"no object", createRequest(nil), "the admission request has no object"},
		{"not JSON", createRequest([]byte(`apiVersion: v1`)), "decoding the pod: "},
		{"not an object", createRequest([]byte(`[1]`)), "decoding the pod: "},
		{"wrong type", createRequest([]byte(`{"metadata":{"annotations":{"ecr-token-refresh.io/inject":"true"}},"spec":{"containers":{}}}`)), "decoding the pod: "},
		{"wrong type, injected", createRequest([]byte(`{"metadata":{"annotations":{"ecr-token-refresh.io/status":"injected"}},"spec":{"containers":{}}}`)), "decoding the pod: "},
		{"wrong type, unannotated", createRequest([]byte(`{"metadata":{"annotations":[]}}`)), "decoding the pod: "},
		{"duplicate field", createRequest([]byte(`{"spec":{"containers":[]},"spec":{}}`)), `decoding the pod: jsontext: duplicate object member name "spec"`},
	}
	h, _ := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.Review(context.Background(), tt.req)
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || !strings.HasPrefix(resp.Result.Message, tt.want) {
				t.Errorf("got allowed %v, result %+v; want an error starting %q", resp.Allowed, resp.Result, tt.want)
			}
		})
	}
}

// TestPatchKeepsUnknownFields checks that fields this build's k8s.io/api
// does not know survive the patch, at every level the patch touches.
func TestPatchKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"ecr-token-refresh.io/inject":"true","ecr-token-refresh.io/registry-main":"` + testHost + `"},"futureMeta":1},` +
		`"spec":{"futureSpec":{"a":[1,2]},"containers":[{"name":"app","image":"x","futureContainer":"y","volumeMounts":[{"name":"v","mountPath":"/v","futureMount":true}]}],` +
		`"initContainers":[{"name":"init","image":"x","futureInit":"z"}],"volumes":[{"name":"v","emptyDir":{},"futureVolume":null}]},"futureTop":"t"}`)
	h, _ := newTestHandler(t)
	resp := h.Review(context.Background(), createRequest(raw))
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("allowed %v, patch %+v, result %+v", resp.Allowed, resp.Patch, resp.Result)
	}
	var got map[string]any
	if err := json.Unmarshal(testutil.ApplyPatch(t, raw, resp.Patch), &got); err != nil {
		t.Fatal(err)
	}
	spec := got["spec"].(map[string]any)
	container := spec["containers"].([]any)[0].(map[string]any)
	for _, check := range []struct {
		where string
		ok    bool
	}{
		{"futureTop", got["futureTop"] == "t"},
		{"metadata.futureMeta", got["metadata"].(map[string]any)["futureMeta"] == 1.0},
		{"spec.futureSpec", spec["futureSpec"] != nil},
		{"spec.containers[0].futureContainer", container["futureContainer"] == "y"},
		{"spec.containers[0].volumeMounts[0].futureMount", container["volumeMounts"].([]any)[0].(map[string]any)["futureMount"] == true},
		{"spec.initContainers[0].futureInit", spec["initContainers"].([]any)[0].(map[string]any)["futureInit"] == "z"},
		{"spec.volumes[0].futureVolume", hasKey(spec["volumes"].([]any)[0], "futureVolume")},
	} {
		if !check.ok {
			t.Errorf("%s lost or changed by the patch", check.where)
		}
	}
	if n := len(container["volumeMounts"].([]any)); n != 2 {
		t.Errorf("app container has %d mounts, want 2", n)
	}
}

// hasKey reports whether m is a JSON object with key.
func hasKey(m any, key string) bool {
	_, ok := m.(map[string]any)[key]
	return ok
}

// TestServeHTTP checks the handler over HTTP: a well-formed
// AdmissionReview gets the patch with its uid, a malformed one an error
// answer.
func TestServeHTTP(t *testing.T) {
	h, _ := newTestHandler(t)
	ts := httptest.NewServer(h)
	defer ts.Close()

	review := func(obj []byte) string {
		return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"version":"v1","kind":"Pod"},` +
			`"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":` + string(obj) + `}}`
	}
	tests := []struct {
		name, contentType, body string
		wantAllowed, wantPatch  bool
		wantCode                int32
		wantUID                 string
	}{
		{"injects", "application/json", review(podJSON(t, testPod(withRegistry()))), true, true, http.StatusOK, "u-1"},
		{"denies", "application/json", review(podJSON(t, testPod(withRegistry(AnnotationCPURequest, "x")))), false, false, http.StatusForbidden, "u-1"},
		{"bad pod", "application/json", review([]byte(`"pod"`)), false, false, http.StatusBadRequest, "u-1"},
		{"not JSON", "application/json", `{"apiVersion":`, false, false, http.StatusBadRequest, ""},
		{"empty body", "application/json", ``, false, false, http.StatusBadRequest, ""},
		{"wrong content type", "text/plain", review([]byte(`{}`)), false, false, http.StatusBadRequest, ""},
		{"content type with parameters", "application/json; charset=utf-8", review(podJSON(t, testPod(withRegistry()))), true, true, http.StatusOK, "u-1"},
		{"v1beta1 review", "application/json", strings.Replace(review([]byte(`{}`)), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), false, false, http.StatusBadRequest, ""},
		{"no request", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, false, false, http.StatusBadRequest, ""},
	}
	t.Run("GET", func(t *testing.T) {
		res, err := http.Get(ts.URL + Path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != http.MethodPost {
			t.Errorf("HTTP %d, Allow %q; want 405 allowing POST", res.StatusCode, res.Header.Get("Allow"))
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := http.Post(ts.URL+Path, tt.contentType, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
				t.Fatalf("HTTP %d, answer not an AdmissionReview: %v", res.StatusCode, err)
			}
			r := out.Response
			if r == nil {
				t.Fatal("no response in the AdmissionReview")
			}
			code := int32(http.StatusOK) // an admission without a result
			if r.Result != nil {
				code = r.Result.Code
			}
			if r.Allowed != tt.wantAllowed || (len(r.Patch) > 0) != tt.wantPatch || code != tt.wantCode || string(r.UID) != tt.wantUID {
				t.Errorf("got allowed %v, patch %s, result %+v, uid %q", r.Allowed, r.Patch, r.Result, r.UID)
			}
			if tt.wantPatch && (r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch) {
				t.Errorf("patch type %v, want JSONPatch", r.PatchType)
			}
		})
	}
}

// TestMetrics checks the admissions counter by outcome.
func TestMetrics(t *testing.T) {
	h, reg := newTestHandler(t)
	ctx := context.Background()
	for _, req := range []*admissionv1.AdmissionRequest{
		createRequest(podJSON(t, testPod(withRegistry()))),
		createRequest(podJSON(t, testPod(withRegistry()))),
		createRequest(podJSON(t, testPod(nil))),
		createRequest(podJSON(t, testPod(withRegistry(AnnotationInterval, "x")))),
		createRequest([]byte(`[]`)),
	} {
		h.Review(ctx, req)
	}
	want := map[string]float64{outcomeInjected: 2, outcomeSkipped: 1, outcomeDenied: 1, outcomeError: 1}
	got := map[string]float64{}
	observations := map[string]uint64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			outcome := m.GetLabel()[0].GetValue()
			switch f.GetName() {
			case "ecr_token_refresh_webhook_admissions_total":
				got[outcome] = m.GetCounter().GetValue()
			case "ecr_token_refresh_webhook_admission_duration_seconds":
				observations[outcome] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	for outcome, n := range want {
		if got[outcome] != n || observations[outcome] != uint64(n) {
			t.Errorf("outcome %s: counted %v, timed %d, want %v", outcome, got[outcome], observations[outcome], n)
		}
	}
}

// TestNewHandler checks the options: an image is required, and two handlers
// share one registry's metrics.
func TestNewHandler(t *testing.T) {
	if _, err := NewHandler(Options{}); err == nil {
		t.Error("no error without a sidecar image")
	}
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := NewHandler(Options{SidecarImage: testImage, Registerer: reg}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewHandler(Options{SidecarImage: testImage}); err != nil {
		t.Errorf("the default registry: %v", err)
	}
}

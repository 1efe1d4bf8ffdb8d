package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/envtest"
)

// Namespaces of the integration test.
const (
	nsApps        = "apps"         // plain
	nsRestricted  = "restricted"   // enforces the restricted Pod Security Standard
	nsPodIdentity = "pod-identity" // the fake EKS Pod Identity webhook runs here
)

// fakePodIdentityPath serves fakePodIdentity in the test's webhook server.
const fakePodIdentityPath = "/fake-pod-identity"

// TestIntegration runs the webhook as the webhook command does, behind a
// real kube-apiserver configured with the project's
// MutatingWebhookConfiguration (manifests/base), and creates pods through
// the API server.
func TestIntegration(t *testing.T) {
	env := envtest.Start(t, &ctrlenvtest.Environment{
		WebhookInstallOptions: ctrlenvtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join("..", "manifests", "base", "mutatingwebhookconfiguration.yaml")},
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{fakePodIdentityConfig()},
		},
	})
	startWebhook(t, env)
	ctx := t.Context()

	c, _ := newClient(t, env.Config)
	for name, labels := range map[string]map[string]string{
		nsApps:        nil,
		nsRestricted:  {"pod-security.kubernetes.io/enforce": "restricted"},
		nsPodIdentity: {"test.ecr-token-refresh.io/pod-identity": "true"},
	} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
			t.Fatal(err)
		}
	}
	waitForInjection(t, c)

	t.Run("golden", func(t *testing.T) { testGoldenThroughAPIServer(t, c) })

	t.Run("injected", func(t *testing.T) {
		pod := createPod(t, c, testPod(withRegistry()))
		sidecar := findContainer(pod.Spec.InitContainers, ContainerName)
		if sidecar == nil {
			t.Fatalf("no native sidecar in %+v", pod.Spec.InitContainers)
		}
		if pod.Annotations[AnnotationStatus] != StatusInjected ||
			!reflect.DeepEqual(sidecar.RestartPolicy, ptr.To(corev1.ContainerRestartPolicyAlways)) ||
			!slices.Equal(sidecar.Args, []string{"sidecar", "--registry", testHost + "=/opt/passwords/main.pass"}) ||
			sidecar.Image != testImage {
			t.Errorf("injected pod: annotations %v, sidecar %+v", pod.Annotations, sidecar)
		}
		if n := len(pod.Spec.Containers[0].VolumeMounts); n != 1 {
			t.Errorf("app container has %d mounts, want the passwords", n)
		}
	})

	t.Run("restricted", func(t *testing.T) {
		restricted := func(p *corev1.Pod) {
			p.Namespace = nsRestricted
			p.Spec.Containers[0].SecurityContext = securityContext()
			p.Spec.Containers[0].SecurityContext.RunAsUser = ptr.To[int64](1000)
		}
		createPod(t, c, testPod(withRegistry(), restricted))
		createPod(t, c, testPod(withRegistry(AnnotationNativeSidecar, "false"), restricted))
		// The control: the namespace does enforce the standard.
		err := c.Create(ctx, testPod(nil, func(p *corev1.Pod) { p.Namespace = nsRestricted; p.Name = "control" }), client.DryRunAll)
		if !apierrors.IsForbidden(err) {
			t.Errorf("a pod violating the restricted standard was not forbidden: %v", err)
		}
	})

	t.Run("untouched", func(t *testing.T) {
		for _, a := range []map[string]string{nil, {AnnotationInject: "false", AnnotationRegistryPrefix + "main": testHost}} {
			in := testPod(a)
			pod := createPod(t, c, in)
			if len(pod.Spec.InitContainers) != 0 || len(pod.Spec.Volumes) != 0 || len(pod.Spec.Containers) != 1 ||
				len(pod.Spec.Containers[0].VolumeMounts) != 0 || !maps.Equal(pod.Annotations, a) {
				t.Errorf("pod with annotations %v changed: %+v", a, pod)
			}
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		first := createPod(t, c, testPod(withRegistry(AnnotationNativeSidecar, "false")))
		again := first.DeepCopy()
		again.ObjectMeta = metav1.ObjectMeta{Name: first.Name + "-again", Namespace: first.Namespace, Annotations: first.Annotations}
		again.Status = corev1.PodStatus{}
		second := createPod(t, c, again)
		if !reflect.DeepEqual(first.Spec, second.Spec) || !maps.Equal(first.Annotations, second.Annotations) {
			t.Errorf("an injected pod created again changed:\nfirst  %+v\nsecond %+v", first.Spec, second.Spec)
		}
	})

	t.Run("reinvocation", func(t *testing.T) {
		pod := createPod(t, c, testPod(withRegistry(), func(p *corev1.Pod) {
			p.Namespace = nsPodIdentity
			p.Spec.ServiceAccountName = "app"
		}))
		sidecar := findContainer(pod.Spec.InitContainers, ContainerName)
		if sidecar == nil {
			t.Fatal("not injected")
		}
		// The fake webhook runs after this one and gives app containers
		// only: the sidecar has the identity because this webhook was
		// reinvoked.
		if !slices.ContainsFunc(sidecar.Env, func(e corev1.EnvVar) bool { return e.Name == "AWS_CONTAINER_CREDENTIALS_FULL_URI" }) ||
			!slices.ContainsFunc(sidecar.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "eks-pod-identity-token" }) {
			t.Errorf("the sidecar lacks the identity the fake EKS Pod Identity webhook added after injection: env %+v, mounts %+v", sidecar.Env, sidecar.VolumeMounts)
		}
		if app := pod.Spec.Containers[0]; len(app.Env) != len(sidecar.Env) {
			t.Errorf("app env %+v, sidecar env %+v", app.Env, sidecar.Env)
		}
	})

	t.Run("denied", func(t *testing.T) {
		err := c.Create(ctx, testPod(withRegistry(AnnotationCPURequest, "abc"), func(p *corev1.Pod) { p.Namespace = nsApps }))
		want := `admission webhook "inject.ecr-token-refresh.io" denied the request: ecr-token-refresh.io/cpu-request: "abc" is not a Kubernetes quantity (expected e.g. 10m)`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error containing %s", err, want)
		}
	})

	t.Run("warnings", func(t *testing.T) {
		wc, warnings := newClient(t, env.Config)
		createPod(t, wc, testPod(withRegistry(annotationPrefix+"mountpath", "/x")))
		want := "unknown annotation ecr-token-refresh.io/mountpath is ignored (" + knownList + ")"
		if got := warnings.all(); !slices.Contains(got, want) {
			t.Errorf("warnings %q, want %q", got, want)
		}
	})

	t.Run("dry-run", func(t *testing.T) {
		pod := testPod(withRegistry(), func(p *corev1.Pod) { p.Namespace = nsApps; p.Name = "dry-run" })
		if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		if pod.Annotations[AnnotationStatus] != StatusInjected || findContainer(pod.Spec.InitContainers, ContainerName) == nil {
			t.Errorf("dry run not injected: %+v", pod)
		}
		err := c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("the dry-run pod was stored: %v", err)
		}
	})
}

// startWebhook runs the webhook, registered as the webhook command does,
// until the test ends, and waits until it serves.
func startWebhook(t *testing.T, env *ctrlenvtest.Environment) {
	t.Helper()
	o := env.WebhookInstallOptions
	mgr, err := manager.New(env.Config, manager.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir,
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := mgr.GetWebhookServer()
	h, err := NewHandler(Options{SidecarImage: testImage, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(Path, h)
	srv.Register(fakePodIdentityPath, &admission.Webhook{Handler: admission.HandlerFunc(fakePodIdentity)})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	started := srv.StartedChecker()
	err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("manager stopped: %w", err)
		default:
		}
		return started(&http.Request{}) == nil, nil
	})
	if err != nil {
		t.Fatalf("webhook server not serving: %v", err)
	}
}

// waitForInjection waits until the API server calls the webhook: its
// configuration reaches the admission plugin some time after it is stored.
func waitForInjection(t *testing.T, c client.Client) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pod := testPod(withRegistry(), func(p *corev1.Pod) { p.Namespace = nsApps; p.Name = "probe" })
		if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
			t.Logf("waiting for the webhook: %v", err)
			return false, nil
		}
		return pod.Annotations[AnnotationStatus] == StatusInjected, nil
	})
	if err != nil {
		t.Fatalf("the API server does not call the webhook: %v", err)
	}
}

// testGoldenThroughAPIServer creates every golden test case's pod through
// the API server (dry run): each is valid, and what the API server returns
// contains the golden file's pod, field by field.
func testGoldenThroughAPIServer(t *testing.T, c client.Client) {
	for _, in := range goldenInputs(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		if name == "unknown-fields" {
			continue // the API server drops unknown fields before admission
		}
		t.Run(name, func(t *testing.T) {
			raw, _ := readPodJSON(t, in)
			pod := &corev1.Pod{}
			if err := json.Unmarshal(raw, pod); err != nil {
				t.Fatal(err)
			}
			pod.Namespace = nsApps
			if err := c.Create(t.Context(), pod, client.DryRunAll); err != nil {
				t.Fatal(err)
			}
			var got, want map[string]any
			gotJSON, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			wantYAML, err := os.ReadFile(filepath.Join("testdata", name+".golden.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(gotJSON, &got); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(wantYAML, &want); err != nil {
				t.Fatal(err)
			}
			want["metadata"].(map[string]any)["namespace"] = nsApps
			// The client drops the type; the API server sets the status.
			delete(want, "apiVersion")
			delete(want, "kind")
			delete(want, "status")
			if diff := contains(got, want, ""); diff != "" {
				t.Errorf("the API server's pod differs from %s.golden.yaml at %s", name, diff)
			}
		})
	}
}

// contains returns where got, a JSON value, does not hold every field of
// want with the same value (arrays item by item), or "".
func contains(got, want any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %v, want an object", path, got)
		}
		for k, v := range w {
			if diff := contains(g[k], v, path+"."+k); diff != "" {
				return diff
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: got %v, want %v", path, got, want)
		}
		for i := range w {
			if diff := contains(g[i], w[i], fmt.Sprintf("%s[%d]", path, i)); diff != "" {
				return diff
			}
		}
	default:
		if !reflect.DeepEqual(got, want) {
			return fmt.Sprintf("%s: got %v, want %v", path, got, want)
		}
	}
	return ""
}

// createPod creates pod, with a generated name, in nsApps unless it names
// another namespace, and returns what the API server stored.
func createPod(t *testing.T, c client.Client, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if pod.Namespace == "" || pod.Namespace == "spinnaker" {
		pod.Namespace = nsApps
	}
	pod.Name, pod.GenerateName = "", "test-"
	if err := c.Create(t.Context(), pod); err != nil {
		t.Fatalf("creating a pod: %v", err)
	}
	got := &corev1.Pod{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// findContainer returns the container called name, or nil.
func findContainer(containers []corev1.Container, name string) *corev1.Container {
	if i := slices.IndexFunc(containers, func(c corev1.Container) bool { return c.Name == name }); i >= 0 {
		return &containers[i]
	}
	return nil
}

// warningRecorder records the warnings the API server returns.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

// HandleWarningHeaderWithContext implements rest.WarningHandlerWithContext.
func (r *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings = append(r.warnings, text)
}

// all returns the warnings recorded so far.
func (r *warningRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.warnings)
}

// newClient returns a client of cfg whose warnings are recorded.
func newClient(t *testing.T, cfg *rest.Config) (client.Client, *warningRecorder) {
	t.Helper()
	rec := &warningRecorder{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandlerWithContext = rec
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// fakePodIdentityConfig configures fakePodIdentity for the nsPodIdentity
// namespace. Its name sorts after the project's configuration, so the API
// server calls it second, and then the project's webhook again.
func fakePodIdentityConfig() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-fake-eks-pod-identity"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "fake-pod-identity.test.ecr-token-refresh.io",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Name: "fake", Namespace: "fake", Path: ptr.To(fakePodIdentityPath),
			}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test.ecr-token-refresh.io/pod-identity": "true"}},
		}},
	}
}

// fakePodIdentity stands in for the EKS Pod Identity webhook: it gives the
// app containers (not the sidecar) the AWS variables and the token mount.
func fakePodIdentity(_ context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	const dir = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	env := []corev1.EnvVar{
		{Name: "AWS_CONTAINER_CREDENTIALS_FULL_URI", Value: "http://169.254.170.23/v1/credentials"},
		{Name: "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", Value: dir + "/eks-pod-identity-token"},
		{Name: "AWS_REGION", Value: "us-west-2"},
	}
	mount := corev1.VolumeMount{Name: "eks-pod-identity-token", MountPath: dir, ReadOnly: true}
	var p patch
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == mount.Name }) {
		appendTo(&p, "/spec/volumes", len(pod.Spec.Volumes), corev1.Volume{Name: mount.Name, VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: "pods.eks.amazonaws.com", ExpirationSeconds: ptr.To[int64](86400), Path: "eks-pod-identity-token",
			}}}},
		}})
	}
	for i, c := range pod.Spec.Containers {
		if isSidecar(c.Name) || slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == mount.Name }) {
			continue
		}
		appendTo(&p, fmt.Sprintf("/spec/containers/%d/env", i), len(c.Env), env...)
		appendTo(&p, fmt.Sprintf("/spec/containers/%d/volumeMounts", i), len(c.VolumeMounts), mount)
	}
	body, err := json.Marshal(p)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	patchType := admissionv1.PatchTypeJSONPatch
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: body, PatchType: &patchType}}
}

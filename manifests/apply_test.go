package manifests_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/apply"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/envtest"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// TestApplyEveryObject applies every object of every kustomization to a
// real API server with server-side apply (dry-run off) and reads it back.
func TestApplyEveryObject(t *testing.T) {
	env := envtest.Start(t, &ctrlenvtest.Environment{
		CRDInstallOptions: ctrlenvtest.CRDInstallOptions{Paths: []string{filepath.Join("testdata", "cert-manager-crds.yaml")}},
	})
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ensureNamespace(t, c, "spinnaker") // the example joins an existing Spinnaker namespace
	for _, name := range []string{"base", "cert-manager", "clouddriver"} {
		t.Run(name, func(t *testing.T) {
			_, objs := build(t, kustomizations[name])
			if err := apply.Objects(ctx, c, "manifests-test", objs...); err != nil {
				t.Fatal(err)
			}
			for _, obj := range objs {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(obj.GroupVersionKind())
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
					t.Fatalf("read back %s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
				assertSubset(t, obj.GetKind()+" "+obj.GetName(), obj.Object, got.Object)
			}
		})
	}

	// The webhook's own pods pass the restricted Pod Security level that
	// its namespace enforces.
	_, base := build(t, kustomizations["base"])
	pod := templatePod(t, find(t, base, "Deployment", "ecr-token-refresh-webhook"))
	if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Errorf("the webhook's pod is refused in its namespace: %v", err)
	}
	privileged := pod.DeepCopy()
	privileged.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
	if err := c.Create(ctx, privileged, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Errorf("a pod breaking the restricted level was not refused (%v): the namespace does not enforce it", err)
	}
}

// assertSubset fails unless every field of want is in got with the same
// value: the API server kept what the manifest says (it may add defaults).
func assertSubset(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Errorf("%s: got %T, want a map", path, got)
			return
		}
		for k, v := range w {
			assertSubset(t, path+"."+k, v, g[k])
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: got %v, want %d items", path, got, len(w))
			return
		}
		for i := range w {
			assertSubset(t, fmt.Sprintf("%s[%d]", path, i), w[i], g[i])
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("%s: got %v, want %v", path, got, want)
		}
	}
}

func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestClouddriverExampleIsInjected creates the example Deployment's pod
// template as a Pod through the API server, with the base manifests'
// MutatingWebhookConfiguration pointed at a webhook served in this test:
// the pod comes back injected. A pod without the inject annotation never
// reaches the webhook (matchConditions), and neither does a pod in an
// opted-out namespace (namespaceSelector).
func TestClouddriverExampleIsInjected(t *testing.T) {
	_, base := build(t, kustomizations["base"])
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	fromUnstructured(t, find(t, base, "MutatingWebhookConfiguration", "ecr-token-refresh"), mwc)
	for i := range mwc.Webhooks {
		// envtest rewrites the service reference to https://host:port/<path>.
		p := strings.TrimPrefix(*mwc.Webhooks[i].ClientConfig.Service.Path, "/")
		mwc.Webhooks[i].ClientConfig.Service.Path = &p
	}
	env := envtest.Start(t, &ctrlenvtest.Environment{
		WebhookInstallOptions: ctrlenvtest.WebhookInstallOptions{
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{mwc},
			LocalServingHost: "127.0.0.1",
		},
	})
	reg := prometheus.NewRegistry()
	serveWebhook(t, env, reg)
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ensureNamespace(t, c, "spinnaker")
	admissions := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var total float64
		for _, mf := range mfs {
			if mf.GetName() == "ecr_token_refresh_webhook_admissions_total" {
				for _, m := range mf.GetMetric() {
					total += m.GetCounter().GetValue()
				}
			}
		}
		return total
	}

	_, example := build(t, kustomizations["clouddriver"])
	pod := templatePod(t, find(t, example, "Deployment", "spin-clouddriver")) // in spinnaker, spin-clouddriver-*
	template := pod.DeepCopy()
	// Retry while the API server's webhook client warms up.
	testutil.WaitFor(t, 30*time.Second, "the webhook to be reachable", func() bool {
		err = c.Create(ctx, pod.DeepCopy(), client.DryRunAll)
		return err == nil
	})
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	if got.Annotations[webhook.AnnotationStatus] != webhook.StatusInjected {
		t.Fatalf("example pod not injected: annotations %v", got.Annotations)
	}
	if !slices.ContainsFunc(got.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "ecr-token-refresh" }) {
		t.Errorf("example pod has no ecr-token-refresh init container: %v", got.Spec.InitContainers)
	}
	mounts := got.Spec.Containers[0].VolumeMounts
	if !slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/opt/passwords" && m.ReadOnly }) {
		t.Errorf("clouddriver does not mount /opt/passwords read-only: %v", mounts)
	}

	before := admissions()
	plain := template.DeepCopy()
	plain.Annotations = nil
	if err := c.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	ensureNamespace(t, c, "opted-out")
	optedOut := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: "opted-out"}, optedOut); err != nil {
		t.Fatal(err)
	}
	optedOut.Labels["ecr-token-refresh.io/webhook"] = "disabled"
	if err := c.Update(ctx, optedOut); err != nil {
		t.Fatal(err)
	}
	annotated := template.DeepCopy()
	annotated.Namespace = "opted-out"
	if err := c.Create(ctx, annotated); err != nil {
		t.Fatal(err)
	}
	if annotated.Annotations[webhook.AnnotationStatus] != "" {
		t.Error("a pod in an opted-out namespace was injected")
	}
	if after := admissions(); after != before {
		t.Errorf("the webhook saw %v admissions for pods it should never be sent", after-before)
	}
}

// serveWebhook serves the real webhook handler on envtest's local serving
// address and certificate until the test ends.
func serveWebhook(t *testing.T, env *ctrlenvtest.Environment, reg prometheus.Registerer) {
	t.Helper()
	o := env.WebhookInstallOptions
	srv := crwebhook.NewServer(crwebhook.Options{Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir})
	h, err := webhook.NewHandler(webhook.Options{SidecarImage: "ghcr.io/ecr-token-refresh/ecr-token-refresh:test", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(webhook.Path, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	})
	addr := net.JoinHostPort(o.LocalServingHost, fmt.Sprint(o.LocalServingPort))
	testutil.WaitFor(t, 10*time.Second, "the webhook server to listen", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// templatePod returns the Pod that deployment's ReplicaSet would create.
func templatePod(t *testing.T, deployment *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	pod, err := apply.TemplatePod(deployment)
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatal(err)
	}
}

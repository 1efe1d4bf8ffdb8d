package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/ecr-token-refresh/ecr-token-refresh/certs"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/envtest"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// namespace is the manifests' namespace, which the ServiceAccount's user
// name and the ClusterRoleBinding name.
const namespace = "ecr-token-refresh"

// serviceAccount is the user the webhook runs as, with the groups the API
// server gives a ServiceAccount.
var serviceAccount = rest.ImpersonationConfig{
	UserName: "system:serviceaccount:" + namespace + ":ecr-token-refresh-webhook",
	Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
}

// Short lifetimes: a serving certificate every two seconds, a CA every
// six, each CA rotation done a second later.
var shortLived = certs.Options{
	ExtraHosts:       []string{"localhost"},
	CALifetime:       9 * time.Second,
	CertLifetime:     3 * time.Second,
	PropagationDelay: 500 * time.Millisecond,
}

// TestSelfManaged runs two webhook processes under the manifests' RBAC, as
// their ServiceAccount, against a real API server whose
// MutatingWebhookConfiguration calls both, one webhook each, and starts
// with an empty caBundle and no Secret. They create the Secret, fill in
// the caBundle and inject pods; under a stream of pod creations the
// certificates rotate, CA included, with no failed admission and no write
// beyond the rotations; when the leader stops, the other one takes over; a
// last process continues from the Secret and restores an emptied caBundle.
// A request that RBAC denies fails the test.
func TestSelfManaged(t *testing.T) {
	env := envtest.Start(t, &crenvtest.Environment{})
	ctx := t.Context()
	admin, err := client.NewWithWatch(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	applyManifests(t, admin, "namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
	checkImpersonation(t, env.Config)

	ports := freePorts(t)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: certs.WebhookConfigName}}
	for i, port := range ports {
		cfg.Webhooks = append(cfg.Webhooks, admissionregistrationv1.MutatingWebhook{
			Name:         fmt.Sprintf("inject-%d.ecr-token-refresh.io", i),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To(fmt.Sprintf("https://localhost:%d%s", port, webhook.Path))},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		})
	}
	if err := admin.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	secrets, err := admin.Watch(ctx, &corev1.SecretList{}, client.InNamespace(namespace), client.MatchingFields{"metadata.name": certs.SecretName})
	if err != nil {
		t.Fatal(err)
	}
	defer secrets.Stop()
	var seen rotations

	procs := [2]*process{startWebhook(t, env.Config, "a", ports[0], shortLived), startWebhook(t, env.Config, "b", ports[1], shortLived)}
	start := time.Now()
	testutil.WaitFor(t, 20*time.Second, "both replicas ready", func() bool {
		return procs[0].certs.ReadyCheck() == nil && procs[1].certs.ReadyCheck() == nil
	})
	testutil.WaitFor(t, 10*time.Second, "the caBundle", func() bool { return caBundleInSync(t, admin) })
	t.Logf("ready with a caBundle after %s", time.Since(start).Round(time.Millisecond))
	if pod := createPod(ctx, t, admin, false); !injected(pod) {
		t.Fatalf("pod not injected: %v", pod.Annotations)
	}

	stream := startStream(ctx, t, admin)
	start = time.Now()
	deadline := time.NewTimer(40 * time.Second)
	defer deadline.Stop()
	for !seen.done() {
		select {
		case ev := <-secrets.ResultChan():
			seen.add(t, ev)
		case <-deadline.C:
			t.Fatalf("rotations after %s: %s", time.Since(start), &seen)
		}
	}
	created, failed := stream.stop()
	t.Logf("rotations in %s: %s; %d pods admitted through both webhooks", time.Since(start).Round(time.Millisecond), &seen, created)
	for _, err := range failed {
		t.Errorf("failed admission: %v", err)
	}
	if created == 0 {
		t.Error("no pod created during the rotations")
	}

	writes := procs[0].writes.Load() + procs[1].writes.Load()
	if procs[0].writes.Load() > 0 && procs[1].writes.Load() > 0 {
		t.Errorf("both processes wrote the Secret: %d and %d writes", procs[0].writes.Load(), procs[1].writes.Load())
	}
	if writes > int64(seen.versions)+2 || writes > int64(2*len(seen.cas)+len(seen.serving)) {
		t.Errorf("%d writes for %s: more than the rotations need", writes, &seen)
	}
	for _, p := range procs {
		if n := p.failedWrites.Load(); n > 0 {
			t.Errorf("process %s: %d failed writes", p.name, n)
		}
	}

	// The leader stops; the other one takes over and rotates alone.
	leader, other := procs[0], procs[1]
	if leader.writes.Load() == 0 {
		leader, other = other, leader
	}
	leader.stop()
	removeWebhook(ctx, t, admin, leader.port)
	before := len(seen.serving)
	testutil.WaitFor(t, 20*time.Second, "the other process to rotate", func() bool {
		for {
			select {
			case ev := <-secrets.ResultChan():
				seen.add(t, ev)
			default:
				return other.writes.Load() > 0 && len(seen.serving) > before
			}
		}
	})
	testutil.WaitFor(t, 10*time.Second, "the caBundle", func() bool { return caBundleInSync(t, admin) })
	if pod := createPod(ctx, t, admin, true); !injected(pod) {
		t.Errorf("pod not injected after the leader stopped: %v", pod.Annotations)
	}

	// A process with long lifetimes replaces it, continues from the
	// Secret to certificates for an hour and restores a caBundle that
	// someone emptied as soon as it changes.
	other.stop()
	hour := certs.Options{ExtraHosts: []string{"localhost"}, CALifetime: time.Hour, CertLifetime: time.Hour, PropagationDelay: shortLived.PropagationDelay}
	last := startWebhook(t, env.Config, "c", other.port, hour)
	testutil.WaitFor(t, 20*time.Second, "certificates for an hour", func() bool {
		return last.certs.ReadyCheck() == nil && caBundleInSync(t, admin) && validFor(t, admin, 50*time.Minute)
	})
	setCABundle(ctx, t, admin, nil)
	testutil.WaitFor(t, 5*time.Second, "the caBundle restored", func() bool { return caBundleInSync(t, admin) })
	if pod := createPod(ctx, t, admin, false); !injected(pod) {
		t.Errorf("pod not injected by the last process: %v", pod.Annotations)
	}
	// Leader election, which the processes' RBAC allows, records Events.
	testutil.WaitFor(t, 5*time.Second, "a leader election Event", func() bool {
		events := &corev1.EventList{}
		if err := admin.List(ctx, events, client.InNamespace(namespace)); err != nil {
			t.Fatal(err)
		}
		for _, ev := range events.Items {
			if ev.InvolvedObject.Kind == "Lease" && ev.InvolvedObject.Name == certs.LeaseName {
				return true
			}
		}
		return false
	})
}

// process is a webhook process: a controller-runtime manager as the
// ServiceAccount with the webhook and self-managed certificates, as
// cmd/ecr-token-refresh sets it up.
type process struct {
	name  string
	port  int
	certs *certs.Manager
	stop  func()
	// writes counts its requests that create or update the Secret, and
	// failedWrites its writes of the Secret or the webhook configuration
	// that failed.
	writes, failedWrites atomic.Int64
	// forbidden is its first request that RBAC denied.
	forbidden atomic.Pointer[string]
}

func startWebhook(t *testing.T, admin *rest.Config, name string, port int, opts certs.Options) *process {
	t.Helper()
	p := &process{name: name, port: port}
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = serviceAccount
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return &counter{next: rt, p: p} }

	var logs testutil.Buffer
	logger := logr.FromSlogHandler(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process %s logs:\n%s", name, logs.String())
		}
	})

	opts.Namespace = namespace
	opts.Election = certs.Timing{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond}
	cm, err := certs.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	p.certs = cm
	h, err := webhook.NewHandler(webhook.Options{SidecarImage: "example.com/ecr-token-refresh:test", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{GetCertificate: cm.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(webhook.Path, h)
	srv := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cm.Start(ctx, cfg, logger) }()
	p.stop = sync.OnceFunc(func() {
		cancel()
		_ = srv.Close()
		if err := <-done; err != nil {
			t.Errorf("process %s: %v", name, err)
		}
	})
	t.Cleanup(func() {
		p.stop()
		if req := p.forbidden.Load(); req != nil {
			t.Errorf("process %s: forbidden: %s", name, *req)
		}
	})
	return p
}

// counter counts a process's writes and records a request that RBAC
// denied.
type counter struct {
	next http.RoundTripper
	p    *process
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	secret := strings.Contains(req.URL.Path, "/secrets")
	write := req.Method != http.MethodGet && (secret || strings.Contains(req.URL.Path, "/mutatingwebhookconfigurations"))
	if write && secret {
		c.p.writes.Add(1)
	}
	resp, err := c.next.RoundTrip(req)
	if write && (err != nil || resp.StatusCode >= 300) {
		c.p.failedWrites.Add(1)
	}
	if err == nil && resp.StatusCode == http.StatusForbidden {
		c.p.forbidden.CompareAndSwap(nil, ptr.To(req.Method+" "+req.URL.String()))
	}
	return resp, err
}

// rotations are what the Secret went through.
type rotations struct {
	versions     int
	cas, serving map[string]bool
	// rotated is set once a CA has replaced the first one alone in the
	// bundle, after both were in it.
	rotated, both bool
	first         string
}

func (r *rotations) add(t *testing.T, ev watch.Event) {
	t.Helper()
	secret, ok := ev.Object.(*corev1.Secret)
	if !ok || ev.Type == watch.Deleted {
		t.Fatalf("unexpected watch event %s %T", ev.Type, ev.Object)
	}
	if r.cas == nil {
		r.cas, r.serving = map[string]bool{}, map[string]bool{}
	}
	r.versions++
	r.serving[string(secret.Data["tls.crt"])] = true
	var cas []string
	for rest := secret.Data["ca.crt"]; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		cas = append(cas, string(block.Bytes))
		r.cas[string(block.Bytes)] = true
	}
	switch {
	case len(cas) == 0:
		t.Fatal("no CA in the Secret")
	case r.first == "":
		r.first = cas[0]
	case len(cas) > 1:
		r.both = true
	case r.both && cas[0] != r.first:
		r.rotated = true
	}
}

// done reports whether a CA rotation completed and at least three serving
// certificates followed the first.
func (r *rotations) done() bool { return r.rotated && len(r.serving) >= 4 }

func (r *rotations) String() string {
	return fmt.Sprintf("%d Secret versions, %d CAs, %d serving certificates, CA rotated: %v", r.versions, len(r.cas), len(r.serving), r.rotated)
}

// stream creates pods, dry-run, one every few milliseconds.
type stream struct {
	stop func() (created int, failed []error)
}

func startStream(ctx context.Context, t *testing.T, c client.Client) *stream {
	ctx, cancel := context.WithCancel(ctx)
	var created int
	var failed []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for created+len(failed) < 3000 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pod := newPod()
			err := c.Create(ctx, pod, client.DryRunAll)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				failed = append(failed, err)
			case !injected(pod):
				failed = append(failed, fmt.Errorf("pod not injected: %v", pod.Annotations))
			default:
				created++
			}
		}
	}()
	return &stream{stop: func() (int, []error) {
		cancel()
		<-done
		return created, failed
	}}
}

func newPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "app-",
			Namespace:    "default",
			Annotations: map[string]string{
				webhook.AnnotationInject:               "true",
				webhook.AnnotationRegistryPrefix + "x": "123456789012.dkr.ecr.us-west-2.amazonaws.com",
			},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app"}}},
	}
}

func createPod(ctx context.Context, t *testing.T, c client.Client, dryRun bool) *corev1.Pod {
	t.Helper()
	pod := newPod()
	var opts []client.CreateOption
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	if err := c.Create(ctx, pod, opts...); err != nil {
		t.Fatalf("creating a pod: %v", err)
	}
	return pod
}

func injected(pod *corev1.Pod) bool {
	return pod.Annotations[webhook.AnnotationStatus] == webhook.StatusInjected
}

// caBundleInSync reports whether every webhook's caBundle is the Secret's
// ca.crt.
func caBundleInSync(t *testing.T, c client.Client) bool {
	t.Helper()
	secret := &corev1.Secret{}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: certs.SecretName}, secret); err != nil {
		return false
	}
	if err := c.Get(t.Context(), client.ObjectKey{Name: certs.WebhookConfigName}, cfg); err != nil {
		t.Fatal(err)
	}
	for _, w := range cfg.Webhooks {
		if len(w.ClientConfig.CABundle) == 0 || !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
			return false
		}
	}
	return true
}

// validFor reports whether the Secret's CAs and serving certificate are
// valid for d more.
func validFor(t *testing.T, c client.Client, d time.Duration) bool {
	t.Helper()
	secret := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: certs.SecretName}, secret); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"ca.crt", "tls.crt"} {
		for rest := secret.Data[key]; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if time.Until(cert.NotAfter) < d {
				return false
			}
		}
	}
	return true
}

// setCABundle sets the caBundle of every webhook.
func setCABundle(ctx context.Context, t *testing.T, c client.Client, caBundle []byte) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: certs.WebhookConfigName}, cfg); err != nil {
			return err
		}
		for i := range cfg.Webhooks {
			cfg.Webhooks[i].ClientConfig.CABundle = caBundle
		}
		return c.Update(ctx, cfg)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// removeWebhook removes the webhook that calls port.
func removeWebhook(ctx context.Context, t *testing.T, c client.Client, port int) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: certs.WebhookConfigName}, cfg); err != nil {
			return err
		}
		var kept []admissionregistrationv1.MutatingWebhook
		for _, w := range cfg.Webhooks {
			if !strings.Contains(*w.ClientConfig.URL, ":"+strconv.Itoa(port)+"/") {
				kept = append(kept, w)
			}
		}
		cfg.Webhooks = kept
		return c.Update(ctx, cfg)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// applyManifests creates the objects of files in manifests/base, in the
// manifests' namespace as kustomize puts them.
func applyManifests(t *testing.T, c client.Client, files ...string) {
	t.Helper()
	for _, file := range files {
		data, err := os.ReadFile(filepath.Join("..", "manifests", "base", file))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			switch obj.GetKind() {
			case "Namespace", "ClusterRole", "ClusterRoleBinding":
			default:
				obj.SetNamespace(namespace)
			}
			if err := c.Create(t.Context(), obj); err != nil {
				t.Fatalf("%s: creating %s %s: %v", file, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
}

// checkImpersonation checks that the webhook runs with the ServiceAccount's
// permissions, not an admin's: it may not read other Secrets.
func checkImpersonation(t *testing.T, admin *rest.Config) {
	t.Helper()
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = serviceAccount
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: "other"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("reading another Secret as the ServiceAccount: %v, want forbidden", err)
	}
	if err := c.List(t.Context(), &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets as the ServiceAccount: %v, want forbidden", err)
	}
}

// freePorts returns two distinct free ports.
func freePorts(t *testing.T) [2]int {
	t.Helper()
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/ecr-token-refresh/ecr-token-refresh/certs"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/envtest"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testcerts"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// TestParseWebhookFlags checks the webhook command's flags, their defaults
// and the usage errors.
func TestParseWebhookFlags(t *testing.T) {
	defaults := webhookFlags{
		port:         9443,
		certDir:      filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		sidecarImage: defaultImage + ":" + version,
		healthAddr:   ":8081",
		metricsAddr:  ":8080",
		drain:        5 * time.Second,
	}
	tests := []struct {
		name    string
		args    []string
		want    webhookFlags
		wantErr error
	}{
		{"defaults", nil, defaults, nil},
		{"all set", []string{"--port=8443", "--cert-dir", "/certs", "--sidecar-image", "registry.example.com/ecr-token-refresh:v2",
			"--health-probe-bind-address", ":9081", "--metrics-bind-address", "0", "--enable-http2", "--self-managed-certs", "--kubeconfig", "/kube/config", "--shutdown-drain", "2s"},
			webhookFlags{port: 8443, certDir: "/certs", sidecarImage: "registry.example.com/ecr-token-refresh:v2", healthAddr: ":9081", metricsAddr: "0", enableHTTP2: true, selfManaged: true,
				kubeconfig: "/kube/config", drain: 2 * time.Second}, nil},
		{"cert hosts", []string{"--self-managed-certs", "--cert-host", "localhost", "--cert-host=127.0.0.1"},
			func() webhookFlags {
				f := defaults
				f.selfManaged = true
				f.certHosts = []string{"localhost", "127.0.0.1"}
				return f
			}(), nil},
		{"cert host without self-managed certs", []string{"--cert-host", "localhost"}, webhookFlags{}, errUsage},
		{"empty cert host", []string{"--self-managed-certs", "--cert-host="}, webhookFlags{}, errUsage},
		{"no drain", []string{"--shutdown-drain=0"}, func() webhookFlags { f := defaults; f.drain = 0; return f }(), nil},
		{"negative drain", []string{"--shutdown-drain=-1s"}, webhookFlags{}, errUsage},
		{"help", []string{"-h"}, webhookFlags{}, flag.ErrHelp},
		{"unknown flag", []string{"--self-signed"}, webhookFlags{}, errUsage},
		{"argument", []string{"extra"}, webhookFlags{}, errUsage},
		{"port out of range", []string{"--port", "0"}, webhookFlags{}, errUsage},
		{"empty image", []string{"--sidecar-image="}, webhookFlags{}, errUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWebhookFlags(tt.args, io.Discard)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("flags %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRunWebhook runs the webhook command in files mode, which needs no
// API server, and checks the server's promises: the webhook at
// /mutate-v1-pod with TLS 1.2 at least and no HTTP/2, certificates
// reloaded from --cert-dir, the health probes and the metrics.
func TestRunWebhook(t *testing.T) {
	ca := testcerts.NewCA(t)
	files, _ := ca.Files(t)
	certDir := newProjectedDir(t, files)

	port, health, metrics := freePort(t), freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- runWebhook(ctx, []string{"--port", port, "--cert-dir", certDir.dir, "--shutdown-drain", "0",
			"--health-probe-bind-address", "127.0.0.1:" + health, "--metrics-bind-address", "127.0.0.1:" + metrics})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runWebhook: %v", err)
		}
	})
	waitHealthy(t, health, "/readyz")

	addr := "127.0.0.1:" + port
	roots := ca.Roots
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-42","kind":{"version":"v1","kind":"Pod"},` +
		`"resource":{"version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod",` +
		`"metadata":{"name":"p","annotations":{"ecr-token-refresh.io/inject":"true","ecr-token-refresh.io/registry-main":"123456789012.dkr.ecr.us-west-2.amazonaws.com"}},` +
		`"spec":{"containers":[{"name":"app","image":"app"}]}}}}`
	res, err := httpClient.Post("https://"+addr+webhook.Path, "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	var out admissionv1.AdmissionReview
	err = json.NewDecoder(res.Body).Decode(&out)
	res.Body.Close()
	if err != nil || out.Response == nil || out.Response.UID != "u-42" || !out.Response.Allowed ||
		!strings.Contains(string(out.Response.Patch), `"--registry","123456789012.dkr.ecr.us-west-2.amazonaws.com=/opt/passwords/main.pass"`) ||
		!strings.Contains(string(out.Response.Patch), `ghcr.io/ecr-token-refresh/ecr-token-refresh:`+version) {
		t.Errorf("answer %+v (%v)", out.Response, err)
	}
	if res.ProtoMajor != 1 {
		t.Errorf("served over %s, want HTTP/1.1 without --enable-http2", res.Proto)
	}

	if _, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Error("HTTP/2 negotiated without --enable-http2")
	}
	conn.Close()

	files, second := ca.Files(t)
	certDir.update(t, files)
	testutil.WaitFor(t, 30*time.Second, "the new serving certificate", func() bool {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(second) == 0
	})

	res, err = http.Get("http://127.0.0.1:" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || !strings.Contains(string(body), `ecr_token_refresh_webhook_admissions_total{outcome="injected"} 1`) {
		t.Errorf("metrics lack the injection (%v):\n%s", err, body)
	}
	res, err = http.Get("http://127.0.0.1:" + health + "/healthz")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", res, err)
	} else {
		res.Body.Close()
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// startWithKubeconfig starts a kube-apiserver and points KUBECONFIG at an
// admin kubeconfig for it, as runWebhook reads it.
func startWithKubeconfig(t *testing.T) *ctrlenvtest.Environment {
	t.Helper()
	env := envtest.Start(t, &ctrlenvtest.Environment{})
	user, err := env.AddUser(ctrlenvtest.User{Name: "webhook", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
	return env
}

// waitHealthy waits until the health server on port answers 200 at path.
func waitHealthy(t *testing.T, port, path string) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, path, func() bool {
		res, err := http.Get("http://127.0.0.1:" + port + path)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// TestRunWebhookSelfManagedCerts runs the webhook command as the base
// manifests do, with --self-managed-certs and no certificate anywhere: it
// creates the Secret, fills the caBundle of its MutatingWebhookConfiguration,
// turns ready, and serves a certificate for its Service that the caBundle
// verifies.
func TestRunWebhookSelfManagedCerts(t *testing.T) {
	env := startWithKubeconfig(t)
	t.Setenv(certs.NamespaceEnv, certs.DefaultNamespace)
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: certs.DefaultNamespace}}); err != nil {
		t.Fatal(err)
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	data, err := os.ReadFile("../../manifests/base/mutatingwebhookconfiguration.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, mwc); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}

	port, health := freePort(t), freePort(t)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- runWebhook(runCtx, []string{"--self-managed-certs", "--port", port, "--shutdown-drain", "0",
			"--health-probe-bind-address", "127.0.0.1:" + health, "--metrics-bind-address", "0"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runWebhook: %v", err)
		}
	})
	waitHealthy(t, health, "/readyz")

	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: certs.DefaultNamespace, Name: certs.SecretName}, secret); err != nil {
		t.Fatalf("the Secret was not created: %v", err)
	}
	// Ready means serving the Secret's certificate; the leader patches the
	// caBundle right after writing the Secret.
	testutil.WaitFor(t, 10*time.Second, "the caBundle", func() bool {
		if err := c.Get(ctx, client.ObjectKeyFromObject(mwc), mwc); err != nil {
			t.Fatal(err)
		}
		return len(mwc.Webhooks[0].ClientConfig.CABundle) > 0
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatalf("caBundle holds no certificate: %q", mwc.Webhooks[0].ClientConfig.CABundle)
	}
	conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{
		RootCAs:    roots,
		ServerName: certs.ServiceName + "." + certs.DefaultNamespace + ".svc",
	})
	if err != nil {
		t.Fatalf("the served certificate does not verify against the caBundle: %v", err)
	}
	conn.Close()
}

// TestRunWebhookStartErrors checks that a webhook that cannot start says
// why and what to do, before serving anything.
func TestRunWebhookStartErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no certificate in --cert-dir", []string{"--cert-dir", dir},
			"certs: --cert-dir " + dir + ": open " + filepath.Join(dir, "tls.crt") + ": no such file or directory (mount the webhook's TLS Secret there, or use --self-managed-certs)"},
		{"missing kubeconfig", []string{"--self-managed-certs", "--kubeconfig", filepath.Join(dir, "kubeconfig")},
			"(--self-managed-certs needs the API server: run in a pod, or give --kubeconfig)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--port", freePort(t), "--health-probe-bind-address", "127.0.0.1:0", "--metrics-bind-address", "0"}, tt.args...)
			err := runWebhook(t.Context(), args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestTuneGC checks that the webhook's garbage collector settings apply
// unless the operator set GOGC or GOMEMLIMIT.
func TestTuneGC(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"defaults", nil, webhookGCPercent, webhookMemoryLimit},
		{"GOGC set", map[string]string{"GOGC": "100"}, 77, webhookMemoryLimit},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, webhookGCPercent, 1 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Known settings before, restored after: the runtime's are
			// process-wide.
			oldPercent, oldLimit := debug.SetGCPercent(77), debug.SetMemoryLimit(1<<40)
			t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) })
			tuneGC(func(k string) string { return tt.env[k] })
			if got := debug.SetGCPercent(77); got != tt.wantPercent {
				t.Errorf("GC percent %d, want %d", got, tt.wantPercent)
			}
			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tt.wantLimit)
			}
		})
	}
}

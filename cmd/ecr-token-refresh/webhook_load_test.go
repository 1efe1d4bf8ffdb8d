package main

import (
	"context"
	"crypto/tls"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/loadgen"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testcerts"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// loadPod reads a pod of the webhook's golden tests as JSON.
func loadPod(tb testing.TB, name string, wantPatch bool) loadgen.Pod {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "webhook", "testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return loadgen.Pod{Object: raw, WantPatch: wantPatch}
}

// clouddriverPod is the Clouddriver example pod, which gets the sidecar.
func clouddriverPod(tb testing.TB) loadgen.Pod {
	return loadPod(tb, "clouddriver.in.yaml", true)
}

// mixedPods are the Clouddriver pod, a pod without the inject annotation
// and an injected pod created again; only the first is patched.
func mixedPods(tb testing.TB) []loadgen.Pod {
	return []loadgen.Pod{
		clouddriverPod(tb),
		loadPod(tb, "inject-absent.in.yaml", false),
		loadPod(tb, "status-injected.in.yaml", false),
	}
}

// projectedDir is a directory the way the kubelet projects a Secret into
// a pod: the files live in a timestamped directory, ..data links to it,
// and each name links through ..data. An update writes a new timestamped
// directory, swaps ..data in one rename and removes the old directory, so
// that a reader sees either all old files or all new ones.
type projectedDir struct {
	dir     string
	current string // the timestamped directory ..data links to
}

// newProjectedDir projects files into a new directory.
func newProjectedDir(tb testing.TB, files map[string][]byte) *projectedDir {
	tb.Helper()
	p := &projectedDir{dir: tb.TempDir()}
	p.update(tb, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(p.dir, name)); err != nil {
			tb.Fatal(err)
		}
	}
	return p
}

// update replaces the projected files with files, which have the same
// names, as the kubelet's atomic writer does.
func (p *projectedDir) update(tb testing.TB, files map[string][]byte) {
	tb.Helper()
	ts, err := os.MkdirTemp(p.dir, time.Now().Format("..2006_01_02_15_04_05."))
	if err != nil {
		tb.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	tmp := filepath.Join(p.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(p.dir, "..data")); err != nil {
		tb.Fatal(err)
	}
	if p.current != "" {
		if err := os.RemoveAll(p.current); err != nil {
			tb.Fatal(err)
		}
	}
	p.current = ts
}

// webhookServer is the binary serving the webhook in files mode
// (--cert-dir), a subprocess whose log goes to a file.
type webhookServer struct {
	cmd  *exec.Cmd
	url  string // of the webhook, as a MutatingWebhookConfiguration's clientConfig.url would name it
	log  string // path of the log file
	done chan error
}

// startWebhook starts the binary in webhook mode with certificates from
// certDir and waits until it is ready; it is killed when the test ends.
func startWebhook(tb testing.TB, certDir string) *webhookServer {
	tb.Helper()
	port, health := freePort(tb), freePort(tb)
	logFile, err := os.Create(filepath.Join(tb.TempDir(), "webhook.log"))
	if err != nil {
		tb.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(binary, "webhook", "--port", port, "--cert-dir", certDir, "--shutdown-drain", "1s",
		"--health-probe-bind-address", "127.0.0.1:"+health, "--metrics-bind-address", "0")
	// No kubeconfig: with --cert-dir the webhook needs no API access.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "KUBECONFIG=") })
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	w := &webhookServer{cmd: cmd, url: "https://127.0.0.1:" + port + webhook.Path + "?timeout=10s", log: logFile.Name(), done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
		if tb.Failed() {
			tb.Logf("webhook log:\n%s", w.logTail(tb))
		}
	})
	waitReady(tb, "127.0.0.1:"+health)
	return w
}

// logTail is the end of the webhook's log.
func (w *webhookServer) logTail(tb testing.TB) string {
	data, err := os.ReadFile(w.log)
	if err != nil {
		return err.Error()
	}
	const tailBytes = 8 << 10
	if len(data) > tailBytes {
		data = data[len(data)-tailBytes:]
	}
	return string(data)
}

// memoryMiB is the webhook's resident memory in MiB: field is VmRSS for
// the current, VmHWM for the peak.
func (w *webhookServer) memoryMiB(tb testing.TB, field string) float64 {
	tb.Helper()
	return procMemoryMiB(tb, w.cmd.Process.Pid, field)
}

// procMemoryMiB reads a memory field of /proc/PID/status in MiB.
func procMemoryMiB(tb testing.TB, pid int, field string) float64 {
	tb.Helper()
	return procStatusKiB(tb, pid, field+":") / 1024
}

// terminate sends SIGTERM and returns the exit status, failing the test
// if the process has not ended within limit.
func (w *webhookServer) terminate(tb testing.TB, limit time.Duration) error {
	tb.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(limit):
		tb.Fatalf("the webhook still runs %s after SIGTERM", limit)
		return nil
	}
}

// TestWebhookUnderLoad sends 20,000 admissions of mixed pods over 64
// connections to the binary, as the API server would: every one gets a
// correct answer, and the webhook's memory after a warm-up of 4,000 stays
// level to the end.
func TestWebhookUnderLoad(t *testing.T) {
	ca := testcerts.NewCA(t)
	files, _ := ca.Files(t)
	w := startWebhook(t, newProjectedDir(t, files).dir)
	opts := loadgen.Options{URL: w.url, RootCAs: ca.Roots, Pods: mixedPods(t), Conns: 64}
	run := func(n int) loadgen.Result {
		t.Helper()
		opts.Requests = n
		res, err := loadgen.Run(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests != n || res.Errors+res.Wrong > 0 {
			t.Fatalf("%s, want %d correct answers; the first error: %v", res, n, res.FirstError)
		}
		return res
	}
	warm := run(4_000)
	rssWarm := w.memoryMiB(t, "VmRSS")
	rest := run(16_000)
	rssEnd := w.memoryMiB(t, "VmRSS")
	t.Logf("warm-up: %s; RSS %.1f MiB", warm, rssWarm)
	t.Logf("rest: %s; RSS %.1f MiB, peak %.1f MiB", rest, rssEnd, w.memoryMiB(t, "VmHWM"))
	if limit := rssWarm*1.25 + 4; rssEnd > limit {
		t.Errorf("resident memory grew from %.1f MiB after 4,000 admissions to %.1f MiB after 20,000, want at most %.1f MiB", rssWarm, rssEnd, limit)
	}
}

// TestWebhookSIGTERMDuringLoad sends SIGTERM to the binary under load: it
// finishes what it was sent and exits 0. Every request sent before the
// signal gets a correct answer; requests sent after it may find the
// connection closed or refused, but none gets a wrong answer.
func TestWebhookSIGTERMDuringLoad(t *testing.T) {
	ca := testcerts.NewCA(t)
	files, _ := ca.Files(t)
	w := startWebhook(t, newProjectedDir(t, files).dir)

	var (
		mu       sync.Mutex
		samples  []loadgen.Sample
		answered atomic.Int64
	)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan loadgen.Result, 1)
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Options{URL: w.url, RootCAs: ca.Roots, Pods: mixedPods(t), Conns: 64,
			OnResult: func(s loadgen.Sample) {
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
				if s.Err == nil {
					answered.Add(1)
				}
			}})
		if err != nil {
			t.Error(err)
		}
		results <- res
	}()
	testutil.WaitFor(t, 30*time.Second, "1,000 answers", func() bool { return answered.Load() >= 1_000 })

	signalled := time.Now()
	exitErr := w.terminate(t, 30*time.Second)
	cancel()
	res := <-results
	if exitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", exitErr)
	}

	mu.Lock()
	defer mu.Unlock()
	var before, underWay, failedAfter int
	for _, s := range samples {
		sentBefore := !s.Sent.IsZero() && s.Sent.Before(signalled)
		switch {
		case s.Wrong != nil:
			t.Errorf("wrong answer: %v", s.Wrong)
		case sentBefore && s.Err != nil:
			t.Errorf("a request sent %s before SIGTERM got no answer: %v", signalled.Sub(s.Sent), s.Err)
		case s.Err != nil:
			failedAfter++
		}
		if sentBefore {
			before++
			if s.End.After(signalled) {
				underWay++
			}
		}
	}
	t.Logf("%s; %d sent before SIGTERM, %d of them under way at it; %d sent after failed", res, before, underWay, failedAfter)
	if underWay == 0 {
		t.Error("no request was under way at SIGTERM: nothing was shown")
	}
}

// TestWebhookCertificateSwapDuringLoad replaces the serving certificate
// under load as the kubelet updates a projected Secret, while the load
// opens a new connection every 20 requests: no handshake fails, before or
// after the swap, and soon every new connection gets the new certificate.
func TestWebhookCertificateSwapDuringLoad(t *testing.T) {
	ca := testcerts.NewCA(t)
	files, oldSerial := ca.Files(t)
	certDir := newProjectedDir(t, files)
	w := startWebhook(t, certDir.dir)

	var (
		mu                  sync.Mutex
		newSerial           *big.Int
		oldCount, newStreak int
	)
	onHandshake := func(cs tls.ConnectionState) {
		serial := cs.PeerCertificates[0].SerialNumber
		mu.Lock()
		defer mu.Unlock()
		switch {
		case serial.Cmp(oldSerial) == 0:
			oldCount++
			newStreak = 0
		case newSerial != nil && serial.Cmp(newSerial) == 0:
			newStreak++
		default:
			t.Errorf("served a certificate with serial %s, neither the old nor the new one", serial)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan loadgen.Result, 1)
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Options{URL: w.url, RootCAs: ca.Roots, Pods: mixedPods(t), Conns: 8,
			RequestsPerConn: 20, OnHandshake: onHandshake})
		if err != nil {
			t.Error(err)
		}
		results <- res
	}()
	locked := func(f func() bool) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return f() }
	}
	testutil.WaitFor(t, 30*time.Second, "50 handshakes with the first certificate", locked(func() bool { return oldCount >= 50 }))

	files, serial := ca.Files(t)
	mu.Lock()
	newSerial = serial
	mu.Unlock()
	swapped := time.Now()
	certDir.update(t, files)
	testutil.WaitFor(t, 30*time.Second, "50 handshakes in a row with the new certificate", locked(func() bool { return newStreak >= 50 }))
	took := time.Since(swapped)
	cancel()
	res := <-results
	t.Logf("%s; the new certificate served alone %s after the swap", res, took.Round(time.Millisecond))
	if res.Errors+res.Wrong > 0 {
		t.Errorf("%d requests failed and %d got a wrong answer; the first: %v", res.Errors, res.Wrong, res.FirstError)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/loadgen"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testcerts"
)

// Each measurement takes turns: a chunk against the ceiling, one against
// the webhook, and so on (the first of a pair alternating), so that both
// meet the same noise from the rest of the machine. 4×5,000 requests per
// server give a steady rate at 32 connections, 6×500 a p99 over the 30
// slowest at one; make bench (six runs) takes about a minute for this.
var benchMeasures = []struct {
	conns, chunks, requests int
}{
	{32, 4, 5_000},
	{1, 6, 500},
}

// BenchmarkWebhookHTTPS measures the webhook binary over HTTPS on loopback
// against the ceiling measured in the same run: a bare net/http TLS server
// (hack/loadgen ceiling, also a subprocess, with the same certificate and
// TLS settings) that reads the same requests and answers the webhook's own
// answer. The load generator replays the Clouddriver pod's admission as the
// API server sends it and checks every answer. It reports the throughput at
// 32 connections (answers/s, and the webhook's as a percentage of the
// ceiling's), the p99 latency at one connection (µs, and the webhook's as a
// multiple of the ceiling's), the requests without a correct answer, the
// peak resident memory (VmHWM) of both servers, and the CPU time each
// server spent per answer, which other load on the machine disturbs less
// than the rates.
func BenchmarkWebhookHTTPS(b *testing.B) {
	ca := testcerts.NewCA(b)
	files, _ := ca.Files(b)
	certDir := newProjectedDir(b, files)
	pods := []loadgen.Pod{clouddriverPod(b)}

	w := startWebhook(b, certDir.dir)
	answer := webhookAnswer(b, w.url, ca, pods[0].Object)
	ceilingURL, ceilingPID := startCeiling(b, certDir.dir, answer)
	webhook := &benchServer{url: w.url, pid: w.cmd.Process.Pid}
	ceiling := &benchServer{url: ceilingURL, pid: ceilingPID}

	var failed int
	measure := func(s *benchServer, conns, requests int) loadgen.Result {
		b.Helper()
		cpu := cpuTicks(b, s.pid)
		res, err := loadgen.Run(b.Context(), loadgen.Options{URL: s.url, RootCAs: ca.Roots, Pods: pods, Conns: conns, Requests: requests})
		if err != nil {
			b.Fatal(err)
		}
		s.cpu += time.Duration(cpuTicks(b, s.pid)-cpu) * clockTick
		s.answers += res.Answered()
		if res.Errors+res.Wrong > 0 {
			b.Errorf("%s at %d connections: %s; the first error: %v", s.url, conns, res, res.FirstError)
		}
		failed += res.Errors + res.Wrong
		return res
	}
	// Warm-up: the servers' heaps and the CPU caches.
	measure(ceiling, 32, 2_000)
	measure(webhook, 32, 2_000)
	ceiling.cpu, ceiling.answers, webhook.cpu, webhook.answers = 0, 0, 0, 0

	var rpsCeiling, rpsWebhook, p99Ceiling, p99Webhook float64
	for b.Loop() {
		for _, m := range benchMeasures {
			var c, wh []loadgen.Result
			for i := range m.chunks {
				if i%2 == 0 {
					c = append(c, measure(ceiling, m.conns, m.requests))
				}
				wh = append(wh, measure(webhook, m.conns, m.requests))
				if i%2 == 1 {
					c = append(c, measure(ceiling, m.conns, m.requests))
				}
			}
			cr, whr := loadgen.Combine(c...), loadgen.Combine(wh...)
			if m.conns == 1 {
				p99Ceiling += float64(cr.P99.Microseconds())
				p99Webhook += float64(whr.P99.Microseconds())
			} else {
				rpsCeiling += cr.RPS()
				rpsWebhook += whr.RPS()
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rpsCeiling/n, "ceiling-32-rps")
	b.ReportMetric(rpsWebhook/n, "webhook-32-rps")
	b.ReportMetric(100*rpsWebhook/rpsCeiling, "webhook-32-%ceiling")
	b.ReportMetric(p99Ceiling/n, "ceiling-1-p99-µs")
	b.ReportMetric(p99Webhook/n, "webhook-1-p99-µs")
	b.ReportMetric(p99Webhook/p99Ceiling, "webhook-1-p99-xceiling")
	b.ReportMetric(float64(failed), "wrong-answers")
	b.ReportMetric(w.memoryMiB(b, "VmHWM"), "webhook-peak-MiB")
	b.ReportMetric(procMemoryMiB(b, ceilingPID, "VmHWM"), "ceiling-peak-MiB")
	b.ReportMetric(ceiling.cpuPerAnswer(), "ceiling-cpu-µs/answer")
	b.ReportMetric(webhook.cpuPerAnswer(), "webhook-cpu-µs/answer")
}

// benchServer is a server under measurement and its tallies.
type benchServer struct {
	url     string
	pid     int
	cpu     time.Duration // spent while measured
	answers int
}

// cpuPerAnswer is the server's CPU time per answer in µs.
func (s *benchServer) cpuPerAnswer() float64 {
	return float64(s.cpu.Microseconds()) / float64(max(s.answers, 1))
}

// webhookAnswer is the webhook's answer to the admission of pod.
func webhookAnswer(tb testing.TB, url string, ca *testcerts.CA, pod []byte) []byte {
	tb.Helper()
	review, err := loadgen.Review("8d2b1c5e-0f3a-4c1e-9b7a-5e6f7a8b9c0d", pod)
	if err != nil {
		tb.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Roots}}}
	defer client.CloseIdleConnections()
	res, err := client.Post(url, "application/json", bytes.NewReader(review))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		tb.Fatalf("the webhook answered HTTP %d %s (%v)", res.StatusCode, answer, err)
	}
	return answer
}

// loadgenBinary builds hack/loadgen once, next to the binary under test.
var loadgenBinary = sync.OnceValues(func() (string, error) {
	path := filepath.Join(filepath.Dir(binary), "loadgen")
	out, err := exec.Command("go", "build", "-o", path, "../../hack/loadgen").CombinedOutput()
	if err != nil {
		return "", &buildError{err, out}
	}
	return path, nil
})

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "building hack/loadgen: " + e.err.Error() + "\n" + string(e.out)
}

// startCeiling starts the ceiling server (hack/loadgen ceiling) with the
// certificates in certDir, answering answer, and returns its URL and
// process ID; it is stopped when the test ends.
func startCeiling(tb testing.TB, certDir string, answer []byte) (string, int) {
	tb.Helper()
	bin, err := loadgenBinary()
	if err != nil {
		tb.Fatal(err)
	}
	answerFile := filepath.Join(tb.TempDir(), "answer.json")
	if err := os.WriteFile(answerFile, answer, 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "ceiling", "--cert-dir", certDir, "--addr", "127.0.0.1:0", "--answer", answerFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "serving on "); ok {
				addr <- a
			}
		}
		close(addr)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case a, ok := <-addr:
		if !ok {
			tb.Fatal("the ceiling server exited before serving")
		}
		return "https://" + a + "/mutate-v1-pod?timeout=10s", cmd.Process.Pid
	case <-ctx.Done():
		tb.Fatal("the ceiling server did not start within 10s")
		return "", 0
	}
}

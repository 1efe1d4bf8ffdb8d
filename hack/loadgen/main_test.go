package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testcerts"
)

const pod = `apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: default
spec:
  containers:
  - name: app
    image: app
`

// writeCerts writes ca.crt, tls.crt and tls.key for 127.0.0.1 into dir.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	files, _ := testcerts.NewCA(t).Files(t)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCeilingAndRun serves the ceiling and runs load against it: answers
// without a patch are right for a pod that wants none and wrong for one
// that wants a patch.
func TestCeilingAndRun(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	podFile := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(podFile, []byte(pod), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	logR, logW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"ceiling", "--cert-dir", dir, "--addr", "127.0.0.1:0"}, io.Discard, logW)
		logW.Close()
	}()
	line, err := bufio.NewReader(logR).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "serving on ")
	if err != nil || !ok {
		t.Fatalf("ceiling said %q (%v), want serving on ADDR", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, logR) }()

	url := "https://" + addr + "/mutate-v1-pod"
	var out bytes.Buffer
	if err := run(t.Context(), []string{"run", "--url", url, "--ca", filepath.Join(dir, "ca.crt"), "--pod-unchanged", podFile,
		"--conns", "2", "--requests", "20"}, &out, io.Discard); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "20 requests in") || !strings.Contains(out.String(), "0 errors, 0 wrong, 2 handshakes") {
		t.Errorf("output %q, want 20 requests without error over 2 connections", out.String())
	}

	out.Reset()
	err = run(t.Context(), []string{"run", "--url", url, "--ca", filepath.Join(dir, "ca.crt"), "--pod", podFile, "--requests", "5"}, &out, io.Discard)
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "5 wrong answers") || !strings.Contains(err.Error(), "no patch") {
		t.Errorf("error %v, want 5 wrong answers without a patch", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("ceiling: %v", err)
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	notReview := filepath.Join(dir, "answer.json")
	if err := os.WriteFile(notReview, []byte(`{"kind":"Status"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		usage bool // an errUsage
		want  string
	}{
		{"no command", nil, true, "usage: loadgen run|ceiling"},
		{"unknown command", []string{"serve"}, true, `unknown command "serve"`},
		{"run without URL", []string{"run", "--pod", "p.yaml", "--requests", "1"}, true, "--url is required"},
		{"run without pods", []string{"run", "--url", "https://127.0.0.1:1/", "--requests", "1"}, true, "at least one --pod"},
		{"run without end", []string{"run", "--url", "https://127.0.0.1:1/", "--pod", "p.yaml"}, true, "give --requests or --duration"},
		{"run without connections", []string{"run", "--url", "https://127.0.0.1:1/", "--pod", "p.yaml", "--requests", "1", "--conns", "0"}, true, "--conns must be at least 1"},
		{"run over http", []string{"run", "--url", "http://127.0.0.1:1/", "--pod-unchanged", filepath.Join(dir, "answer.json"), "--requests", "1"}, true, "not an https URL"},
		{"run with a missing pod", []string{"run", "--url", "https://127.0.0.1:1/", "--pod", filepath.Join(dir, "nope.yaml"), "--requests", "1"}, false, "nope.yaml"},
		{"run with a CA that is not PEM", []string{"run", "--url", "https://127.0.0.1:1/", "--ca", filepath.Join(dir, "answer.json"), "--pod", "p.yaml", "--requests", "1"}, false, "holds no PEM certificate"},
		{"run with an argument", []string{"run", "extra"}, true, `unexpected argument "extra"`},
		{"ceiling without certificates", []string{"ceiling"}, true, "--cert-dir is required"},
		{"ceiling with a missing certificate", []string{"ceiling", "--cert-dir", t.TempDir()}, false, "--cert-dir"},
		{"ceiling with a wrong answer", []string{"ceiling", "--cert-dir", dir, "--answer", notReview}, false, "no response.uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t.Context(), tt.args, io.Discard, io.Discard)
			if err == nil || errors.Is(err, errUsage) != tt.usage || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q (usage error: %v)", err, tt.want, tt.usage)
			}
		})
	}
}

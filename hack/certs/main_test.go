package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"--dir", dir, "--service", "svc", "--namespace", "ns", "--host", "localhost", "--host", "127.0.0.1", "--lifetime", "48h"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	caPEM := read("ca.crt")
	if got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(stdout.String())); err != nil || !bytes.Equal(got, caPEM) {
		t.Errorf("stdout %q is not ca.crt in base64 (%v)", stdout.String(), err)
	}
	pair, err := tls.X509KeyPair(read("tls.crt"), read("tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, host := range []string{"svc", "svc.ns.svc", "svc.ns.svc.cluster.local", "localhost", "127.0.0.1"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if d := time.Until(pair.Leaf.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
		t.Errorf("valid for %s more, want 48h", d)
	}
	info, err := os.Stat(filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode %v, want 0600", info.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 3 {
		t.Errorf("%d files in the directory (%v), want ca.crt, tls.crt and tls.key", len(entries), err)
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--dir", t.TempDir(), "extra"},
		{"--dir", t.TempDir(), "--lifetime", "0s"},
		{"--dir", t.TempDir(), "--host", ""},
		{"--dir", t.TempDir(), "--service", ""},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(args, &stdout, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
		if stdout.Len() > 0 {
			t.Errorf("run(%q) printed %q", args, stdout.String())
		}
	}
}

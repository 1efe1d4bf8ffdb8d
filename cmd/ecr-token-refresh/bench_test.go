package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
)

// BenchmarkSidecarRegistries measures the running sidecar binary: resident
// memory once every file is fresh, and GetAuthorizationToken calls per
// refresh. "1-registry" is the baseline for "100-registries-10-accounts",
// measured in the same run: 100 registries spread over 10 accounts in one
// region, each account reached through its own role.
func BenchmarkSidecarRegistries(b *testing.B) {
	for _, bc := range []struct {
		name       string
		registries int
		accounts   int
	}{
		{"1-registry", 1, 1},
		{"100-registries-10-accounts", 100, 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var rss, calls float64
			for b.Loop() {
				r, c := runSidecarOnce(b, bc.registries, bc.accounts)
				rss += r
				calls += c
			}
			b.ReportMetric(rss/float64(b.N), "rss-KiB")
			b.ReportMetric(calls/float64(b.N), "calls/refresh")
		})
	}
}

// runSidecarOnce starts the sidecar with n registries over accounts roles,
// waits until it is ready, and returns its resident memory in KiB and the
// GetAuthorizationToken calls it made.
func runSidecarOnce(b *testing.B, n, accounts int) (rssKiB, calls float64) {
	b.Helper()
	srv := fakeecr.New()
	defer srv.Close()
	dir := b.TempDir()
	var cfg strings.Builder
	cfg.WriteString("registries:\n")
	for i := range n {
		account := fmt.Sprintf("%012d", 200000000000+i%accounts)
		fmt.Fprintf(&cfg, "- {registryId: %q, region: us-west-2, passwordFile: %s/r%03d.pass, roleArn: \"arn:aws:iam::%s:role/ecr-reader\"}\n",
			account, dir, i, account)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := sidecarCmd(srv, "sidecar", "--config", path, "--health-addr", "127.0.0.1:0")
	p := startLogged(b, cmd)
	waitReady(b, p.healthAddr(b))
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = p.wait(5e9)
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				b.Fatal(err)
			}
			rssKiB = v
		}
	}
	return rssKiB, float64(srv.CallCount(fakeecr.OpGetAuthorizationToken))
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// idleWindow is how long the sidecar is watched for CPU use after every
// file is written. Between refreshes it waits on timers, so it should use
// none at all.
const idleWindow = 2 * time.Second

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on Linux).
const clockTick = 10 * time.Millisecond

// sidecarCase is a config the sidecar benchmark runs.
type sidecarCase struct {
	name       string
	registries int
	accounts   int
	regions    []string
	roles      bool // one role per account: one caller per account
}

// BenchmarkSidecarRegistries measures the running sidecar binary, started
// from nothing against the loopback ECR endpoint:
//
//	calls/refresh    GetAuthorizationToken calls for one refresh of every file
//	files-ms         from process start until every file is written
//	rss-KiB          resident memory between refreshes: at the end of the
//	                 idle window after every file is fresh
//	peak-rss-KiB     the most resident memory until then (VmHWM)
//	startup-cpu-ms   CPU (user+system) used until then
//	idle-cpu-ticks   CPU ticks (10 ms) used in the 2 s after that: between
//	                 refreshes the sidecar waits on timers and uses none
//
// "1-registry" is the baseline, measured in the same run, for
// "100-registries-10-accounts-roles" (one role per account: 10 callers) and
// "1000-registries-10-accounts-3-regions" (no roles: the default
// credentials are one caller per region, so 3 calls).
func BenchmarkSidecarRegistries(b *testing.B) {
	for _, bc := range []sidecarCase{
		{"1-registry", 1, 1, []string{"us-west-2"}, false},
		{"100-registries-10-accounts-roles", 100, 10, []string{"us-west-2"}, true},
		{"1000-registries-10-accounts-3-regions", 1000, 10, []string{"us-west-2", "eu-west-1", "ap-southeast-2"}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var sum sidecarFigures
			for b.Loop() {
				sum.add(runSidecarOnce(b, bc))
			}
			n := float64(b.N)
			b.ReportMetric(sum.calls/n, "calls/refresh")
			b.ReportMetric(sum.filesMS/n, "files-ms")
			b.ReportMetric(sum.rssKiB/n, "rss-KiB")
			b.ReportMetric(sum.peakRSSKiB/n, "peak-rss-KiB")
			b.ReportMetric(sum.startupCPUMS/n, "startup-cpu-ms")
			b.ReportMetric(sum.idleTicks/n, "idle-cpu-ticks")
			b.ReportMetric(0, "ns/op") // the custom figures are the result
		})
	}
}

// BenchmarkBinarySize reports the size of the binary built as `make build`
// builds it (static, stripped, trimmed paths).
func BenchmarkBinarySize(b *testing.B) {
	var size int64
	for b.Loop() {
		fi, err := os.Stat(binary)
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB")
	b.ReportMetric(0, "ns/op")
}

// sidecarFigures are the measurements of one sidecar run.
type sidecarFigures struct {
	calls, filesMS, rssKiB, peakRSSKiB, startupCPUMS, idleTicks float64
}

func (s *sidecarFigures) add(o sidecarFigures) {
	s.calls += o.calls
	s.filesMS += o.filesMS
	s.rssKiB += o.rssKiB
	s.peakRSSKiB += o.peakRSSKiB
	s.startupCPUMS += o.startupCPUMS
	s.idleTicks += o.idleTicks
}

// runSidecarOnce writes bc's config, starts the sidecar, waits until every
// caller's refresh is logged, checks every file, and measures.
func runSidecarOnce(b *testing.B, bc sidecarCase) sidecarFigures {
	b.Helper()
	srv := fakeecr.New()
	defer srv.Close()
	dir := b.TempDir()
	// The config lives apart from the passwords, as in a pod: the config
	// watcher then never sees the password writes.
	config := filepath.Join(dir, "config", "config.yaml")
	type file struct{ path, account, region string }
	files := make([]file, bc.registries)
	var cfg strings.Builder
	cfg.WriteString("registries:\n")
	for i := range files {
		account := fmt.Sprintf("%012d", 200000000000+i%bc.accounts)
		region := bc.regions[i/bc.accounts%len(bc.regions)]
		files[i] = file{filepath.Join(dir, "passwords", fmt.Sprintf("r%04d.pass", i)), fakeecr.DefaultAccount, region}
		fmt.Fprintf(&cfg, "- {registryId: %q, region: %s, passwordFile: %s", account, region, files[i].path)
		if bc.roles {
			files[i].account = account
			fmt.Fprintf(&cfg, ", roleArn: \"arn:aws:iam::%s:role/ecr-reader\"", account)
		}
		cfg.WriteString("}\n")
	}
	if err := os.MkdirAll(filepath.Dir(config), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(config, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	callers := len(bc.regions)
	if bc.roles {
		callers = bc.accounts * len(bc.regions)
	}

	cmd := sidecarCmd(srv, "sidecar", "--config", config, "--health-addr", "127.0.0.1:0")
	start := time.Now()
	p := startLogged(b, cmd)
	addr := p.healthAddr(b)
	testutil.WaitFor(b, 30*time.Second, "a refresh of every caller", func() bool {
		return len(p.records(b, "refreshed")) >= callers
	})
	var written time.Time
	for _, rec := range p.records(b, "refreshed") {
		if rec.Time.After(written) {
			written = rec.Time
		}
	}
	pid := cmd.Process.Pid
	startupTicks := cpuTicks(b, pid)
	idleTimer := time.NewTimer(idleWindow) // a measurement window, not synchronisation
	<-idleTimer.C
	idleTicks := cpuTicks(b, pid) - startupTicks
	rss, peak := procStatusKiB(b, pid, "VmRSS:"), procStatusKiB(b, pid, "VmHWM:")

	waitReady(b, addr)
	for _, f := range files {
		got, err := os.ReadFile(f.path)
		if err != nil || string(got) != srv.LastPassword(f.account, f.region) {
			b.Fatalf("%s does not hold the password of %s/%s (%v)", f.path, f.account, f.region, err)
		}
	}
	calls := srv.CallCount(fakeecr.OpGetAuthorizationToken)
	if calls != callers {
		b.Fatalf("%d GetAuthorizationToken calls, want %d (one per caller)", calls, callers)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(5 * time.Second); err != nil {
		b.Fatalf("sidecar: %v\n%s", err, p.log.String())
	}
	return sidecarFigures{
		calls:        float64(calls),
		filesMS:      float64(written.Sub(start)) / float64(time.Millisecond),
		rssKiB:       rss,
		peakRSSKiB:   peak,
		startupCPUMS: float64(time.Duration(startupTicks)*clockTick) / float64(time.Millisecond),
		idleTicks:    float64(idleTicks),
	}
}

// procStatusKiB returns a memory figure of process pid in KiB: field is
// VmRSS: (resident now) or VmHWM: (the peak).
func procStatusKiB(t testing.TB, pid int, field string) float64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// cpuTicks returns the user and system CPU time process pid has used, in
// clock ticks (fields 14 and 15 of /proc/PID/stat).
func cpuTicks(t testing.TB, pid int) int64 {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may contain blanks; it ends at the last ')'.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	// fields[0] is field 3 (state), so utime and stime are fields[11] and [12].
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		ticks += v
	}
	return ticks
}

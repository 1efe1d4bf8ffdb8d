package refresher

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// TestElevenHourOutage: ECR answers every call with a 500 for 11 hours.
// The password file is never touched while it lasts; /readyz answers 200
// until the token in the file expires and 503 from that instant on; the
// retries back off to their cap and never stop; and the first call that
// succeeds after the outage writes the fresh password at once.
func TestElevenHourOutage(t *testing.T) {
	const outage = 11 * time.Hour
	tests := []struct {
		name     string
		interval time.Duration
		start    time.Duration // of the outage, after the first refresh
	}{
		// Refreshed every 30m, the token in the file has 11.5h or more left
		// when the outage starts: it outlives the outage.
		{"30m interval, the token outlives the outage", 30 * time.Minute, 0},
		// Refreshed every 6h, the token has 7h left when the outage starts
		// at 5h: it expires 7h into the outage.
		{"6h interval, the outage outlives the token", 6 * time.Hour, 5 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.noSDKBackoff()
			reg := e.registry("123456789012", "us-west-2", "a")
			s := startScheduled(t, e, &Config{Interval: tt.interval, FileMode: DefaultFileMode, Registries: []Registry{reg}}, nil)
			s.await(t, 1)
			t0 := s.clock.Now()
			expires := t0.Add(fakeecr.DefaultTokenLifetime)
			good := statFile(t, reg.PasswordFile)
			readyz := s.readyz(t)
			if code := readyz(); code != http.StatusOK {
				t.Fatalf("/readyz = %d after the first refresh, want 200", code)
			}

			start, end := t0.Add(tt.start), t0.Add(tt.start+outage)
			s.setTimeQuiet(t, start)
			e.srv.SetFault("", fakeecr.FaultServerError, 0)
			var waits []time.Duration
			for s.nextDeadline().Before(end) {
				if now := s.clock.Now(); now.Before(expires) && s.nextDeadline().After(expires) {
					// No attempt falls on the expiry: look just before and at it.
					s.setTimeQuiet(t, expires.Add(-time.Nanosecond))
					if code := readyz(); code != http.StatusOK {
						t.Fatalf("/readyz = %d a nanosecond before the token expires, want 200", code)
					}
					s.setTimeQuiet(t, expires)
					if code := readyz(); code != http.StatusServiceUnavailable {
						t.Fatalf("/readyz = %d when the token expires, want 503", code)
					}
				}
				calls := e.srv.CallCount(fakeecr.OpGetAuthorizationToken)
				wait := s.advance(t)[0]
				now := s.clock.Now()
				waits = append(waits, wait)

				if got := e.srv.CallCount(fakeecr.OpGetAuthorizationToken) - calls; got != sdkMaxAttempts {
					t.Fatalf("%s into the outage: %d calls, want one refresh of %d SDK attempts", now.Sub(start), got, sdkMaxAttempts)
				}
				good.assertUntouched(t)
				assertOnlyFiles(t, e.dir, "a.pass")
				wantCode := http.StatusOK
				if !now.Before(expires) {
					wantCode = http.StatusServiceUnavailable
				}
				if code := readyz(); code != wantCode {
					t.Fatalf("%s into the outage, token expiring at +%s: /readyz = %d, want %d", now.Sub(start), expires.Sub(start), code, wantCode)
				}
				// Zero jitter takes the low end of each step, half of it: the
				// waits double from 1s and hold at half the cap, never later
				// than half the token's remaining life.
				want := min(retryMax, retryBase<<min(len(waits)-1, 20)) / 2
				if left := expires.Sub(now); left > 0 {
					want = min(want, left/2)
				}
				if want = max(want, retryMin); wait != want {
					t.Fatalf("retry %d, %s into the outage: in %s, want %s; waits so far: %v", len(waits), now.Sub(start), wait, want, waits)
				}
			}
			if n := int(outage / retryMax); len(waits) < n {
				t.Fatalf("%d retries in %s, want at least %d (one per %s at most)", len(waits), outage, n, retryMax)
			}

			s.setTimeQuiet(t, end)
			e.srv.SetFault("", fakeecr.FaultNone, 0)
			next := s.advance(t)[0]
			if late := s.clock.Now().Sub(end); late > retryMax {
				t.Fatalf("first attempt %s after the outage ended, want within %s", late, retryMax)
			}
			fresh := e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2")
			if got := readFile(t, reg.PasswordFile); got != fresh || got == good.content {
				t.Fatal("the first success after the outage did not write the fresh password")
			}
			if code := readyz(); code != http.StatusOK {
				t.Fatalf("/readyz = %d after the recovery, want 200", code)
			}
			// expiresAt has millisecond precision: half a 12h token's life
			// may come out a fraction of a millisecond short of 6h.
			if short := tt.interval - next; short < 0 || short >= time.Millisecond {
				t.Fatalf("after the recovery the next refresh is in %s, want the interval %s", next, tt.interval)
			}
			assertOnlyFiles(t, e.dir, "a.pass")
		})
	}
}

// TestThrottledAccountDoesNotDelayOthers: of 10 accounts, each reached
// through its own role, one is throttled for three hours. The nine others
// refresh exactly every interval, and the throttled one keeps retrying.
func TestThrottledAccountDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t)
	e.noSDKBackoff()
	cfg := &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode}
	accounts := make([]string, 10)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("%012d", 300000000000+i)
		reg := e.registry(accounts[i], "us-west-2", accounts[i])
		reg.RoleARN = "arn:aws:iam::" + accounts[i] + ":role/ecr-reader"
		cfg.Registries = append(cfg.Registries, reg)
	}
	throttled := accounts[3]
	e.srv.SetFault(throttled, fakeecr.FaultThrottle, 0)
	s := startScheduled(t, e, cfg, nil)
	s.await(t, len(accounts))
	t0 := s.clock.Now()

	for s.clock.Now().Before(t0.Add(3 * time.Hour)) {
		waits := s.advance(t)
		now := s.clock.Now()
		onTime := now.Sub(t0)%cfg.Interval == 0
		intervals := 0
		for _, w := range waits {
			if w == cfg.Interval {
				intervals++
			}
		}
		if onTime && intervals != len(accounts)-1 || !onTime && intervals != 0 {
			t.Fatalf("at +%s the groups set timers %v: want the 9 healthy ones on the interval exactly", now.Sub(t0), waits)
		}
		calls := map[string]int{}
		for _, c := range e.srv.Calls() {
			if c.Operation == fakeecr.OpGetAuthorizationToken {
				calls[c.Account]++
			}
		}
		wantCalls := 1 + int(now.Sub(t0)/cfg.Interval)
		for i, account := range accounts {
			if account == throttled {
				continue
			}
			if calls[account] != wantCalls {
				t.Fatalf("at +%s account %s made %d calls, want %d (one per interval)", now.Sub(t0), account, calls[account], wantCalls)
			}
			if got := readFile(t, cfg.Registries[i].PasswordFile); got != e.srv.LastPassword(account, "us-west-2") {
				t.Fatalf("at +%s account %s's file is stale", now.Sub(t0), account)
			}
		}
		if calls[throttled] < wantCalls {
			t.Fatalf("at +%s the throttled account made %d calls: it stopped retrying", now.Sub(t0), calls[throttled])
		}
	}
	if _, err := os.Stat(cfg.Registries[3].PasswordFile); !os.IsNotExist(err) {
		t.Fatalf("the throttled account's file exists: %v", err)
	}
	if nr := s.r.NotReady(); len(nr) != 1 {
		t.Fatalf("NotReady = %v, want only the throttled account", nr)
	}
}

// TestNoGoroutineOrFDGrowth runs 1,000 refresh cycles, a few of them
// failing, and checks that the goroutines and open file descriptors stay
// where the first cycle left them, and return to where they were before
// once the refresher and the endpoint stop. One caller: with several, the
// HTTP client may open a connection per concurrent call at any cycle, a
// pool that grows to the number of callers but not beyond.
func TestNoGoroutineOrFDGrowth(t *testing.T) {
	goroutines0, fds0 := runtime.NumGoroutine(), openFDs(t)
	e := newEnv(t)
	e.noSDKBackoff()
	// No kept-alive connections: how many the SDK keeps idle depends on
	// how the two callers' calls happened to overlap, not on a leak.
	e.srv.CloseEachConnection()
	a := e.registry("123456789012", "us-west-2", "a")
	b := e.registry("210987654321", "us-west-2", "b")
	s := startScheduled(t, e, &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{a, b}}, nil)
	s.await(t, 1)
	goroutines1, fds1 := runtime.NumGoroutine(), openFDs(t)

	// Without collections, an *os.File left open is not closed behind the
	// test's back by its finalizer: a leak shows.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for cycle := range 1000 {
		switch cycle % 100 {
		case 10: // one failed attempt, retried by the SDK
			e.srv.SetFault("", fakeecr.FaultServerError, 1)
		case 50: // a whole refresh fails, retried by the schedule
			e.srv.SetFault("", fakeecr.FaultThrottle, sdkMaxAttempts)
		}
		s.advance(t)
	}
	failed := 0
	for _, c := range e.srv.Calls() {
		if c.Fault != fakeecr.FaultNone {
			failed++
		}
	}
	if want := 10 * (1 + sdkMaxAttempts); failed != want {
		t.Fatalf("%d calls failed, want %d", failed, want)
	}
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("goroutines and fds back to %d and %d, as after the first cycle", goroutines1, fds1), func() bool {
		return runtime.NumGoroutine() <= goroutines1 && openFDs(t) <= fds1
	})
	s.stop()
	e.srv.Close()
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("goroutines and fds back to %d and %d, as before the start", goroutines0, fds0), func() bool {
		return runtime.NumGoroutine() <= goroutines0 && openFDs(t) <= fds0
	})
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// readyz returns a function that answers GET /readyz of s's handler with
// its status code.
func (s *scheduled) readyz(t *testing.T) func() int {
	t.Helper()
	srv := httptest.NewServer(s.r.Handler(s.metrics))
	t.Cleanup(srv.Close)
	return func() int {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
}

// fileState is a file's content and identity at one moment.
type fileState struct {
	path    string
	content string
	info    os.FileInfo
}

func statFile(t *testing.T, path string) fileState {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{path: path, content: readFile(t, path), info: info}
}

// assertUntouched fails unless the file is the same inode, unmodified,
// with the same content.
func (f fileState) assertUntouched(t *testing.T) {
	t.Helper()
	now := statFile(t, f.path)
	if !os.SameFile(f.info, now.info) || !f.info.ModTime().Equal(now.info.ModTime()) || f.content != now.content {
		t.Fatalf("%s was touched", f.path)
	}
}

// TestUnwritableDirectory: the directory of two of a caller's three
// password files fills up, or turns read-only, between two refreshes. Each
// of the two registries reports the error; their files keep the old
// password, ready to be read; the third file is refreshed; the refresher
// keeps retrying, and writes both files as soon as it can again.
//
// The directory is a real file system in the failing state: a tmpfs of
// 1 MiB filled to the last byte (writes fail with ENOSPC), or remounted
// read-only (EROFS). Mounting needs CAP_SYS_ADMIN.
func TestUnwritableDirectory(t *testing.T) {
	tests := []struct {
		name  string
		errno syscall.Errno
		// breakDir makes dir unwritable; the function it returns undoes it.
		breakDir func(t *testing.T, dir string) (repair func())
	}{
		{"disk full", syscall.ENOSPC, fill},
		{"read-only", syscall.EROFS, remountReadOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			dir := mountTmpfs(t, "1m")
			a := e.registry("123456789012", "us-west-2", "a")
			a.PasswordFile = filepath.Join(dir, "a.pass")
			b := e.registry("210987654321", "us-west-2", "b")
			b.PasswordFile = filepath.Join(dir, "b.pass")
			c := e.registry("123123123123", "us-west-2", "c") // on another file system
			s := startScheduled(t, e, &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{a, b, c}}, nil)
			s.await(t, 1)
			readyz := s.readyz(t)
			oldA, oldB := statFile(t, a.PasswordFile), statFile(t, b.PasswordFile)

			repair := tt.breakDir(t, dir)
			var waits []time.Duration
			for range 3 {
				waits = append(waits, s.advance(t)[0])
				oldA.assertUntouched(t)
				oldB.assertUntouched(t)
				if got := readFile(t, c.PasswordFile); got != e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2") {
					t.Fatal("the file on the healthy file system was not refreshed")
				}
				if code := readyz(); code != http.StatusOK {
					t.Fatalf("/readyz = %d while the old tokens are valid, want 200", code)
				}
			}
			if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(waits, want) {
				t.Fatalf("retries in %v, want the backoff %v", waits, want)
			}
			failures := refreshCounts(t, s.metrics, "failure")
			if failures[a.PasswordFile] != 3 || failures[b.PasswordFile] != 3 || failures[c.PasswordFile] != 0 {
				t.Fatalf("failed refreshes by file %v: want 3 for each file that cannot be written, none for the other", failures)
			}
			var failed int
			for _, line := range strings.Split(e.log.String(), "\n") {
				if !strings.Contains(line, `"msg":"refresh failed"`) {
					continue
				}
				failed++
				for _, want := range []string{`"code":"WriteFailed"`, a.String(), a.PasswordFile + ": ", b.String(), b.PasswordFile + ": ", tt.errno.Error()} {
					if !strings.Contains(line, want) {
						t.Fatalf("log line does not name %q: %s", want, line)
					}
				}
				if strings.Contains(line, c.PasswordFile) {
					t.Fatalf("log line names the file that was written: %s", line)
				}
			}
			if failed != 3 {
				t.Fatalf("%d refresh failed log lines, want 3:\n%s", failed, e.log.String())
			}

			repair()
			if wait := s.advance(t)[0]; wait != 30*time.Minute {
				t.Fatalf("after the repair the next refresh is in %s, want the interval", wait)
			}
			fresh := e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2")
			for _, f := range []string{a.PasswordFile, b.PasswordFile} {
				if got := readFile(t, f); got != fresh {
					t.Fatalf("%s not rewritten once writing works again", f)
				}
			}
			assertOnlyFiles(t, dir, "a.pass", "b.pass")
		})
	}
}

// mountTmpfs mounts a tmpfs of size at a new directory and unmounts it when
// the test ends. Without the privilege to mount, the test is skipped, or
// fails in CI (CI set), which runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0755"); err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (%v): the unwritable-directory tests need root (CAP_SYS_ADMIN)", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fill fills the file system of dir with a file until a write fails with
// ENOSPC; repairing removes the file.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, ".filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err = f.Write(block); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// remountReadOnly remounts the file system at dir read-only; repairing
// remounts it read-write.
func remountReadOnly(t *testing.T, dir string) func() {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting %s read-only: %v", dir, err)
	}
	return func() {
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT, ""); err != nil {
			t.Fatalf("remounting %s read-write: %v", dir, err)
		}
	}
}

// refreshCounts returns the refreshes_total counters of result by password
// file.
func refreshCounts(t *testing.T, g prometheus.Gatherer, result string) map[string]float64 {
	t.Helper()
	counts := map[string]float64{}
	for _, s := range gatherSeries(t, g, "ecr_token_refresh_refreshes_total") {
		if s.labels["result"] == result {
			counts[s.labels["password_file"]] = s.value
		}
	}
	return counts
}

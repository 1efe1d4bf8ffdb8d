package refresher

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// env is a test's fake ECR endpoint, the real SDK client pointed at it,
// and a log that must never contain a password.
type env struct {
	srv *fakeecr.Server
	ecr *ECR
	log *testutil.Buffer
	dir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := fakeecr.New()
	t.Cleanup(srv.Close)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ecr, err := NewECR(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, ecr: ecr, log: &testutil.Buffer{}, dir: t.TempDir()}
	t.Cleanup(func() { e.assertNoPasswordLogged(t) })
	return e
}

// refresher returns a Refresher logging into e.log.
func (e *env) refresher(opts Options) *Refresher {
	opts.Logger = slog.New(slog.NewJSONHandler(e.log, nil))
	return New(e.ecr, opts)
}

// registry returns a registry of account in region writing name.pass.
func (e *env) registry(account, region, name string) Registry {
	return Registry{RegistryID: account, Region: region, Host: DefaultHost(account, region),
		PasswordFile: filepath.Join(e.dir, name+".pass")}
}

func (e *env) assertNoPasswordLogged(t testing.TB) {
	t.Helper()
	for _, c := range e.srv.Calls() {
		if pw := e.srv.LastPassword(c.Account, c.Region); pw != "" && strings.Contains(e.log.String(), pw[:32]) {
			t.Errorf("the log contains a password of %s/%s", c.Account, c.Region)
		}
	}
}

// readFile returns the content of path, failing the test if it is missing.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunOnceWritesEveryFile(t *testing.T) {
	e := newEnv(t)
	a := e.registry("123456789012", "us-west-2", "a")
	a.UsernameFile = filepath.Join(e.dir, "a.user")
	b := e.registry("210987654321", "us-west-2", "b")
	c := e.registry("123456789012", "eu-west-1", "c")
	cfg := &Config{Interval: 30 * time.Minute, FileMode: 0o444, DockerConfigFile: filepath.Join(e.dir, "docker", "config.json"),
		Registries: []Registry{a, b, c}}

	if err := e.refresher(Options{}).RunOnce(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}

	usWest := e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2")
	euWest := e.srv.LastPassword(fakeecr.DefaultAccount, "eu-west-1")
	if usWest == "" || euWest == "" || usWest == euWest {
		t.Fatalf("unexpected passwords issued: %q %q", usWest, euWest)
	}
	for path, want := range map[string]string{a.PasswordFile: usWest, b.PasswordFile: usWest, c.PasswordFile: euWest, a.UsernameFile: "AWS"} {
		if got := readFile(t, path); got != want {
			t.Errorf("%s holds %.20q…, want exactly %.20q…", path, got, want)
		}
	}
	if got := e.srv.CallCount(fakeecr.OpGetAuthorizationToken); got != 2 {
		t.Errorf("GetAuthorizationToken calls = %d, want 2 (one per region)", got)
	}
	var docker struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal([]byte(readFile(t, cfg.DockerConfigFile)), &docker); err != nil {
		t.Fatal(err)
	}
	for host, pw := range map[string]string{a.Host: usWest, b.Host: usWest, c.Host: euWest} {
		auth, _ := base64.StdEncoding.DecodeString(docker.Auths[host].Auth)
		if string(auth) != "AWS:"+pw {
			t.Errorf("docker config auths[%s] = %.20q…, want AWS:<password>", host, auth)
		}
	}
	if len(docker.Auths) != 3 {
		t.Errorf("docker config has %d auths, want 3", len(docker.Auths))
	}
	assertOnlyFiles(t, e.dir, "a.pass", "a.user", "b.pass", "c.pass", "docker")
}

// TestOneCallPerCaller is the figure: 100 registries spread over
// 10 accounts in one region, each account reached through its own role,
// cost 10 GetAuthorizationToken calls per refresh, not 100.
func TestOneCallPerCaller(t *testing.T) {
	e := newEnv(t)
	cfg := hundredRegistries(e.dir)
	r := e.refresher(Options{})
	for round := 1; round <= 2; round++ {
		if err := r.RunOnce(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if got := e.srv.CallCount(fakeecr.OpGetAuthorizationToken); got != 10*round {
			t.Errorf("after %d refreshes: GetAuthorizationToken calls = %d, want %d", round, got, 10*round)
		}
		// Assumed-role credentials are cached between refreshes.
		if got := e.srv.CallCount(fakeecr.OpAssumeRole); got != 10 {
			t.Errorf("after %d refreshes: AssumeRole calls = %d, want 10", round, got)
		}
	}
	for _, reg := range cfg.Registries {
		account := reg.RoleARN[len("arn:aws:iam::"):][:12]
		if got, want := readFile(t, reg.PasswordFile), e.srv.LastPassword(account, "us-west-2"); got != want {
			t.Fatalf("%s holds another account's password", reg.PasswordFile)
		}
	}
}

// hundredRegistries is 100 registries in 10 accounts, each reached
// through a role in its account.
func hundredRegistries(dir string) *Config {
	cfg := &Config{Interval: DefaultInterval, FileMode: DefaultFileMode}
	for i := range 100 {
		account := fmt.Sprintf("%012d", 200000000000+i%10)
		cfg.Registries = append(cfg.Registries, Registry{
			RegistryID: account, Region: "us-west-2", Host: DefaultHost(account, "us-west-2"),
			PasswordFile: filepath.Join(dir, fmt.Sprintf("registry-%03d.pass", i)),
			RoleARN:      "arn:aws:iam::" + account + ":role/ecr-reader",
		})
	}
	return cfg
}

func TestRunOnceFailures(t *testing.T) {
	tests := []struct {
		fault fakeecr.Fault
		code  string
	}{
		{fakeecr.FaultAccessDenied, "AccessDeniedException"},
		{fakeecr.FaultThrottle, "ThrottlingException"},
		{fakeecr.FaultServerError, "ServerException"},
		{fakeecr.FaultHang, "Timeout"},
		{fakeecr.FaultGarbageJSON, "MalformedResponse"},
		{fakeecr.FaultBadBase64, "MalformedResponse"},
		{fakeecr.FaultNoColon, "MalformedResponse"},
		{fakeecr.FaultEmptyList, "MalformedResponse"},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			e := newEnv(t)
			bad := e.registry("123456789012", "us-west-2", "bad")
			bad.RoleARN = "arn:aws:iam::222222222222:role/r"
			good := e.registry("210987654321", "us-west-2", "good")
			if err := os.WriteFile(bad.PasswordFile, []byte("old-good-password"), 0o444); err != nil {
				t.Fatal(err)
			}
			e.srv.SetFault("222222222222", tt.fault, 0)
			cfg := &Config{Interval: DefaultInterval, FileMode: DefaultFileMode, Registries: []Registry{bad, good}}

			timeout := 30 * time.Second // room for the SDK's own retries
			if tt.fault == fakeecr.FaultHang {
				timeout = 500 * time.Millisecond
			}
			err := e.refresher(Options{CallTimeout: timeout}).RunOnce(context.Background(), cfg)

			if err == nil {
				t.Fatal("RunOnce succeeded, want an error")
			}
			for _, want := range []string{"123456789012/us-west-2", bad.PasswordFile, tt.code} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if strings.Contains(err.Error(), good.PasswordFile) {
				t.Errorf("error %q names the registry that worked", err)
			}
			if got := readFile(t, bad.PasswordFile); got != "old-good-password" {
				t.Errorf("failing registry's file now holds %.20q…, want it untouched", got)
			}
			if got := readFile(t, good.PasswordFile); got != e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2") {
				t.Errorf("the other account's file was not written")
			}
			assertOnlyFiles(t, e.dir, "bad.pass", "good.pass")
		})
	}
}

func TestRunOnceAssumeRoleExternalID(t *testing.T) {
	e := newEnv(t)
	role := "arn:aws:iam::333333333333:role/ecr-reader"
	e.srv.RequireExternalID(role, "spinnaker")
	reg := e.registry("333333333333", "us-east-1", "x")
	reg.RoleARN = role
	cfg := &Config{Interval: DefaultInterval, FileMode: DefaultFileMode, Registries: []Registry{reg}}

	err := e.refresher(Options{}).RunOnce(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("without the external ID: error = %v, want AccessDenied", err)
	}
	cfg.Registries[0].ExternalID = "spinnaker"
	if err := e.refresher(Options{}).RunOnce(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, reg.PasswordFile); got != e.srv.LastPassword("333333333333", "us-east-1") {
		t.Error("file does not hold the assumed role's password")
	}
}

func TestNextRefresh(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		lifetime time.Duration
		interval time.Duration
		jitter   float64
		want     time.Duration
	}{
		{"interval first", 12 * time.Hour, 30 * time.Minute, 0, 30 * time.Minute},
		{"half the lifetime first", 40 * time.Minute, 30 * time.Minute, 0, 20 * time.Minute},
		{"jitter shortens by up to 10%", 12 * time.Hour, 30 * time.Minute, 0.5, 28*time.Minute + 30*time.Second},
		{"expired token retries soon", -time.Minute, 30 * time.Minute, 0, retryMin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(nil, Options{Jitter: func() float64 { return tt.jitter }})
			if got := r.nextRefresh(now, now.Add(tt.lifetime), tt.interval); got != tt.want {
				t.Errorf("nextRefresh = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		failures int
		left     time.Duration // on the token in the files; <= 0: none
		jitter   float64
		want     time.Duration
	}{
		{"first failure, no jitter", 1, 0, 0, time.Second},
		{"first failure, most jitter", 1, 0, 1, 2 * time.Second},
		{"doubles", 4, 0, 1, 16 * time.Second},
		{"capped", 12, 0, 1, retryMax},
		{"capped far out", 1000, 0, 0.5, retryMax * 3 / 4},
		{"never past half the token's life", 12, 4 * time.Minute, 1, 2 * time.Minute},
		{"floor near expiry", 12, time.Second, 1, retryMin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(nil, Options{Jitter: func() float64 { return tt.jitter }})
			var expires time.Time
			if tt.left > 0 {
				expires = now.Add(tt.left)
			}
			if got := r.retryAfter(now, tt.failures, expires); got != tt.want {
				t.Errorf("retryAfter = %s, want %s", got, tt.want)
			}
		})
	}
}

// timerClock is a fake clock that reports every timer the schedule sets,
// after setting it: receiving a wait means the loop is parked on it.
type timerClock struct {
	*clocktesting.FakeClock
	waits chan time.Duration
}

func (c *timerClock) NewTimer(d time.Duration) clock.Timer {
	t := c.FakeClock.NewTimer(d)
	c.waits <- d
	return t
}

// scheduled is a Refresher running on a fake clock shared with the fake
// ECR endpoint.
type scheduled struct {
	*env
	clock   *timerClock
	r       *Refresher
	metrics *prometheus.Registry
	// stop ends Run and waits for it; the test's cleanup calls it too.
	stop func()
	// pending are the deadlines of the timers that await and advance have
	// seen set and not yet fired.
	pending []time.Time
}

func startScheduled(t *testing.T, e *env, cfg *Config, updates <-chan *Config, opts ...func(*Options)) *scheduled {
	t.Helper()
	fc := &timerClock{FakeClock: clocktesting.NewFakeClock(time.Now().Truncate(time.Second)), waits: make(chan time.Duration, 16)}
	e.srv.SetClock(fc.Now)
	promReg := prometheus.NewRegistry()
	o := Options{Clock: fc, Jitter: func() float64 { return 0 }, CallTimeout: 5 * time.Second, Metrics: NewMetrics(promReg)}
	for _, opt := range opts {
		opt(&o)
	}
	r := e.refresher(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx, cfg, updates) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		})
	}
	t.Cleanup(stop)
	return &scheduled{env: e, clock: fc, r: r, metrics: promReg, stop: stop}
}

// noSDKBackoff keeps the sidecar's retryer (attempts, retryable errors, no
// quota) but drops the SDK's sleep between attempts, which runs on the wall
// clock that a fake-clock test does not drive. Call it before the first
// refresh.
func (e *env) noSDKBackoff() {
	e.ecr.base.Retryer = func() aws.Retryer { return noBackoff{newRetryer().(aws.RetryerV2)} }
}

// noBackoff is a retryer that retries at once.
type noBackoff struct{ aws.RetryerV2 }

func (noBackoff) RetryDelay(int, error) (time.Duration, error) { return 0, nil }

// await waits until n groups have refreshed and parked on their next timer,
// and records those timers for advance. It returns their durations.
func (s *scheduled) await(t *testing.T, n int) []time.Duration {
	t.Helper()
	waits := make([]time.Duration, n)
	for i := range waits {
		waits[i] = s.next(t)
		s.pending = append(s.pending, s.clock.Now().Add(waits[i]))
	}
	return waits
}

// nextDeadline is the earliest pending timer's deadline.
func (s *scheduled) nextDeadline() time.Time {
	return slices.MinFunc(s.pending, time.Time.Compare)
}

// advance moves the clock to the earliest pending deadline, which fires
// every timer due then, and waits until each of those groups has refreshed
// and set its next timer. It returns the new timers' durations.
func (s *scheduled) advance(t *testing.T) []time.Duration {
	t.Helper()
	now := s.nextDeadline()
	fired := 0
	s.pending = slices.DeleteFunc(s.pending, func(d time.Time) bool {
		if d.After(now) {
			return false
		}
		fired++
		return true
	})
	s.clock.SetTime(now)
	return s.await(t, fired)
}

// setTimeQuiet moves the clock to now, which must come before every pending
// deadline: no timer fires.
func (s *scheduled) setTimeQuiet(t *testing.T, now time.Time) {
	t.Helper()
	if !now.Before(s.nextDeadline()) {
		t.Fatalf("moving the clock to %s would fire the timer due at %s", now, s.nextDeadline())
	}
	s.clock.SetTime(now)
}

// next waits until a group has refreshed and parked on its next timer, and
// returns that timer's duration.
func (s *scheduled) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-s.clock.waits:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh within 10s")
		return 0
	}
}

// idle asserts that no group set a new timer: nothing ran since.
func (s *scheduled) idle(t *testing.T) {
	t.Helper()
	select {
	case d := <-s.clock.waits:
		t.Fatalf("a refresh ran early and set a %s timer", d)
	default:
	}
}

func TestScheduleRefreshesAtIntervalAndHalfLife(t *testing.T) {
	e := newEnv(t)
	reg := e.registry("123456789012", "us-west-2", "a")
	s := startScheduled(t, e, &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{reg}}, nil)

	if d := s.next(t); d != 30*time.Minute { // fetched at start
		t.Fatalf("first wait %s, want the interval", d)
	}
	first := readFile(t, reg.PasswordFile)
	s.clock.Step(30*time.Minute - time.Second)
	s.idle(t)
	if n := e.srv.CallCount(fakeecr.OpGetAuthorizationToken); n != 1 {
		t.Fatalf("%d calls before the interval, want 1", n)
	}

	// Short-lived tokens: half the remaining lifetime comes first.
	e.srv.SetTokenLifetime(40 * time.Minute)
	s.clock.Step(time.Second)
	if d := s.next(t); d != 20*time.Minute {
		t.Fatalf("wait after a 40m token = %s, want 20m", d)
	}
	if n := e.srv.CallCount(fakeecr.OpGetAuthorizationToken); n != 2 {
		t.Fatalf("%d calls after the interval, want 2", n)
	}
	if readFile(t, reg.PasswordFile) == first {
		t.Fatal("password file not rewritten")
	}
}

// TestIdleAfterEveryRefresh checks that Idle runs once after each
// refresh of each caller, failed or not, before it waits for the next.
func TestIdleAfterEveryRefresh(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFault(fakeecr.DefaultAccount, fakeecr.FaultAccessDenied, 1) // one of the first two refreshes fails
	cfg := &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{
		e.registry("123456789012", "us-west-2", "a"), e.registry("123456789012", "eu-west-1", "b"),
	}}
	var idles atomic.Int32
	s := startScheduled(t, e, cfg, nil, func(o *Options) { o.Idle = func() { idles.Add(1) } })
	if waits := s.await(t, 2); min(waits[0], waits[1]) >= cfg.Interval {
		t.Fatalf("waits %v: no refresh failed", waits)
	}
	if n := idles.Load(); n != 2 {
		t.Fatalf("Idle ran %d times after the first refresh of two callers, want 2", n)
	}
	s.advance(t)
	s.idle(t)
	if n, calls := idles.Load(), e.srv.CallCount(fakeecr.OpGetAuthorizationToken); int(n) != calls {
		t.Errorf("Idle ran %d times for %d refreshes", n, calls)
	}
}

// TestOutageKeepsOldFileAndRecoversBeforeExpiry: ECR fails from the first
// refresh point on; the file keeps the old password, the sidecar stays
// ready, retries back off without ever waiting past the expiry, and the
// first success after the outage lands before the old token expires.
func TestOutageKeepsOldFileAndRecoversBeforeExpiry(t *testing.T) {
	e := newEnv(t)
	e.srv.SetTokenLifetime(time.Hour)
	reg := e.registry("123456789012", "us-west-2", "a")
	s := startScheduled(t, e, &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{reg}}, nil)
	wait := s.next(t)
	good := readFile(t, reg.PasswordFile)
	expires := s.clock.Now().Add(time.Hour)

	e.srv.SetFault("", fakeecr.FaultServerError, 0)
	var waits []time.Duration
	for s.clock.Now().Add(wait).Before(expires.Add(-2 * time.Minute)) {
		s.clock.Step(wait)
		wait = s.next(t)
		waits = append(waits, wait)
		if !s.clock.Now().Add(wait).Before(expires) {
			t.Fatalf("retry scheduled at %s, after the expiry at %s", s.clock.Now().Add(wait), expires)
		}
		if got := readFile(t, reg.PasswordFile); got != good {
			t.Fatal("the outage changed the password file")
		}
		if nr := s.r.NotReady(); len(nr) != 0 {
			t.Fatalf("not ready during the outage although the token is valid: %v", nr)
		}
	}
	if len(waits) < 5 || waits[1] != 2*waits[0] {
		t.Fatalf("backoff waits %v: want several, doubling", waits)
	}
	e.srv.SetFault("", fakeecr.FaultNone, 0)
	s.clock.Step(wait)
	s.next(t)
	if !s.clock.Now().Before(expires) {
		t.Fatalf("recovered at %s, after the old token expired at %s", s.clock.Now(), expires)
	}
	if got := readFile(t, reg.PasswordFile); got == good || got != e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2") {
		t.Fatal("the recovery did not write the new password")
	}
	if nr := s.r.NotReady(); len(nr) != 0 {
		t.Fatalf("not ready after recovery: %v", nr)
	}
}

// TestGroupsAreIndependent: one account hangs; the other keeps its own
// schedule.
func TestGroupsAreIndependent(t *testing.T) {
	e := newEnv(t)
	stuck := e.registry("222222222222", "us-west-2", "stuck")
	stuck.RoleARN = "arn:aws:iam::222222222222:role/r"
	fine := e.registry("123456789012", "us-west-2", "fine")
	e.srv.SetFault("222222222222", fakeecr.FaultHang, 0)
	s := startScheduled(t, e, &Config{Interval: 10 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{stuck, fine}}, nil)
	for round := 1; round <= 3; round++ {
		if d := s.next(t); d != 10*time.Minute {
			t.Fatalf("round %d: healthy group waits %s, want 10m", round, d)
		}
		if got := readFile(t, fine.PasswordFile); got != e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2") {
			t.Fatalf("round %d: healthy group's file is stale", round)
		}
		s.clock.Step(10 * time.Minute)
	}
	if _, err := os.Stat(stuck.PasswordFile); !os.IsNotExist(err) {
		t.Fatalf("hung group wrote its file: %v", err)
	}
}

func TestRunReloadsConfig(t *testing.T) {
	e := newEnv(t)
	a := e.registry("123456789012", "us-west-2", "a")
	b := e.registry("123456789012", "eu-west-1", "b")
	updates := make(chan *Config)
	s := startScheduled(t, e, &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{a}}, updates)
	s.next(t)
	if nr := s.r.NotReady(); len(nr) != 0 {
		t.Fatalf("not ready: %v", nr)
	}
	if got := expiryFiles(t, s.metrics); len(got) != 1 || got[0] != a.PasswordFile {
		t.Fatalf("token expiry series for %v, want only %s", got, a.PasswordFile)
	}
	updates <- &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{b}}
	s.next(t)
	if got := readFile(t, b.PasswordFile); got != e.srv.LastPassword(fakeecr.DefaultAccount, "eu-west-1") {
		t.Fatal("the new config's registry was not written")
	}
	if nr := s.r.NotReady(); len(nr) != 0 {
		t.Fatalf("not ready after reload: %v", nr)
	}
	// The registry that left the config stops reporting: its expiry would
	// otherwise set off an expiry alert for a file nobody refreshes.
	if got := expiryFiles(t, s.metrics); len(got) != 1 || got[0] != b.PasswordFile {
		t.Fatalf("token expiry series for %v after reload, want only %s", got, b.PasswordFile)
	}
}

// expiryFiles lists the password_file labels of the token expiry series.
func expiryFiles(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	var files []string
	for _, s := range gatherSeries(t, g, "ecr_token_refresh_token_expiry_timestamp_seconds") {
		files = append(files, s.labels["password_file"])
	}
	return files
}

// series is one series of a metric: its labels and its value.
type series struct {
	labels map[string]string
	value  float64 // a gauge's or a counter's
}

// gatherSeries returns the series of the metric called name that g
// gathers.
func gatherSeries(t *testing.T, g prometheus.Gatherer, name string) []series {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []series
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			s := series{labels: map[string]string{}, value: m.GetGauge().GetValue() + m.GetCounter().GetValue()}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// startFirstDenied runs one registry, with one-hour tokens, whose first
// refresh is denied.
func startFirstDenied(t *testing.T) (*scheduled, Registry) {
	t.Helper()
	e := newEnv(t)
	e.srv.SetTokenLifetime(time.Hour)
	reg := e.registry("123456789012", "us-west-2", "a")
	e.srv.SetFault("", fakeecr.FaultAccessDenied, 1)
	return startScheduled(t, e, &Config{Interval: 30 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{reg}}, nil), reg
}

func TestNotReadyUntilWrittenAndAfterExpiry(t *testing.T) {
	s, _ := startFirstDenied(t)
	e := s.env
	wait := s.next(t) // the first attempt failed
	if nr := s.r.NotReady(); len(nr) != 1 || !strings.Contains(nr[0], "no token yet") {
		t.Fatalf("NotReady before any token = %v", nr)
	}
	s.clock.Step(wait)
	s.next(t)
	if nr := s.r.NotReady(); len(nr) != 0 {
		t.Fatalf("NotReady after a token = %v", nr)
	}
	e.srv.SetFault("", fakeecr.FaultAccessDenied, 0)
	s.clock.SetTime(s.clock.Now().Add(time.Hour)) // jump past expiry; no timer fires in between
	if nr := s.r.NotReady(); len(nr) != 1 || !strings.Contains(nr[0], "token expired at") {
		t.Fatalf("NotReady after expiry = %v", nr)
	}
}

// TestRetryerHasNoRetryQuota: the SDK's standard retryer refuses retries
// once its token bucket (500 tokens, 5 a retry) is drained, which a long
// throttling spell does; ours keeps granting them and leaves the backoff to
// the schedule.
func TestRetryerHasNoRetryQuota(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	for name, tt := range map[string]struct {
		retryer  aws.Retryer
		refusals bool
	}{
		"standard (baseline)": {retry.NewStandard(), true},
		"ours":                {newRetryer(), false},
	} {
		t.Run(name, func(t *testing.T) {
			refused := 0
			for range 1000 {
				if _, err := tt.retryer.GetRetryToken(context.Background(), throttled); err != nil {
					refused++
				}
			}
			if (refused > 0) != tt.refusals {
				t.Errorf("%d of 1000 retries refused", refused)
			}
		})
	}
	if got := newRetryer().MaxAttempts(); got != sdkMaxAttempts {
		t.Errorf("MaxAttempts = %d, want %d", got, sdkMaxAttempts)
	}
}

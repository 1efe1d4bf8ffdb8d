// Package refresher keeps Amazon ECR registry passwords fresh in files: it
// calls GetAuthorizationToken once per caller (credentials and region),
// writes each registry's password atomically, and refreshes before the
// token expires. It is the sidecar mode of ecr-token-refresh.
package refresher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Backoff after a failed refresh: exponential from retryBase, capped at
// retryMax, with jitter, and never past the current token's expiry.
const (
	retryBase = 2 * time.Second
	retryMax  = 5 * time.Minute
	retryMin  = time.Second
)

// Options tune a Refresher. The zero value is ready for production.
type Options struct {
	// Clock drives the schedule; default the real clock.
	Clock clock.Clock
	// Logger receives one line per refresh result; default slog.Default().
	Logger *slog.Logger
	// Metrics, if set, records refreshes and API latency.
	Metrics *Metrics
	// Jitter returns a number in [0, 1); default math/rand/v2.Float64.
	Jitter func() float64
	// CallTimeout bounds one GetAuthorizationToken call including the
	// SDK's retries; default 30s.
	CallTimeout time.Duration
	// Idle, if set, is called after every refresh of a caller, before
	// it waits for the next one (typically minutes): the sidecar hands
	// the memory the refresh freed back to the OS there.
	Idle func()
}

// Refresher keeps the files of a Config fresh.
type Refresher struct {
	ecr  *ECR
	opts Options

	mu      sync.Mutex
	cfg     *Config
	expiry  map[string]time.Time // password file -> expiry of the token in it
	dockers map[string]Token     // registry host -> token, for DockerConfigFile
}

// New returns a Refresher that gets its tokens from ecr.
func New(ecr *ECR, opts Options) *Refresher {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = callTimeout
	}
	return &Refresher{ecr: ecr, opts: opts, expiry: map[string]time.Time{}, dockers: map[string]Token{}}
}

// group is the registries that share one caller and so one token.
type group struct {
	key        groupKey
	registries []Registry
}

// groups partitions cfg's registries by caller, in config order.
func groups(cfg *Config) []group {
	var gs []group
	index := map[groupKey]int{}
	for _, r := range cfg.Registries {
		k := groupKey{Region: r.Region, RoleARN: r.RoleARN, ExternalID: r.ExternalID, FIPS: r.FIPS, DualStack: r.DualStack}
		i, ok := index[k]
		if !ok {
			i = len(gs)
			index[k] = i
			gs = append(gs, group{key: k})
		}
		gs[i].registries = append(gs[i].registries, r)
	}
	return gs
}

// RunOnce refreshes every registry once. The error names each registry
// that failed and the AWS error code.
func (r *Refresher) RunOnce(ctx context.Context, cfg *Config) error {
	r.setConfig(cfg)
	gs := groups(cfg)
	errs := make([]error, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		wg.Go(func() {
			var tok Token
			tok, errs[i] = r.refresh(ctx, cfg, g)
			r.logResult(g, tok, errs[i], 0, 0)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run refreshes every registry now and then on schedule until ctx ends.
// A Config received on updates replaces the running one: every group
// restarts with a fresh fetch. Run returns nil when ctx ends.
func (r *Refresher) Run(ctx context.Context, cfg *Config, updates <-chan *Config) error {
	for {
		r.setConfig(cfg)
		runCtx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, g := range groups(cfg) {
			wg.Go(func() { r.runGroup(runCtx, cfg, g) })
		}
		select {
		case <-ctx.Done():
		case cfg = <-updates:
		}
		stop()
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// runGroup refreshes one group on its own schedule, independent of the
// others, so that one failing account never delays another.
func (r *Refresher) runGroup(ctx context.Context, cfg *Config, g group) {
	var (
		failures int
		expires  time.Time // expiry of the newest token written
	)
	for {
		tok, err := r.refresh(ctx, cfg, g)
		if ctx.Err() != nil {
			return
		}
		now := r.opts.Clock.Now()
		var wait time.Duration
		if err == nil {
			failures = 0
			expires = tok.ExpiresAt
			wait = r.nextRefresh(now, tok.ExpiresAt, cfg.Interval)
		} else {
			failures++
			wait = r.retryAfter(now, failures, expires)
		}
		if r.opts.Idle != nil {
			r.opts.Idle()
		}
		r.logResult(g, tok, err, failures, wait)
		t := r.opts.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// logResult logs one line for one refresh of g: never the token, only its
// expiry. wait, if not zero, is when the next attempt comes.
func (r *Refresher) logResult(g group, tok Token, err error, failures int, wait time.Duration) {
	if err != nil {
		attrs := []any{"caller", g.key.String(), "code", errorCode(err), "error", err.Error()}
		if wait > 0 {
			attrs = append(attrs, "failures", failures, "retryIn", wait.Round(time.Millisecond).String())
		}
		r.opts.Logger.Error("refresh failed", attrs...)
		return
	}
	attrs := []any{"caller", g.key.String(), "registries", names(g.registries), "expiresAt", tok.ExpiresAt}
	if wait > 0 {
		attrs = append(attrs, "nextRefreshIn", wait.Round(time.Second).String())
	}
	r.opts.Logger.Info("refreshed", attrs...)
}

// nextRefresh is the earlier of interval and half the token's remaining
// lifetime, shortened by up to 10% of jitter so that many sidecars do not
// call ECR in step.
func (r *Refresher) nextRefresh(now, expiresAt time.Time, interval time.Duration) time.Duration {
	d := min(interval, expiresAt.Sub(now)/2)
	d -= time.Duration(float64(d) * 0.1 * r.opts.Jitter())
	return max(d, retryMin)
}

// retryAfter is the wait after the n-th failure in a row: capped
// exponential backoff with jitter (between half and all of the step), and
// never later than half the time left on the token now in the files.
func (r *Refresher) retryAfter(now time.Time, n int, expiresAt time.Time) time.Duration {
	d := retryMax
	if n < 20 {
		d = min(retryBase<<(n-1), retryMax)
	}
	d = d/2 + time.Duration(float64(d/2)*r.opts.Jitter())
	if left := expiresAt.Sub(now); left > 0 {
		d = min(d, left/2)
	}
	return max(d, retryMin)
}

// refresh fetches g's token and writes every file of g's registries. It
// returns the token if every write succeeded.
func (r *Refresher) refresh(ctx context.Context, cfg *Config, g group) (Token, error) {
	callCtx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	start := time.Now()
	tok, err := r.ecr.Token(callCtx, g.key)
	cancel()
	r.opts.Metrics.observeCall(g.key.Region, time.Since(start), err)
	if err != nil {
		for _, reg := range g.registries {
			r.opts.Metrics.observeRefresh(reg, false, Token{}, time.Time{})
		}
		return Token{}, fmt.Errorf("registries %s: GetAuthorizationToken (%s): %s: %w",
			strings.Join(names(g.registries), ", "), g.key, errorCode(err), err)
	}
	// Every file is renamed into place first, then each directory is
	// synced once: not once per file, which costs a journal commit each.
	data := tokenData{password: []byte(tok.Password), username: []byte(tok.Username), expiresAt: tok.ExpiresAt}
	failed := make([]error, len(g.registries))
	dirs := map[string][]int{} // directory -> the registries written into it
	for i, reg := range g.registries {
		if failed[i] = r.write(cfg, reg, data); failed[i] != nil {
			continue
		}
		for _, f := range []string{reg.PasswordFile, reg.UsernameFile} {
			if f != "" {
				dirs[filepath.Dir(f)] = append(dirs[filepath.Dir(f)], i)
			}
		}
	}
	for dir, written := range dirs {
		if err := syncDir(dir); err != nil {
			for _, i := range written {
				failed[i] = &writeError{"directory", dir, err}
			}
		}
	}
	var errs []error
	now := r.opts.Clock.Now()
	for i, reg := range g.registries {
		r.opts.Metrics.observeRefresh(reg, failed[i] == nil, tok, now)
		if failed[i] != nil {
			errs = append(errs, fmt.Errorf("registry %s: %w", reg, failed[i]))
		}
	}
	if cfg.DockerConfigFile != "" {
		if err := r.writeDockerConfig(cfg, g.registries, tok); err != nil {
			errs = append(errs, &writeError{"dockerConfigFile", cfg.DockerConfigFile, err})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Token{}, err
	}
	return tok, nil
}

// writeError is a failure to write one of the files a config names. It
// names the file, not the temporary file that the error underneath may
// name.
type writeError struct {
	field, path string
	err         error
}

func (e *writeError) Error() string { return e.field + " " + e.path + ": " + e.err.Error() }

func (e *writeError) Unwrap() error { return e.err }

// tokenData is a token as the bytes its files receive, converted once for
// all the registries that share it.
type tokenData struct {
	password, username []byte
	expiresAt          time.Time
}

// write puts tok into reg's files and records the expiry.
func (r *Refresher) write(cfg *Config, reg Registry, tok tokenData) error {
	if err := replaceFile(reg.PasswordFile, tok.password, cfg.FileMode); err != nil {
		return &writeError{"passwordFile", reg.PasswordFile, err}
	}
	r.mu.Lock()
	r.expiry[reg.PasswordFile] = tok.expiresAt
	r.mu.Unlock()
	if reg.UsernameFile != "" {
		if err := replaceFile(reg.UsernameFile, tok.username, cfg.FileMode); err != nil {
			return &writeError{"usernameFile", reg.UsernameFile, err}
		}
	}
	return nil
}

// writeDockerConfig records tok for regs' hosts and rewrites the docker
// config with every host's newest token. Groups share the file, so the
// write happens under the lock.
func (r *Refresher) writeDockerConfig(cfg *Config, regs []Registry, tok Token) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reg := range regs {
		r.dockers[reg.Host] = tok
	}
	data, err := dockerConfig(r.dockers)
	if err != nil {
		return err
	}
	return writeFileAtomic(cfg.DockerConfigFile, data, cfg.FileMode)
}

// setConfig makes cfg the config that readiness is judged by, and forgets
// the files, hosts and metrics series that cfg no longer names.
func (r *Refresher) setConfig(cfg *Config) {
	r.opts.Metrics.retain(cfg.Registries)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg = cfg
	files := map[string]bool{}
	hosts := map[string]bool{}
	for _, reg := range cfg.Registries {
		files[reg.PasswordFile] = true
		hosts[reg.Host] = true
	}
	for f := range r.expiry {
		if !files[f] {
			delete(r.expiry, f)
		}
	}
	for h := range r.dockers {
		if !hosts[h] {
			delete(r.dockers, h)
		}
	}
}

// NotReady lists the registries whose password file does not hold an
// unexpired token; empty means ready.
func (r *Refresher) NotReady() []string {
	now := r.opts.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg == nil {
		return []string{"no config loaded"}
	}
	var out []string
	for _, reg := range r.cfg.Registries {
		exp, ok := r.expiry[reg.PasswordFile]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s (%s): no token yet", reg, reg.PasswordFile))
		case !now.Before(exp):
			out = append(out, fmt.Sprintf("%s (%s): token expired at %s", reg, reg.PasswordFile, exp.Format(time.RFC3339)))
		}
	}
	return out
}

// names lists registries for a log line.
func names(regs []Registry) []string {
	out := make([]string, 0, len(regs))
	for _, r := range regs {
		out = append(out, r.String()+" ("+r.PasswordFile+")")
	}
	return out
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/kubelet"
	"github.com/ecr-token-refresh/ecr-token-refresh/refresher"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// clock is how the demo prints times of day.
const clock = "15:04:05.000"

// refreshes is how many refreshes step 6 watches.
const refreshes = 2

// passwordFile is one of the sidecar's password files.
type passwordFile struct {
	path   string // in the pod
	host   string // where it is here
	region string // of the registry, for the endpoint's newest password
}

// runSidecar is step 5: the injected containers run as a kubelet would
// run them (internal/kubelet), and what the app containers would find.
func (d *demo) runSidecar(ctx context.Context) error {
	var err error
	if d.kubelet, err = kubelet.New(d.pod, filepath.Join(d.root, "pod"), d.binary, d.configMaps...); err != nil {
		return err
	}
	d.printf("    the pod's volumes are folders (no mount namespace here, so paths under mount points in args, env\n")
	d.printf("    and ConfigMap files are rewritten to them):\n")
	for _, v := range d.kubelet.Volumes {
		d.printf("      %s (%s): %s\n", v.Name, v.Source, v.Dir)
	}
	var sidecar, once *corev1.Container
	kind := "container"
	for i, c := range d.pod.Spec.InitContainers {
		switch c.Name {
		case webhook.InitContainerName:
			once = &d.pod.Spec.InitContainers[i]
		case webhook.ContainerName:
			sidecar, kind = &d.pod.Spec.InitContainers[i], "init container"
		}
	}
	for i, c := range d.pod.Spec.Containers {
		if c.Name == webhook.ContainerName {
			sidecar = &d.pod.Spec.Containers[i]
		}
	}
	if sidecar == nil {
		return fmt.Errorf("pod %s has no %s container", d.pod.Name, webhook.ContainerName)
	}
	var extraEnv []string
	if d.files, extraEnv, err = d.passwordFiles(*sidecar); err != nil {
		return err
	}

	probe := sidecar.StartupProbe
	if probe == nil {
		probe = sidecar.ReadinessProbe
	}
	if probe == nil || probe.HTTPGet == nil {
		return fmt.Errorf("container %s has no HTTP startup or readiness probe", sidecar.Name)
	}
	podAddr := ":" + probe.HTTPGet.Port.String()
	if override, why := healthOverride(d.healthAddr, podAddr, free); override != "" {
		extraEnv = append(extraEnv, "ECR_TOKEN_REFRESH_HEALTH_ADDR="+override)
		d.printf("    the sidecar's health server listens on %s instead of the pod's %s (%s): ECR_TOKEN_REFRESH_HEALTH_ADDR=%s\n", override, podAddr, why, override)
	}

	if once != nil {
		cmd, err := d.kubelet.Cmd(*once, extraEnv...)
		if err != nil {
			return err
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("init container %s: %w\n%s", once.Name, err, out)
		}
		d.printf("    init container %s ran to completion: %s\n", once.Name, strings.Join(cmd.Args, " "))
	}
	cmd, err := d.kubelet.Cmd(*sidecar, extraEnv...)
	if err != nil {
		return err
	}
	if d.sidecar, err = startChild("sidecar", cmd, filepath.Join(d.root, "logs", "sidecar.log"), d.sidecarLog.add); err != nil {
		return err
	}
	var env []string
	for _, kv := range cmd.Env {
		k, _, _ := strings.Cut(kv, "=")
		env = append(env, k)
	}
	d.printf("    %s %s (pid %d): %s\n", kind, sidecar.Name, cmd.Process.Pid, strings.Join(cmd.Args, " "))
	d.printf("      env: %s (values not shown)\n", strings.Join(env, ", "))

	started, _, err := d.sidecarLog.wait(ctx, 0, 10*time.Second, d.sidecar, func(r logRecord) bool { return r.Msg == "starting" })
	if err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(started.HealthAddr)
	if err != nil {
		return fmt.Errorf("the sidecar's health address %q: %w", started.HealthAddr, err)
	}
	d.health = "127.0.0.1:" + port
	limit := time.Duration(max(probe.PeriodSeconds, 1)*max(probe.FailureThreshold, 1)) * time.Second
	start := time.Now()
	if err := waitFor(ctx, max(limit, 10*time.Second), "GET "+probe.HTTPGet.Path+" to answer 200", d.sidecar, func() (bool, error) {
		code, _, err := get("http://" + d.health + probe.HTTPGet.Path)
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		return err
	}
	d.printf("    probe GET http://%s%s: 200 after %.1fs, so the app containers may start now\n", d.health, probe.HTTPGet.Path, time.Since(start).Seconds())

	for _, f := range d.files {
		rec, _, err := d.sidecarLog.wait(ctx, 0, 5*time.Second, d.sidecar, refreshedFile(f.host))
		if err != nil {
			return err
		}
		if err := d.showFile(f, rec); err != nil {
			return err
		}
	}
	code, body, err := get("http://" + d.health + "/readyz")
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("GET /readyz: %d %q %v", code, body, err)
	}
	d.printf("    GET /readyz: %d %s\n", code, strings.TrimSpace(body))
	code, body, err = get("http://" + d.health + "/metrics")
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("GET /metrics: %d %v", code, err)
	}
	d.printf("    GET /metrics (the sidecar's own series):\n")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "ecr_token_refresh_") && !strings.Contains(line, "_bucket") {
			d.printf("      %s\n", line)
		}
	}
	for _, c := range d.pod.Spec.Containers {
		if c.Name == webhook.ContainerName {
			continue
		}
		for _, f := range d.files {
			if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return strings.HasPrefix(f.path, strings.TrimSuffix(m.MountPath, "/")+"/")
			}) {
				d.printf("    container %s (not run here: its image is not this binary) reads %s\n", c.Name, f.path)
			}
		}
	}
	return nil
}

// passwordFiles returns the sidecar's password files, from its --registry
// args or else from the config.yaml of the ConfigMap mounted where it
// reads its config by default; in that case also the env that tells it
// where that file is here.
func (d *demo) passwordFiles(c corev1.Container) ([]passwordFile, []string, error) {
	var specs, env []string
	for i, a := range c.Args {
		if a == "--registry" && i+1 < len(c.Args) {
			specs = append(specs, c.Args[i+1])
		}
	}
	var cfg *refresher.Config
	var err error
	if len(specs) > 0 {
		cfg, err = refresher.FromSpecs(specs, "", "")
	} else {
		cfg, err = d.configFromConfigMap(c)
		host, _ := d.kubelet.HostPath(refresher.DefaultConfigPath)
		env = append(env, "ECR_TOKEN_REFRESH_CONFIG="+host)
		d.printf("    the sidecar's default --config %s is here %s,\n", refresher.DefaultConfigPath, host)
		d.printf("    which ECR_TOKEN_REFRESH_CONFIG tells it\n")
	}
	if err != nil {
		return nil, nil, err
	}
	var files []passwordFile
	for _, r := range cfg.Registries {
		host, ok := d.kubelet.HostPath(r.PasswordFile)
		if !ok {
			return nil, nil, fmt.Errorf("password file %s is on no volume of the pod", r.PasswordFile)
		}
		files = append(files, passwordFile{path: r.PasswordFile, host: host, region: r.Region})
	}
	return files, env, nil
}

// configFromConfigMap parses the config file the sidecar reads by default,
// from the ConfigMap volume that container c mounts there.
func (d *demo) configFromConfigMap(c corev1.Container) (*refresher.Config, error) {
	dir, file := path.Split(refresher.DefaultConfigPath)
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return path.Clean(m.MountPath) == path.Clean(dir) })
	if i < 0 {
		return nil, fmt.Errorf("container %s has neither --registry args nor a volume at %s", c.Name, dir)
	}
	j := slices.IndexFunc(d.pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	if j < 0 || d.pod.Spec.Volumes[j].ConfigMap == nil {
		return nil, fmt.Errorf("volume %s is not a ConfigMap", c.VolumeMounts[i].Name)
	}
	name := d.pod.Spec.Volumes[j].ConfigMap.Name
	k := slices.IndexFunc(d.configMaps, func(cm *corev1.ConfigMap) bool { return cm.Name == name })
	if k < 0 {
		return nil, fmt.Errorf("ConfigMap %s is not in the example", name)
	}
	return refresher.Parse([]byte(d.configMaps[k].Data[file]))
}

// showFile prints what a reader finds in f, never the password, and the
// token's expiry and next refresh from the sidecar's log line rec; it
// fails unless f holds exactly the password the endpoint issued last.
func (d *demo) showFile(f passwordFile, rec logRecord) error {
	data, err := os.ReadFile(f.host)
	if err != nil {
		return err
	}
	fi, err := os.Stat(f.host)
	if err != nil {
		return err
	}
	d.printf("    %s (here %s):\n", f.path, f.host)
	d.printf("      %d bytes, mode %#o; token expires %s, next refresh %s\n", len(data), fi.Mode().Perm(), at(rec.ExpiresAt), rec.next())
	if string(data) != d.srv.LastPassword(fakeecr.DefaultAccount, f.region) {
		return fmt.Errorf("%s does not hold the password the endpoint issued last", f.host)
	}
	d.printf("      holds exactly the password the endpoint issued last (not shown), no newline\n")
	return nil
}

// watchRefresh is step 6: while a reader reads the first password file in
// a loop, the sidecar replaces it before each token expires.
func (d *demo) watchRefresh(ctx context.Context) error {
	f := d.files[0]
	current, err := os.ReadFile(f.host)
	if err != nil {
		return err
	}
	prev, prevIndex, ok := d.sidecarLog.latest(refreshedFile(f.host))
	if !ok {
		return fmt.Errorf("no refresh of %s in the sidecar's log", f.host)
	}
	r := startReader(f.host, current)
	defer r.stop()
	d.printf("    a reader reads %s in a loop; the sidecar replaces it at about half the token's lifetime\n", f.host)
	for range refreshes {
		seen, err := r.waitChange(ctx, prev.ExpiresAt, d.sidecar)
		if err != nil {
			return err
		}
		fi, err := os.Stat(f.host)
		if err != nil {
			return err
		}
		rec, index, err := d.sidecarLog.wait(ctx, prevIndex+1, 5*time.Second, d.sidecar, refreshedFile(f.host))
		if err != nil {
			return err
		}
		written := fi.ModTime()
		if !written.Before(prev.ExpiresAt) || !seen.Before(prev.ExpiresAt) {
			return fmt.Errorf("%s was replaced at %s, after the old token expired at %s", f.host, at(written), at(prev.ExpiresAt))
		}
		d.printf("    %s: replaced (new password, %d bytes, mode %#o), %.1fs before the old token's expiry %s;\n",
			at(written), fi.Size(), fi.Mode().Perm(), prev.ExpiresAt.Sub(written).Seconds(), at(prev.ExpiresAt))
		d.printf("      the new token expires %s, next refresh %s\n", at(rec.ExpiresAt), rec.next())
		prev, prevIndex = rec, index
	}
	s := r.stop()
	d.printf("    reader: %d reads in %.1fs: %d empty, %d partial, %d failed; it saw %d passwords, each complete\n",
		s.reads, s.took.Seconds(), s.empty, s.partial, s.failed, s.passwords)
	if s.empty+s.partial+s.failed > 0 {
		return fmt.Errorf("the reader saw %d empty, %d partial and %d failed reads", s.empty, s.partial, s.failed)
	}
	data, err := os.ReadFile(f.host)
	if err != nil {
		return err
	}
	if string(data) != d.srv.LastPassword(fakeecr.DefaultAccount, f.region) {
		return fmt.Errorf("%s does not hold the password the endpoint issued last", f.host)
	}
	code, _, err := get("http://" + d.health + "/readyz")
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("GET /readyz after the refreshes: %d %v", code, err)
	}
	d.printf("    the file holds the newest password; GET /readyz: 200; GetAuthorizationToken calls so far: %d\n",
		d.srv.CallCount(fakeecr.OpGetAuthorizationToken))
	return nil
}

// healthOverride returns the address the sidecar's health server should
// listen on instead of the pod's own podAddr, and why: flag if set, else
// a free loopback port if podAddr is not free; "" means podAddr.
func healthOverride(flag, podAddr string, free func(string) bool) (addr, why string) {
	switch {
	case flag != "":
		return flag, "--sidecar-health-addr"
	case !free(podAddr):
		return "127.0.0.1:0", "that port is in use on this machine"
	}
	return "", ""
}

// free reports whether addr can be listened on now.
func free(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// at prints a time of day.
func at(t time.Time) string {
	return t.Local().Format(clock)
}

// logRecord is one JSON line of the sidecar's log: the fields the demo
// reads.
type logRecord struct {
	Time          time.Time `json:"time"`
	Msg           string    `json:"msg"`
	HealthAddr    string    `json:"healthAddr"`
	ExpiresAt     time.Time `json:"expiresAt"`
	NextRefreshIn string    `json:"nextRefreshIn"`
	// Registries lists the registries of a refresh, as
	// "ACCOUNT/REGION (FILE)"; on the "starting" line it is a count.
	Registries json.RawMessage `json:"registries"`
}

// next says when the sidecar refreshes next, by its log line, which
// rounds the wait to seconds.
func (r logRecord) next() string {
	d, err := time.ParseDuration(r.NextRefreshIn)
	if err != nil {
		return "unknown (" + r.NextRefreshIn + ")"
	}
	return fmt.Sprintf("in about %s (%s)", d, r.Time.Add(d).Local().Format(time.TimeOnly))
}

// refreshedFile matches the "refreshed" lines that name file.
func refreshedFile(file string) func(logRecord) bool {
	return func(r logRecord) bool {
		var registries []string
		return r.Msg == "refreshed" && json.Unmarshal(r.Registries, &registries) == nil &&
			slices.ContainsFunc(registries, func(s string) bool { return strings.HasSuffix(s, "("+file+")") })
	}
}

// records are the sidecar's log lines so far.
type records struct {
	mu    sync.Mutex
	list  []logRecord
	added chan struct{} // closed and replaced on every new record
}

func newRecords() *records {
	return &records{added: make(chan struct{})}
}

// add parses a log line; lines that are not JSON are left to the log file.
func (r *records) add(line string) {
	var rec logRecord
	if json.Unmarshal([]byte(line), &rec) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec)
	close(r.added)
	r.added = make(chan struct{})
}

// latest returns the newest record that match accepts, and its index.
func (r *records) latest(match func(logRecord) bool) (logRecord, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.list) - 1; i >= 0; i-- {
		if match(r.list[i]) {
			return r.list[i], i, true
		}
	}
	return logRecord{}, 0, false
}

// wait returns the first record from index from on that match accepts,
// and its index, waiting up to timeout for it while c runs.
func (r *records) wait(ctx context.Context, from int, timeout time.Duration, c *child, match func(logRecord) bool) (logRecord, int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := from; i < len(r.list); i++ {
			if rec := r.list[i]; match(rec) {
				r.mu.Unlock()
				return rec, i, nil
			}
		}
		from = len(r.list)
		added := r.added
		r.mu.Unlock()
		select {
		case <-added:
		case <-c.done:
			return logRecord{}, 0, c.exited()
		case <-deadline.C:
			return logRecord{}, 0, fmt.Errorf("the sidecar's log has no such line within %s; its log:\n%s", timeout, c.logTail(20))
		case <-ctx.Done():
			return logRecord{}, 0, context.Cause(ctx)
		}
	}
}

// reader reads a file in a loop, as an app would, and counts what it saw.
type reader struct {
	path    string
	changes chan time.Time // when a new password was first read
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
	stats   readerStats // written by the reading goroutine until done
}

// readerStats is what a reader saw.
type readerStats struct {
	reads, empty, partial, failed, passwords int
	took                                     time.Duration
}

// startReader starts reading path, which now holds current. A read is
// partial if it has another length than current: the passwords all have
// the same length.
func startReader(path string, current []byte) *reader {
	r := &reader{path: path, changes: make(chan time.Time, refreshes+1), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		start, last, s := time.Now(), string(current), &r.stats
		s.passwords = 1
		for {
			select {
			case <-r.quit:
				s.took = time.Since(start)
				return
			default:
			}
			data, err := os.ReadFile(path)
			s.reads++
			switch {
			case err != nil:
				s.failed++
			case len(data) == 0:
				s.empty++
			case len(data) != len(current):
				s.partial++
			case string(data) != last:
				last = string(data)
				s.passwords++
				select {
				case r.changes <- time.Now():
				default: // more changes than anyone waits for
				}
			}
		}
	}()
	return r
}

// waitChange waits until the reader reads a new password and returns when
// it did; it fails if that has not happened by deadline or c exits.
func (r *reader) waitChange(ctx context.Context, deadline time.Time, c *child) (time.Time, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case t := <-r.changes:
		return t, nil
	case <-timer.C:
		return time.Time{}, fmt.Errorf("%s was not replaced before the token in it expired at %s; the sidecar's log:\n%s", r.path, at(deadline), c.logTail(20))
	case <-c.done:
		return time.Time{}, c.exited()
	case <-ctx.Done():
		return time.Time{}, context.Cause(ctx)
	}
}

// stop ends the reader, once, and returns what it saw.
func (r *reader) stop() readerStats {
	r.once.Do(func() { close(r.quit) })
	<-r.done
	return r.stats
}

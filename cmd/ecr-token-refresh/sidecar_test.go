package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// binary is the ecr-token-refresh binary built once for these tests and
// benchmarks.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ecr-token-refresh-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ecr-token-refresh")
	// Built as `make build` builds it, so that the benchmarks measure the
	// binary that ships.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// sidecarCmd is the binary run as a subprocess against srv.
func sidecarCmd(srv *fakeecr.Server, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), srv.Env()...)
	return cmd
}

// writeConfig writes a config file whose registries write into dir.
func writeConfig(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(content, "$DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSidecarOnce(t *testing.T) {
	srv := fakeecr.New()
	defer srv.Close()
	dir := t.TempDir()
	config := writeConfig(t, dir, `interval: 30m
registries:
- registryId: "123456789012"
  region: "us-west-2"
  passwordFile: "$DIR/passwords/my-registry.pass"
`)
	out, err := sidecarCmd(srv, "sidecar", "--once", "--config", config).CombinedOutput()
	if err != nil {
		t.Fatalf("sidecar --once: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "passwords", "my-registry.pass"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != srv.LastPassword(fakeecr.DefaultAccount, "us-west-2") {
		t.Errorf("password file holds %.20q…, want exactly the issued password", got)
	}
	if strings.Contains(string(out), string(got[:32])) {
		t.Error("the output contains the password")
	}
}

func TestSidecarOnceFailureNamesRegistryAndCode(t *testing.T) {
	srv := fakeecr.New()
	defer srv.Close()
	srv.SetFault("", fakeecr.FaultAccessDenied, 0)
	dir := t.TempDir()
	cmd := sidecarCmd(srv, "sidecar", "--once", "--registry", "123456789012.dkr.ecr.us-west-2.amazonaws.com="+dir+"/a.pass")
	out, err := cmd.CombinedOutput()
	if code := exitCode(t, err); code != exitFailure {
		t.Fatalf("exit code %d, want %d\n%s", code, exitFailure, out)
	}
	for _, want := range []string{"123456789012/us-west-2", "AccessDeniedException"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not name %q:\n%s", want, out)
		}
	}
}

// TestSidecarBadInput: bad flags and configs exit 2 within a second with
// a message naming the field, make no AWS call and touch no file.
func TestSidecarBadInput(t *testing.T) {
	const reg = "- registryId: \"123456789012\"\n  region: us-west-2\n  passwordFile: $DIR/a.pass\n"
	tests := []struct {
		name   string
		config string // written to $DIR/config.yaml unless empty
		args   []string
		env    []string
		want   string
	}{
		{name: "yaml error", config: "registries: [\n", want: "line"},
		{name: "missing registryId", config: "registries:\n- region: us-west-2\n  passwordFile: $DIR/a.pass\n", want: "registries[0].registryId: required"},
		{name: "malformed registryId", config: "registries:\n- registryId: \"12\"\n  region: us-west-2\n  passwordFile: $DIR/a.pass\n", want: "registries[0].registryId"},
		{name: "missing region", config: "registries:\n" + reg + "- registryId: \"123456789012\"\n  passwordFile: $DIR/b.pass\n", want: "registries[1].region: required"},
		{name: "missing passwordFile", config: "registries:\n- registryId: \"123456789012\"\n  region: us-west-2\n", want: "registries[0].passwordFile: required"},
		{name: "bad interval", config: "interval: 5 minutes\nregistries:\n" + reg, want: "interval:"},
		{name: "unknown key", config: "registries:\n" + reg + "  pasword: x\n", want: "registries[0].pasword: unknown key"},
		{name: "empty registries", config: "registries: []\n", want: "registries: required"},
		{name: "missing file", args: []string{"--config", "$DIR/nope.yaml"}, want: "nope.yaml does not exist"},
		{name: "bad registry flag", args: []string{"--registry", "quay.io=$DIR/a.pass"}, want: `--registry[0]: "quay.io" is not an ECR registry host`},
		{name: "bad registry env", env: []string{"ECR_TOKEN_REFRESH_REGISTRY=123456789012.dkr.ecr.us-west-2.amazonaws.com"}, want: "is not HOST=FILE"},
		{name: "config and registry", config: "registries:\n" + reg, args: []string{"--registry", "123456789012.dkr.ecr.us-west-2.amazonaws.com=$DIR/b.pass"}, want: "--config and --registry exclude each other"},
		{name: "unknown flag", args: []string{"--intervall", "1m"}, want: "flag provided but not defined: -intervall"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeecr.New()
			defer srv.Close()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "a.pass"), []byte("good"), 0o444); err != nil {
				t.Fatal(err)
			}
			args := []string{"sidecar"}
			if tt.config != "" {
				args = append(args, "--config", writeConfig(t, dir, tt.config))
			}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "$DIR", dir))
			}
			cmd := sidecarCmd(srv, args...)
			cmd.Env = append(cmd.Env, tt.env...)
			// Failing before any work shows in the exit code and in no
			// call to the endpoint; go test's timeout guards a hang.
			out, err := cmd.CombinedOutput()
			if code := exitCode(t, err); code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output does not contain %q:\n%s", tt.want, out)
			}
			if n := srv.CallCount(""); n != 0 {
				t.Errorf("%d AWS calls made, want none", n)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "a.pass")); string(got) != "good" {
				t.Errorf("existing password file now holds %q", got)
			}
		})
	}
}

// TestSidecarServesAndStopsOnSIGTERM runs the sidecar as a pod would:
// files appear, /readyz turns 200, a changed config is reloaded, and
// SIGTERM ends it with 0 within two seconds, leaving the files in place.
func TestSidecarServesAndStopsOnSIGTERM(t *testing.T) {
	srv := fakeecr.New()
	defer srv.Close()
	dir := t.TempDir()
	config := writeConfig(t, dir, "registries:\n- {registryId: \"123456789012\", region: us-west-2, passwordFile: $DIR/a.pass}\n")
	cmd := sidecarCmd(srv, "sidecar", "--config", config, "--health-addr", "127.0.0.1:0")
	p := startLogged(t, cmd)

	waitReady(t, p.healthAddr(t))
	if got, _ := os.ReadFile(filepath.Join(dir, "a.pass")); string(got) != srv.LastPassword(fakeecr.DefaultAccount, "us-west-2") {
		t.Fatalf("ready, but the file holds %.20q…", got)
	}

	// A config change (replaced by rename, as editors and the kubelet do)
	// is picked up without a restart.
	next := filepath.Join(dir, "config.yaml.new")
	if err := os.WriteFile(next, []byte(strings.ReplaceAll(
		"registries:\n- {registryId: \"123456789012\", region: eu-west-1, passwordFile: $DIR/b.pass}\n", "$DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, config); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the reloaded config's file", func() bool {
		got, _ := os.ReadFile(filepath.Join(dir, "b.pass"))
		return len(got) > 0 && string(got) == srv.LastPassword(fakeecr.DefaultAccount, "eu-west-1")
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A bound far below the 30m interval: SIGTERM ends the wait for the
	// next refresh, on a loaded machine too.
	err := p.wait(10 * time.Second)
	if code := exitCode(t, err); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, p.log.String())
	}
	for _, f := range []string{"a.pass", "b.pass"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("file gone after SIGTERM: %v", err)
		}
	}
	if recs := p.records(t, "refreshed"); len(recs) != 2 {
		t.Errorf("want one log line per refresh result, got %d:\n%s", len(recs), p.log.String())
	}
}

// process is a started subprocess whose stderr is collected.
type process struct {
	cmd  *exec.Cmd
	log  *testutil.Buffer
	done chan error
	addr chan string
}

// startLogged starts cmd, collecting its JSON log lines, and finds the
// health address in its "starting" line.
func startLogged(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, log: &testutil.Buffer{}, done: make(chan error, 1), addr: make(chan string, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.log.Write([]byte(line + "\n"))
			var rec struct {
				Msg        string `json:"msg"`
				HealthAddr string `json:"healthAddr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "starting" {
				p.addr <- rec.HealthAddr
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	return p
}

func (p *process) healthAddr(t testing.TB) string {
	t.Helper()
	select {
	case a := <-p.addr:
		return a
	case err := <-p.done:
		t.Fatalf("sidecar exited: %v\n%s", err, p.log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("sidecar did not start:\n%s", p.log.String())
	}
	return ""
}

func (p *process) wait(limit time.Duration) error {
	select {
	case err := <-p.done:
		return err
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		return <-p.done
	}
}

// logRecord is the part of a JSON log line the tests read.
type logRecord struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// records returns the log records whose msg is msg. Every line must be
// JSON.
func (p *process) records(t testing.TB, msg string) []logRecord {
	t.Helper()
	var out []logRecord
	for _, line := range strings.Split(strings.TrimSpace(p.log.String()), "\n") {
		var rec logRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
		if rec.Msg == msg {
			out = append(out, rec)
		}
	}
	return out
}

// waitReady polls addr's /readyz until it answers 200.
func waitReady(t testing.TB, addr string) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, addr+"/readyz to answer 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// exitCode returns the exit code of a finished command's error.
func exitCode(t testing.TB, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("command did not run: %v", err)
	}
	return exit.ExitCode()
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/envtest"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// manifests is the repository's manifests folder, seen from here.
const manifests = "../../manifests"

// built holds the binaries the tests build once: the ecr-token-refresh
// binary and this demo.
var built struct {
	once         sync.Once
	dir          string
	binary, demo string
	err          error
}

// binaries builds ecr-token-refresh and the demo once for every test.
func binaries(t *testing.T) (binary, demo string) {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "ecr-token-refresh-demo-test"); built.err != nil {
			return
		}
		built.binary = filepath.Join(built.dir, "ecr-token-refresh")
		built.demo = filepath.Join(built.dir, "demo")
		for _, b := range [][]string{{built.binary, "../../cmd/ecr-token-refresh"}, {built.demo, "."}} {
			if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.binary, built.demo
}

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // as main does
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestDemo runs every step, as make demo does, and checks what each did.
func TestDemo(t *testing.T) {
	envtest.Require(t)
	binary, _ := binaries(t)
	out := &testutil.Buffer{}
	d := newDemo(options{binary: binary, manifests: manifests, healthAddr: "127.0.0.1:0", out: out})
	err := d.run(t.Context())
	t.Log("demo output:\n" + out.String())
	if err != nil {
		t.Fatalf("the demo failed: %v", err)
	}
	text := out.String()

	// One progress line per step, in order.
	assertSteps(t, text, steps)
	for _, want := range []string{
		// 1: the binaries.
		binary + ": version dev",
		"kube-apiserver " + envtest.KubernetesVersion,
		// 2: the manifests and the webhook, as the manifests' ServiceAccount.
		"MutatingWebhookConfiguration ecr-token-refresh\n",
		"ClusterRoleBinding ecr-token-refresh-webhook",
		"as system:serviceaccount:ecr-token-refresh:ecr-token-refresh-webhook",
		"it created Secret ecr-token-refresh/ecr-token-refresh-webhook-tls",
		// 4: the pod, injected through the API server.
		"annotation ecr-token-refresh.io/status: \"injected\"",
		"init container ecr-token-refresh, a native sidecar (restartPolicy: Always)",
		"container clouddriver: mounts ecr-token-refresh-passwords at /opt/passwords (read-only)",
		"volume ecr-token-refresh-config: configMap ecr-token-refresh-config",
		"admission warnings: none",
		// 5: the sidecar as a kubelet runs it.
		"instead of the pod's :3277 (--sidecar-health-addr)",
		"ECR_TOKEN_REFRESH_CONFIG tells it",
		"/readyz: 200 after",
		"/opt/passwords/my-registry.pass (here " + d.root + "/pod/volumes/ecr-token-refresh-passwords/my-registry.pass)",
		"mode 0444; token expires",
		"holds exactly the password the endpoint issued last",
		"GET /readyz: 200 ok",
		"ecr_token_refresh_refreshes_total{",
		"container clouddriver (not run here: its image is not this binary) reads /opt/passwords/my-registry.pass",
		// 6: refreshes under a reader.
		"0 empty, 0 partial, 0 failed; it saw 3 passwords, each complete",
		"the file holds the newest password; GET /readyz: 200",
		// 7: everything stopped and removed.
		"sidecar (pid " + fmt.Sprint(d.sidecar.cmd.Process.Pid) + ") stopped on SIGTERM with status 0",
		"webhook (pid " + fmt.Sprint(d.webhook.cmd.Process.Pid) + ") stopped on SIGTERM with status 0",
		"kube-apiserver and etcd stopped",
		"removed " + d.root,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	replaced := regexp.MustCompile(`replaced \(new password, 151 bytes, mode 0444\), \d+\.\ds before the old token's expiry`).FindAllString(text, -1)
	if len(replaced) != refreshes {
		t.Errorf("the output shows %d refreshes before expiry, want %d", len(replaced), refreshes)
	}
	if calls := d.srv.CallCount(fakeecr.OpGetAuthorizationToken); calls < 1+refreshes {
		t.Errorf("the endpoint saw %d GetAuthorizationToken calls, want at least %d", calls, 1+refreshes)
	}

	// Never a secret in the output.
	for name, secret := range map[string]string{
		"the newest password":   d.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2"),
		"the secret access key": fakeecr.DefaultSecretAccessKey,
	} {
		if secret == "" || strings.Contains(text, secret) {
			t.Errorf("the output contains %s (or it is empty: %q)", name, secret)
		}
	}
	// Nothing left behind.
	if _, err := os.Stat(d.root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary folder %s is still there: %v", d.root, err)
	}
	for _, c := range []*child{d.webhook, d.sidecar} {
		select {
		case <-c.done:
		default:
			t.Errorf("the %s still runs", c.name)
		}
	}
}

// TestKeepThenCtrlC runs the demo binary with --keep: after the last step
// it prints a kubeconfig that reaches the API server holding the injected
// pod, and keeps running until SIGINT, which stops everything, removes
// every temporary file and ends the demo with 0.
func TestKeepThenCtrlC(t *testing.T) {
	envtest.Require(t)
	p := startDemo(t, "--keep")
	line := p.waitLine(t, "    kubeconfig: ")
	kubeconfig := strings.TrimPrefix(line, "    kubeconfig: ")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pods := &corev1.PodList{}
	if err := c.List(t.Context(), pods, client.InNamespace("spinnaker")); err != nil {
		t.Fatalf("listing pods with the printed kubeconfig: %v", err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Annotations[webhook.AnnotationStatus] != webhook.StatusInjected {
		t.Fatalf("want one injected pod in spinnaker, got %v", pods.Items)
	}

	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status after Ctrl-C with --keep: %d, want 0\n%s", code, p.out.String())
	}
	p.assertCleanedUp(t)
}

// TestCtrlCMidway interrupts the demo during step 6: it stops everything
// it started, removes every temporary file and exits with 130.
func TestCtrlCMidway(t *testing.T) {
	envtest.Require(t)
	p := startDemo(t)
	p.waitLine(t, "==> step 6/7:")
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 130 {
		t.Errorf("exit status after Ctrl-C: %d, want 130\n%s", code, p.out.String())
	}
	for _, want := range []string{"interrupt: stopping everything the demo started", "==> step 7/7:", "kube-apiserver and etcd stopped"} {
		if !strings.Contains(p.out.String(), want) {
			t.Errorf("the output lacks %q:\n%s", want, p.out.String())
		}
	}
	p.assertCleanedUp(t)
}

// demoProcess is the demo binary running in a test.
type demoProcess struct {
	cmd    *exec.Cmd
	binary string // the ecr-token-refresh binary it runs
	tmp    string // its TMPDIR
	out    *testutil.Buffer
	lines  chan string
	done   chan error
}

// startDemo starts the demo binary with a TMPDIR of its own and args
// before the binary's path.
func startDemo(t *testing.T, args ...string) *demoProcess {
	t.Helper()
	binary, demo := binaries(t)
	p := &demoProcess{binary: binary, tmp: t.TempDir(), out: &testutil.Buffer{}, lines: make(chan string, 1000), done: make(chan error, 1)}
	p.cmd = exec.Command(demo, append(args, "--manifests", manifests, "--sidecar-health-addr", "127.0.0.1:0", binary)...)
	p.cmd.Env = append(os.Environ(), "TMPDIR="+p.tmp)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = p.out.Write([]byte(sc.Text() + "\n"))
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// waitLine returns the first output line that starts with prefix.
func (p *demoProcess) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the demo ended before printing %q:\n%s", prefix, p.out.String())
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("no line %q within 3 minutes:\n%s", prefix, p.out.String())
		}
	}
}

// wait waits for the demo to exit and returns its exit status.
func (p *demoProcess) wait(t *testing.T) int {
	t.Helper()
	go func() {
		for range p.lines { // drain, so that the output goroutine can finish
		}
	}()
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(time.Minute):
		t.Fatalf("the demo did not exit within a minute of SIGINT:\n%s", p.out.String())
	}
	return -1
}

// assertCleanedUp checks that the demo left no file in its TMPDIR and no
// process that runs its binary or uses its TMPDIR (the webhook, the
// sidecar, kube-apiserver and etcd).
func (p *demoProcess) assertCleanedUp(t *testing.T) {
	t.Helper()
	left, err := os.ReadDir(p.tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind in TMPDIR: %s", e.Name())
	}
	ps, err := exec.Command("ps", "-e", "-o", "pid=,args=").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ps), "\n") {
		if strings.Contains(line, p.tmp) || strings.Contains(line, p.binary) {
			t.Errorf("still running: %s", strings.TrimSpace(line))
		}
	}
}

// assertSteps checks that text has the lines "==> step N/n:" in order.
func assertSteps(t *testing.T, text string, n int) {
	t.Helper()
	at := 0
	for i := 1; i <= n; i++ {
		marker := fmt.Sprintf("\n==> step %d/%d: ", i, n)
		j := strings.Index(text[at:], marker)
		if j < 0 {
			t.Errorf("no progress line %q after the previous step", strings.TrimSpace(marker))
			continue
		}
		at += j + len(marker)
	}
}

func TestHealthOverride(t *testing.T) {
	for _, tt := range []struct {
		name, flag string
		free       bool
		want, why  string
	}{
		{"the pod's own when free", "", true, "", ""},
		{"a free loopback port when taken", "", false, "127.0.0.1:0", "that port is in use on this machine"},
		{"the flag first", "127.0.0.1:4000", false, "127.0.0.1:4000", "--sidecar-health-addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var asked string
			addr, why := healthOverride(tt.flag, ":3277", func(a string) bool { asked = a; return tt.free })
			if addr != tt.want || why != tt.why {
				t.Errorf("healthOverride = %q, %q; want %q, %q", addr, why, tt.want, tt.why)
			}
			if tt.flag == "" && asked != ":3277" {
				t.Errorf("checked %q, want the pod's :3277", asked)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		want    options
		wantErr string
	}{
		{args: []string{"bin/x"}, want: options{binary: "bin/x", manifests: "manifests"}},
		{args: []string{"--keep", "--manifests", "m", "--sidecar-health-addr", "127.0.0.1:0", "bin/x"},
			want: options{binary: "bin/x", manifests: "m", keep: true, healthAddr: "127.0.0.1:0"}},
		{args: nil, wantErr: "want exactly one argument"},
		{args: []string{"a", "b"}, wantErr: "want exactly one argument"},
		{args: []string{"--nope", "bin/x"}, wantErr: "flag provided but not defined: -nope"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			got, err := parseFlags(tt.args, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseFlags = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestAdded describes what a mutation added, without env values.
func TestAdded(t *testing.T) {
	before := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app"}},
		Volumes:    []corev1.Volume{{Name: "own"}},
	}}
	after := before.DeepCopy()
	after.Annotations = map[string]string{"x/status": "done"}
	after.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/v", ReadOnly: true}}
	after.Spec.InitContainers = []corev1.Container{{Name: "side", Image: "img", Args: []string{"a", "b"},
		Env: []corev1.EnvVar{{Name: "SECRET", Value: "do-not-print"}}}}
	after.Spec.Volumes = append(after.Spec.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	got := strings.Join(added(before, after), "\n")
	want := `annotation x/status: "done"
init container side
  image: img
  args: a b
  env: SECRET (values not shown)
container app: mounts v at /v (read-only)
volume v: emptyDir`
	if got != want {
		t.Errorf("added =\n%s\nwant\n%s", got, want)
	}
}

// A context that ends stops run before the next step, with its cause.
func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("stop now")
	cancel(cause)
	out := &testutil.Buffer{}
	err := run(ctx, options{binary: "does-not-matter", manifests: manifests, out: out})
	if !errors.Is(err, cause) {
		t.Errorf("run = %v, want the context's cause", err)
	}
	if strings.Contains(out.String(), "==> step 1/7") || !strings.Contains(out.String(), "==> step 7/7") {
		t.Errorf("want no step but the clean-up:\n%s", out.String())
	}
}

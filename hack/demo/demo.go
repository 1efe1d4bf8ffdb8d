package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/ecr-token-refresh/ecr-token-refresh/certs"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/apply"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/envtest"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/kubelet"
)

// steps is the number of steps, the last being the clean-up.
const steps = 7

// tokenLifetime is how long the loopback endpoint's tokens live: short,
// so that the sidecar's refresh at half the remaining lifetime comes within
// seconds (it waits at least a second between refreshes).
const tokenLifetime = 10 * time.Second

// fieldManager is the demo's server-side apply field manager.
const fieldManager = "ecr-token-refresh-demo"

// demo is one run: what it started, for the next steps and the clean-up.
type demo struct {
	options
	root       string // temporary files
	env        *ctrlenvtest.Environment
	client     client.Client
	warnings   *warnings
	kubeconfig string // the admin kubeconfig, for --keep
	webhook    *child
	srv        *fakeecr.Server
	pod        *corev1.Pod // the created, injected pod
	configMaps []*corev1.ConfigMap
	kubelet    *kubelet.Pod
	sidecar    *child
	sidecarLog *records
	health     string         // the sidecar's health server, host:port
	files      []passwordFile // the sidecar's password files
}

// run runs the demo with options o.
func run(ctx context.Context, o options) error {
	return newDemo(o).run(ctx)
}

func newDemo(o options) *demo {
	return &demo{options: o, warnings: &warnings{}, sidecarLog: newRecords()}
}

// run runs the steps in order, and the clean-up (the last step) whatever
// happened; it returns the first failure, or the context's cause if it
// ended.
func (d *demo) run(ctx context.Context) (err error) {
	defer func() { err = errors.Join(err, d.stop()) }()
	for i, s := range []struct {
		title string
		do    func(context.Context) error
	}{
		{"the binary and the local control plane", d.checkBinaries},
		{"start kube-apiserver, etcd and the webhook; apply the manifests' RBAC and MutatingWebhookConfiguration", d.startCluster},
		{"start the loopback ECR endpoint", d.startEndpoint},
		{"apply the example Clouddriver ConfigMap and create its pod through the API server", d.createPod},
		{"play kubelet: run the injected sidecar with the pod's volumes as folders", d.runSidecar},
		{"watch a refresh while a reader reads the password file", d.watchRefresh},
	} {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		d.printf("\n==> step %d/%d: %s\n", i+1, steps, s.title)
		if err := s.do(ctx); err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return fmt.Errorf("step %d/%d (%s): %w", i+1, steps, s.title, err)
		}
	}
	if d.keep {
		d.keepRunning(ctx)
	}
	return nil
}

// printf writes a line of the demo's output.
func (d *demo) printf(format string, args ...any) {
	fmt.Fprintf(d.out, format, args...)
}

// checkBinaries is step 1: the binary runs, the control plane's binaries
// are there (make demo builds them once), and a temporary folder.
func (d *demo) checkBinaries(ctx context.Context) error {
	version, err := exec.CommandContext(ctx, d.binary, "version").Output()
	if err != nil {
		return fmt.Errorf("%s version: %w (build it with make build)", d.binary, err)
	}
	d.printf("    %s: version %s\n", d.binary, strings.TrimSpace(string(version)))
	dir := envtest.AssetsDir()
	if err := envtest.Check(dir); err != nil {
		return err
	}
	var versions []string
	for _, bin := range envtest.Binaries {
		out, err := exec.CommandContext(ctx, filepath.Join(dir, bin), "--version").Output()
		if err != nil {
			return fmt.Errorf("%s --version: %w (rebuild it: rm %s; make demo)", bin, err, filepath.Join(dir, bin))
		}
		first, _, _ := strings.Cut(string(out), "\n")
		fields := strings.Fields(first)
		versions = append(versions, bin+" "+fields[len(fields)-1])
	}
	d.printf("    %s: %s (built from the Go module proxy the first time, reused since)\n", dir, strings.Join(versions, ", "))
	if _, err := os.Stat(filepath.Join(d.manifests, "base", "kustomization.yaml")); err != nil {
		return fmt.Errorf("no manifests in %s: run the demo from the repository root (make demo) or pass --manifests: %w", d.manifests, err)
	}
	if d.root, err = os.MkdirTemp("", "ecr-token-refresh-demo-"); err != nil {
		return err
	}
	d.printf("    temporary files: %s (removed at the end)\n", d.root)
	return os.Mkdir(filepath.Join(d.root, "logs"), 0o755)
}

// startCluster is step 2: kube-apiserver and etcd with their files under
// the temporary folder, the manifests' RBAC and webhook configuration
// (pointed at a local URL), and the webhook process running as the
// manifests' ServiceAccount, so that only their RBAC lets it work.
func (d *demo) startCluster(ctx context.Context) error {
	start := time.Now()
	env := &ctrlenvtest.Environment{ControlPlane: ctrlenvtest.ControlPlane{
		APIServer: &ctrlenvtest.APIServer{CertDir: filepath.Join(d.root, "kube-apiserver")},
		Etcd:      &ctrlenvtest.Etcd{DataDir: filepath.Join(d.root, "etcd")},
	}}
	for _, dir := range []string{env.ControlPlane.APIServer.CertDir, env.ControlPlane.Etcd.DataDir} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
	}
	if err := envtest.Run(env); err != nil {
		return err
	}
	d.env = env
	d.printf("    kube-apiserver %s and etcd up in %.1fs\n", env.Config.Host, time.Since(start).Seconds())

	admin, err := env.AddUser(ctrlenvtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	if d.kubeconfig, err = writeKubeconfig(admin, filepath.Join(d.root, "kubeconfig")); err != nil {
		return err
	}
	cfg := rest.CopyConfig(admin.Config())
	cfg.WarningHandler = d.warnings
	if d.client, err = client.New(cfg, client.Options{}); err != nil {
		return err
	}

	_, objs, err := apply.Build(filepath.Join(d.manifests, "base"))
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	webhookURL := "https://127.0.0.1:" + port
	var applied []*unstructured.Unstructured
	var names, skipped []string
	var sa *unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			sa = o
			fallthrough
		case "Namespace", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
			applied = append(applied, o)
		case "MutatingWebhookConfiguration":
			o = o.DeepCopy()
			if err := apply.WebhookURL(o, webhookURL); err != nil {
				return err
			}
			applied = append(applied, o)
		default:
			skipped = append(skipped, o.GetKind()+" "+o.GetName())
			continue
		}
		names = append(names, o.GetKind()+" "+o.GetName())
	}
	if sa == nil {
		return fmt.Errorf("%s/base has no ServiceAccount for the webhook", d.manifests)
	}
	if err := apply.Objects(ctx, d.client, fieldManager, applied...); err != nil {
		return err
	}
	d.printf("    applied %s/base as kubectl apply -k --server-side would: %s\n", d.manifests, strings.Join(names, ", "))
	d.printf("    the MutatingWebhookConfiguration's service reference now reads url: %s/mutate-v1-pod\n", webhookURL)
	d.printf("    not applied: %s (the webhook runs as a local process instead)\n", strings.Join(skipped, ", "))

	// The webhook authenticates as the manifests' ServiceAccount (a client
	// certificate with its user name and groups), so it has only the
	// permissions the manifests' RBAC grants.
	ns := sa.GetNamespace()
	identity := "system:serviceaccount:" + ns + ":" + sa.GetName()
	user, err := env.AddUser(ctrlenvtest.User{Name: identity, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}}, nil)
	if err != nil {
		return err
	}
	webhookKubeconfig, err := writeKubeconfig(user, filepath.Join(d.root, "webhook.kubeconfig"))
	if err != nil {
		return err
	}
	health, err := freePort()
	if err != nil {
		return err
	}
	metrics, err := freePort()
	if err != nil {
		return err
	}
	args := []string{"webhook", "--self-managed-certs", "--cert-host", "127.0.0.1", "--kubeconfig", webhookKubeconfig,
		"--port", port, "--health-probe-bind-address", "127.0.0.1:" + health, "--metrics-bind-address", "127.0.0.1:" + metrics,
		"--shutdown-drain", "0"} // nothing routes to it but this API server
	cmd := exec.Command(d.binary, args...)
	cmd.Env = append(os.Environ(), certs.NamespaceEnv+"="+ns)
	start = time.Now()
	if d.webhook, err = startChild("webhook", cmd, filepath.Join(d.root, "logs", "webhook.log"), nil); err != nil {
		return err
	}
	d.printf("    webhook (pid %d, as %s): %s=%s ecr-token-refresh %s\n", cmd.Process.Pid, identity, certs.NamespaceEnv, ns, strings.Join(args, " "))
	if err := waitFor(ctx, time.Minute, "the webhook's /readyz", d.webhook, func() (bool, error) {
		code, _, err := get("http://127.0.0.1:" + health + "/readyz")
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		return err
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := waitFor(ctx, 30*time.Second, "the caBundle of MutatingWebhookConfiguration "+certs.WebhookConfigName, d.webhook, func() (bool, error) {
		if err := d.client.Get(ctx, client.ObjectKey{Name: certs.WebhookConfigName}, mwc); err != nil {
			return false, err
		}
		return len(mwc.Webhooks) > 0 && len(mwc.Webhooks[0].ClientConfig.CABundle) > 0, nil
	}); err != nil {
		return err
	}
	secret := &corev1.Secret{}
	if err := d.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: certs.SecretName}, secret); err != nil {
		return fmt.Errorf("the webhook is ready but its Secret is not there: %w", err)
	}
	ca, err := firstCertificate(mwc.Webhooks[0].ClientConfig.CABundle)
	if err != nil {
		return fmt.Errorf("caBundle: %w", err)
	}
	d.printf("    ready in %.1fs: it created Secret %s/%s (a CA and a serving certificate that includes 127.0.0.1)\n", time.Since(start).Seconds(), ns, certs.SecretName)
	d.printf("    and put its CA (%s, valid until %s) into the caBundle of MutatingWebhookConfiguration %s\n",
		ca.Subject.CommonName, ca.NotAfter.Format(time.DateOnly), certs.WebhookConfigName)
	return nil
}

// startEndpoint is step 3: the loopback ECR and STS endpoint.
func (d *demo) startEndpoint(context.Context) error {
	d.srv = fakeecr.New()
	d.srv.SetTokenLifetime(tokenLifetime)
	d.printf("    ECR- and STS-compatible endpoint on %s: it checks SigV4 signatures, issues tokens, records calls\n", d.srv.URL())
	d.printf("    its tokens live %s instead of ECR's 12h, so that step 6 sees refreshes within seconds\n", tokenLifetime)
	return nil
}

// keepRunning leaves everything running until ctx ends (Ctrl-C).
func (d *demo) keepRunning(ctx context.Context) {
	d.printf("\n==> kept running (--keep); Ctrl-C stops everything and removes the temporary files\n")
	d.printf("    kubeconfig: %s\n", d.kubeconfig)
	d.printf("    kubectl --kubeconfig %s get pods -A\n", d.kubeconfig)
	d.printf("    kubectl --kubeconfig %s -n %s get pod %s -o yaml\n", d.kubeconfig, d.pod.Namespace, d.pod.Name)
	d.printf("    sidecar: http://%s/readyz and /metrics; password files under %s\n", d.health, filepath.Dir(d.files[0].host))
	<-ctx.Done()
}

// stop is the last step: it stops what the demo started, newest first, and
// removes the temporary files.
func (d *demo) stop() error {
	d.printf("\n==> step %d/%d: stop everything and remove the temporary files\n", steps, steps)
	var errs []error
	for _, c := range []struct {
		child *child
		grace time.Duration
	}{{d.sidecar, 5 * time.Second}, {d.webhook, 15 * time.Second}} {
		if c.child == nil {
			continue
		}
		if err := c.child.stop(c.grace); err != nil {
			errs = append(errs, err)
			d.printf("    %s (pid %d): %v\n", c.child.name, c.child.cmd.Process.Pid, err)
			continue
		}
		d.printf("    %s (pid %d) stopped on SIGTERM with status 0\n", c.child.name, c.child.cmd.Process.Pid)
	}
	if d.srv != nil {
		d.srv.Close()
		d.printf("    loopback ECR endpoint closed after %d GetAuthorizationToken calls\n", d.srv.CallCount(fakeecr.OpGetAuthorizationToken))
	}
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping kube-apiserver and etcd: %w", err))
		} else {
			d.printf("    kube-apiserver and etcd stopped\n")
		}
	}
	if d.root != "" {
		if err := os.RemoveAll(d.root); err != nil {
			errs = append(errs, err)
		} else {
			d.printf("    removed %s\n", d.root)
		}
	}
	if len(errs) == 0 {
		d.printf("    done\n")
	}
	return errors.Join(errs...)
}

// writeKubeconfig writes user's kubeconfig to path, readable by the owner
// only, and returns path.
func writeKubeconfig(user *ctrlenvtest.AuthenticatedUser, path string) (string, error) {
	data, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, data, 0o600)
}

// firstCertificate parses the first certificate of a PEM bundle.
func firstCertificate(bundle []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(bundle)
	if block == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// get GETs url and returns the status and body.
func get(url string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitFor checks cond every 50ms until it holds, and fails when cond
// fails, timeout passes, ctx ends or c (if not nil) exits.
func waitFor(ctx context.Context, timeout time.Duration, what string, c *child, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if c != nil {
			if err := c.exited(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		select {
		case <-ctx.Done():
			if context.Cause(ctx) == context.DeadlineExceeded {
				err := fmt.Errorf("%s: not within %s", what, timeout)
				if c != nil {
					err = fmt.Errorf("%w; the %s's log:\n%s", err, c.name, c.logTail(20))
				}
				return err
			}
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// warnings collects the API server's warnings (such as admission
// warnings) for the demo to print.
type warnings struct {
	mu   sync.Mutex
	list []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warnings) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// take returns the warnings so far and forgets them.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

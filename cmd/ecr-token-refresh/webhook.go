package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/ecr-token-refresh/ecr-token-refresh/certs"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// webhookFlags are the webhook command's flags.
type webhookFlags struct {
	port         int
	certDir      string
	sidecarImage string
	healthAddr   string
	metricsAddr  string
	enableHTTP2  bool
	selfManaged  bool
	certHosts    certHosts
}

// certHosts collects the repeatable --cert-host flag.
type certHosts []string

// String implements flag.Value.
func (h *certHosts) String() string { return strings.Join(*h, ",") }

// Set implements flag.Value.
func (h *certHosts) Set(v string) error {
	if v == "" {
		return errors.New("empty host: give a DNS name or an IP address")
	}
	*h = append(*h, v)
	return nil
}

// parseWebhookFlags parses the webhook command's arguments; usage and flag
// errors go to stderr.
func parseWebhookFlags(args []string, stderr io.Writer) (webhookFlags, error) {
	var f webhookFlags
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: ecr-token-refresh webhook [flags]\n\n"+
			"Serve the mutating admission webhook that injects the sidecar into pods\n"+
			"annotated ecr-token-refresh.io/inject: \"true\", at "+webhook.Path+".\n"+
			"The kubeconfig is --kubeconfig, else $KUBECONFIG, else the in-cluster config, else ~/.kube/config.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&f.port, "port", crwebhook.DefaultPort, "HTTPS `port` of the webhook server")
	fs.StringVar(&f.certDir, "cert-dir", filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		"`directory` holding tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&f.sidecarImage, "sidecar-image", defaultImage+":"+version, "`image` of the injected sidecar")
	fs.StringVar(&f.healthAddr, "health-probe-bind-address", ":8081", "`address` serving /healthz and /readyz")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "`address` serving /metrics; \"0\" disables it")
	fs.BoolVar(&f.selfManaged, "self-managed-certs", false,
		"create and rotate the CA and serving certificate in Secret "+certs.SecretName+" and the caBundle of MutatingWebhookConfiguration "+
			certs.WebhookConfigName+" (one replica writes, elected on Lease "+certs.LeaseName+"; namespace from $"+certs.NamespaceEnv+"); --cert-dir is then unused")
	fs.Var(&f.certHosts, "cert-host", "with --self-managed-certs, a further DNS name or IP `address` in the serving certificate, for an API server that calls the webhook by URL (repeatable)")
	fs.BoolVar(&f.enableHTTP2, "enable-http2", false, "serve the webhook over HTTP/2 too (off: HTTP/1.1 only)")
	config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return f, fmt.Errorf("%w: %w", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case f.port < 1 || f.port > 65535:
		return f, fmt.Errorf("%w: --port: %d is not a TCP port (expected 1 to 65535)", errUsage, f.port)
	case f.sidecarImage == "":
		return f, fmt.Errorf("%w: --sidecar-image: required", errUsage)
	case len(f.certHosts) > 0 && !f.selfManaged:
		return f, fmt.Errorf("%w: --cert-host applies to --self-managed-certs only; with --cert-dir put the host in your certificate", errUsage)
	}
	return f, nil
}

// runWebhook runs the webhook command until ctx is done: a controller-runtime
// manager with the webhook server, the health probes and the metrics server.
func runWebhook(ctx context.Context, args []string) error {
	f, err := parseWebhookFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}

	logger := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil))
	ctrllog.SetLogger(logger)
	klog.SetLogger(logger)

	cfg, err := config.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}
	if !f.enableHTTP2 {
		// HTTP/2 stays off by default: its rapid-reset and stream
		// exhaustion attacks (CVE-2023-44487, CVE-2023-39325) hit servers
		// reachable from the API server.
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	opts := manager.Options{
		Logger:                 logger,
		Metrics:                metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress: f.healthAddr,
	}
	var cm *certs.Manager
	if f.selfManaged {
		if cm, err = certs.New(certs.Options{ExtraHosts: f.certHosts}); err != nil {
			return err
		}
		tlsOpts = append(tlsOpts, cm.TLSOpt)
		opts.LeaderElection = true
		opts.LeaderElectionID = certs.LeaseName
		opts.LeaderElectionNamespace = cm.Namespace()
		opts.LeaderElectionResourceLock = "leases"
		opts.LeaderElectionReleaseOnCancel = true // the process exits right after Start returns
	}
	opts.WebhookServer = crwebhook.NewServer(crwebhook.Options{Port: f.port, CertDir: f.certDir, TLSOpts: tlsOpts})
	mgr, err := manager.New(cfg, opts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	if err := webhook.Register(mgr.GetWebhookServer(), webhook.Options{SidecarImage: f.sidecarImage}); err != nil {
		return err
	}
	if cm != nil {
		if err := cm.SetupWithManager(mgr); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("certificate", cm.ReadyCheck); err != nil {
			return err
		}
	}
	logger.Info("starting the webhook", "version", version, "port", f.port, "selfManagedCerts", f.selfManaged, "certDir", f.certDir, "sidecarImage", f.sidecarImage)
	return mgr.Start(ctx)
}

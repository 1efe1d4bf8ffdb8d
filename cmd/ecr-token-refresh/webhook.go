package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

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
	certHosts    []string
	kubeconfig   string
	drain        time.Duration
}

// defaultWebhookPort is the webhook's HTTPS port, as the Service targets it.
const defaultWebhookPort = 9443

// shutdownTimeout bounds the wait for admissions in flight once the
// drain is over; the API server gives a webhook call 10 s by default.
const shutdownTimeout = 15 * time.Second

// defaultDrain is how long the webhook keeps serving after SIGTERM.
const defaultDrain = 5 * time.Second

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
			"With --self-managed-certs it talks to the API server; with --cert-dir it needs no API access.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&f.port, "port", defaultWebhookPort, "HTTPS `port` of the webhook server")
	fs.StringVar(&f.certDir, "cert-dir", filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		"`directory` holding tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&f.sidecarImage, "sidecar-image", defaultImage+":"+version, "`image` of the injected sidecar")
	fs.StringVar(&f.healthAddr, "health-probe-bind-address", ":8081", "`address` serving /healthz and /readyz")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "`address` serving /metrics; \"0\" disables it")
	fs.BoolVar(&f.selfManaged, "self-managed-certs", false,
		"create and rotate the CA and serving certificate in Secret "+certs.SecretName+" and the caBundle of MutatingWebhookConfiguration "+
			certs.WebhookConfigName+" (one replica writes, elected on Lease "+certs.LeaseName+"; namespace from $"+certs.NamespaceEnv+"); --cert-dir is then unused")
	fs.Func("cert-host", "with --self-managed-certs, a further DNS name or IP `address` in the serving certificate, for an API server that calls the webhook by URL (repeatable)", func(v string) error {
		if v == "" {
			return errors.New("empty host: give a DNS name or an IP address")
		}
		f.certHosts = append(f.certHosts, v)
		return nil
	})
	fs.DurationVar(&f.drain, "shutdown-drain", defaultDrain, "after SIGTERM, keep answering for this `duration`, not ready and closing each connection after its answer, while Kubernetes stops routing to the pod; then finish the admissions in flight and exit")
	fs.BoolVar(&f.enableHTTP2, "enable-http2", false, "serve the webhook over HTTP/2 too (off: HTTP/1.1 only)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file` for --self-managed-certs (default: $KUBECONFIG, else the in-cluster config, else ~/.kube/config)")
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
	case f.drain < 0:
		return f, fmt.Errorf("%w: --shutdown-drain: %s is negative (expected e.g. 5s, or 0 to stop at once)", errUsage, f.drain)
	case len(f.certHosts) > 0 && !f.selfManaged:
		return f, fmt.Errorf("%w: --cert-host applies to --self-managed-certs only; with --cert-dir put the host in your certificate", errUsage)
	}
	return f, nil
}

// runWebhook runs the webhook command until ctx is done: the webhook's
// HTTPS server, the health probes and the metrics server, and with
// --self-managed-certs the certificate manager. On ctx done the servers
// stop taking connections and finish the admissions in flight.
func runWebhook(ctx context.Context, args []string) error {
	f, err := parseWebhookFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}

	logger := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil))
	klog.SetLogger(logger)
	tuneGC(os.Getenv)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h, err := webhook.NewHandler(webhook.Options{SidecarImage: f.sidecarImage, Registerer: reg, Logger: logger.WithName("webhook")})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		certReady      = func() error { return nil }
		certsDone      chan error // the certificate manager's end; nil without one
	)
	if f.selfManaged {
		cm, err := certs.New(certs.Options{ExtraHosts: f.certHosts})
		if err != nil {
			return err
		}
		cfg, err := loadKubeconfig(f.kubeconfig)
		if err != nil {
			return err
		}
		cfg.UserAgent = "ecr-token-refresh/" + version
		getCertificate, certReady = cm.GetCertificate, cm.ReadyCheck
		certsDone = make(chan error, 1)
		go func() { certsDone <- cm.Start(ctx, cfg, logger) }()
	} else {
		files, err := certs.LoadFiles(f.certDir, logger)
		if err != nil {
			return err
		}
		if err := files.Watch(ctx); err != nil {
			return err
		}
		getCertificate = files.GetCertificate
	}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCertificate, NextProtos: []string{"h2", "http/1.1"}}
	if !f.enableHTTP2 {
		// HTTP/2 stays off by default: its rapid-reset and stream
		// exhaustion attacks (CVE-2023-44487, CVE-2023-39325) hit servers
		// reachable from the API server.
		tlsConfig.NextProtos = []string{"http/1.1"}
	}
	// draining is set from SIGTERM on: answers close their connection, so
	// that no request waits on a kept-alive connection that the shutdown
	// would close under it.
	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.Handle(webhook.Path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	}))
	servers := []*server{{name: "webhook", addr: fmt.Sprintf(":%d", f.port), handler: mux, tls: tlsConfig}}

	var serving atomic.Bool
	if f.healthAddr != "0" {
		health := http.NewServeMux()
		health.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
		health.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			err := certReady()
			if err == nil && !serving.Load() {
				err = errors.New("the webhook server is not serving (starting, or shutting down)")
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok")
		})
		servers = append(servers, &server{name: "health probes", addr: f.healthAddr, handler: health})
	}
	if f.metricsAddr != "0" {
		metrics := http.NewServeMux()
		metrics.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		servers = append(servers, &server{name: "metrics", addr: f.metricsAddr, handler: metrics})
	}
	for _, s := range servers {
		if err := s.listen(); err != nil {
			for _, l := range servers {
				l.close()
			}
			return err
		}
	}
	logger.Info("starting the webhook", "version", version, "port", f.port, "selfManagedCerts", f.selfManaged, "certDir", f.certDir, "sidecarImage", f.sidecarImage)

	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errs <- s.serve(logger) }()
	}
	serving.Store(true)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	case first = <-certsDone:
		certsDone = nil // ended: nothing more to wait for
	}
	serving.Store(false)
	if first == nil && f.drain > 0 {
		logger.Info("draining: answering without keep-alive, not ready", "for", f.drain.String())
		draining.Store(true)
		t := time.NewTimer(f.drain)
		select {
		case <-t.C:
		case first = <-errs:
		}
		t.Stop()
	}
	logger.Info("shutting down: finishing the admissions in flight", "timeout", shutdownTimeout.String())
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer done()
	for _, s := range servers {
		if err := s.srv.Shutdown(shutdownCtx); err != nil && first == nil {
			first = fmt.Errorf("%s server: %w", s.name, err)
		}
	}
	cancel()
	if certsDone != nil {
		if err := <-certsDone; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// The webhook's garbage collector settings, unless GOGC and GOMEMLIMIT say
// otherwise. An admission allocates some 30 KiB and keeps none of it, over
// a live heap of a few MiB: collecting at every doubling (GOGC=100) spent a
// sixth of the webhook's CPU under load. It collects at five times the live
// heap instead, and from a soft limit of 24 MiB on, which keeps the
// resident memory near 35 MiB (the Deployment's limit is 128Mi).
const (
	webhookGCPercent   = 400
	webhookMemoryLimit = 24 << 20
)

// tuneGC applies the webhook's garbage collector settings where getenv
// finds no GOGC or GOMEMLIMIT of the operator's.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(webhookGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(webhookMemoryLimit)
	}
}

// server is one of the webhook command's HTTP servers.
type server struct {
	name, addr string
	handler    http.Handler
	tls        *tls.Config // nil: plain HTTP
	ln         net.Listener
	srv        *http.Server
}

// listen binds the server's address, so that a busy port fails the start.
func (s *server) listen() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("%s server: %w", s.name, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second}
	if s.tls != nil {
		s.srv.TLSConfig = s.tls
		if !slices.Contains(s.tls.NextProtos, "h2") {
			s.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}
		s.ln = tls.NewListener(ln, s.tls)
	}
	return nil
}

// serve serves until shutdown; it returns nil after a shutdown.
func (s *server) serve(log logr.Logger) error {
	log.Info("serving", "server", s.name, "addr", s.ln.Addr().String())
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", s.name, err)
	}
	return nil
}

// close releases a bound address that never served.
func (s *server) close() {
	if s.ln != nil {
		_ = s.ln.Close()
	}
}

// loadKubeconfig returns the API server's config: from path, else
// $KUBECONFIG, else the in-cluster config, else ~/.kube/config.
func loadKubeconfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	switch {
	case path != "":
		rules.ExplicitPath = path
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "":
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w (--self-managed-certs needs the API server: run in a pod, or give --kubeconfig)", err)
	}
	return cfg, nil
}

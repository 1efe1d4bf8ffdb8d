package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ecr-token-refresh/ecr-token-refresh/refresher"
)

// envPrefix prefixes the environment variable that stands in for each
// sidecar flag: --health-addr is ECR_TOKEN_REFRESH_HEALTH_ADDR.
const envPrefix = "ECR_TOKEN_REFRESH_"

// sidecarFlags are the sidecar's command-line settings.
type sidecarFlags struct {
	config     string
	registries stringList
	interval   string
	roleARN    string
	once       bool
	healthAddr string
}

// stringList is a repeatable flag; its environment form is a comma- or
// space-separated list.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })...)
	return nil
}

func parseSidecarFlags(args []string, stderr io.Writer) (*sidecarFlags, error) {
	f := &sidecarFlags{}
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", refresher.DefaultConfigPath, "config file (YAML); re-read when it changes")
	fs.Var(&f.registries, "registry", "HOST=FILE: keep FILE fresh for the registry HOST, instead of a config file (repeatable)")
	fs.StringVar(&f.interval, "interval", "", "refresh interval for --registry registries (default 30m)")
	fs.StringVar(&f.roleARN, "role-arn", "", "IAM role to assume for --registry registries")
	fs.BoolVar(&f.once, "once", false, "refresh every registry once and exit: 0 on success, 1 naming each failure")
	fs.StringVar(&f.healthAddr, "health-addr", refresher.DefaultHealthAddr, "address of /healthz, /readyz, /health and /metrics")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ecr-token-refresh sidecar [flags]\n\nEvery flag can also be set as %s<FLAG> (e.g. %sREGISTRY).\n\n", envPrefix, envPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var errs []error
	fs.VisitAll(func(fl *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && !set[fl.Name] {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: %v", errUsage, name, err))
			}
			set[fl.Name] = true
		}
	})
	if len(f.registries) > 0 && set["config"] {
		errs = append(errs, fmt.Errorf("%w: --config and --registry exclude each other: list the registries in the config file or in flags, not both", errUsage))
	}
	if len(f.registries) == 0 && (set["interval"] || set["role-arn"]) {
		errs = append(errs, fmt.Errorf("%w: --interval and --role-arn apply to --registry registries; with a config file set interval and roleArn in it", errUsage))
	}
	return f, errors.Join(errs...)
}

// load returns the config from flags or from the config file.
func (f *sidecarFlags) load() (*refresher.Config, error) {
	if len(f.registries) > 0 {
		return refresher.FromSpecs(f.registries, f.interval, f.roleARN)
	}
	return refresher.LoadFile(f.config)
}

// runSidecar is the sidecar command: validate the config, then refresh
// once (--once) or until SIGTERM.
func runSidecar(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseSidecarFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := f.load()
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	ecr, err := refresher.NewECR(ctx)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := refresher.NewMetrics(reg)
	// Between refreshes the sidecar sleeps for minutes: it returns the
	// memory a refresh freed (decoding, file writes) to the OS at once
	// rather than over the next minutes, for a smaller resident set.
	r := refresher.New(ecr, refresher.Options{Logger: log, Metrics: metrics, Idle: debug.FreeOSMemory})

	if f.once {
		return r.RunOnce(ctx, cfg)
	}

	ln, err := net.Listen("tcp", f.healthAddr)
	if err != nil {
		return fmt.Errorf("%w: --health-addr: %v", errUsage, err)
	}
	srv := &http.Server{Handler: r.Handler(reg), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server stopped", "error", err.Error())
		}
	}()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	var updates <-chan *refresher.Config
	if len(f.registries) == 0 {
		if updates, err = refresher.Watch(ctx, f.config, log, metrics); err != nil {
			log.Error("cannot watch the config file; changes need a restart", "path", f.config, "error", err.Error())
		}
	}
	log.Info("starting", "version", version, "registries", len(cfg.Registries), "interval", cfg.Interval.String(), "healthAddr", ln.Addr().String())
	err = r.Run(ctx, cfg, updates)
	log.Info("stopping")
	return err
}

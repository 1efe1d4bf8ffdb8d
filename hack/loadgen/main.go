// Command loadgen replays pod admissions against a mutating webhook as the
// Kubernetes API server sends them, checks every answer and prints the
// throughput and latency; or serves the ceiling, a bare HTTPS server that
// answers a fixed AdmissionReview, to compare with:
//
//	go run ./hack/loadgen run --url https://127.0.0.1:9443/mutate-v1-pod --ca bin/certs/ca.crt \
//	  --server-name ecr-token-refresh.ecr-token-refresh.svc --pod webhook/testdata/clouddriver.in.yaml --conns 32 --requests 20000
//	go run ./hack/loadgen ceiling --cert-dir bin/certs --addr 127.0.0.1:9444 [--answer answer.json]
//
// run exits 1 if any request got no answer or a wrong one. ceiling prints
// "serving on ADDR" on standard error once it listens, and serves until
// interrupted.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"sigs.k8s.io/yaml"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// errUsage marks errors in the command line.
var errUsage = errors.New("usage")

const usage = "usage: loadgen run|ceiling [flags] (see loadgen run -h, loadgen ceiling -h)"

// run runs the command that args name until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	switch args[0] {
	case "run":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "ceiling":
		return serveCeiling(ctx, args[1:], stderr)
	default:
		return fmt.Errorf("%w: unknown command %q; %s", errUsage, args[0], usage)
	}
}

// files is a repeatable flag.
type files []string

func (f *files) String() string { return strings.Join(*f, ",") }

func (f *files) Set(v string) error {
	if v == "" {
		return errors.New("empty file name")
	}
	*f = append(*f, v)
	return nil
}

// parse parses args into fs; errors are usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// runLoad sends the load and prints its result.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts loadgen.Options
	var caFile string
	var patched, unchanged files
	fs.StringVar(&opts.URL, "url", "", "the webhook's https `URL`, path included (required)")
	fs.StringVar(&caFile, "ca", "", "PEM `file` with the caBundle the server's certificate must verify against (default: the system's roots)")
	fs.StringVar(&opts.ServerName, "server-name", "", "`name` the server's certificate must hold (default: the URL's host)")
	fs.Var(&patched, "pod", "YAML or JSON `file` of a pod whose answer must carry a patch that applies (repeatable)")
	fs.Var(&unchanged, "pod-unchanged", "YAML or JSON `file` of a pod whose answer must carry no patch (repeatable)")
	fs.IntVar(&opts.Conns, "conns", 1, "`number` of connections, each carrying one request at a time")
	fs.IntVar(&opts.Requests, "requests", 0, "stop after this `number` of requests (0: no limit)")
	fs.DurationVar(&opts.Duration, "duration", 0, "stop after this `duration` (0: no limit)")
	fs.IntVar(&opts.RequestsPerConn, "new-conn-every", 0, "open a new connection after this `number` of requests on one (0: keep connections open)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case opts.URL == "":
		return fmt.Errorf("%w: --url is required", errUsage)
	case len(patched)+len(unchanged) == 0:
		return fmt.Errorf("%w: give at least one --pod or --pod-unchanged", errUsage)
	case opts.Requests == 0 && opts.Duration == 0:
		return fmt.Errorf("%w: give --requests or --duration", errUsage)
	case opts.Conns < 1:
		return fmt.Errorf("%w: --conns must be at least 1", errUsage)
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		opts.RootCAs = x509.NewCertPool()
		if !opts.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca: %s holds no PEM certificate", caFile)
		}
	}
	for _, p := range []struct {
		files     files
		wantPatch bool
	}{{patched, true}, {unchanged, false}} {
		for _, name := range p.files {
			data, err := os.ReadFile(name)
			if err != nil {
				return err
			}
			pod, err := yaml.YAMLToJSON(data)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			opts.Pods = append(opts.Pods, loadgen.Pod{Object: pod, WantPatch: p.wantPatch})
		}
	}
	res, err := loadgen.Run(ctx, opts)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	fmt.Fprintln(stdout, res)
	if res.Errors+res.Wrong > 0 {
		return fmt.Errorf("%d requests without an answer and %d wrong answers; the first: %w", res.Errors, res.Wrong, res.FirstError)
	}
	return nil
}

// serveCeiling serves the ceiling until ctx is done.
func serveCeiling(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen ceiling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	certDir := fs.String("cert-dir", "", "`directory` holding tls.crt and tls.key (required)")
	addr := fs.String("addr", "127.0.0.1:9444", "`address` to listen on; port 0 picks a free one")
	answerFile := fs.String("answer", "", "JSON `file` with the AdmissionReview to answer, its response.uid replaced by the request's (default: allowed, no patch)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *certDir == "" {
		return fmt.Errorf("%w: --cert-dir is required", errUsage)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(*certDir, "tls.crt"), filepath.Join(*certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("--cert-dir: %w", err)
	}
	answer := []byte(loadgen.DefaultAnswer)
	if *answerFile != "" {
		if answer, err = os.ReadFile(*answerFile); err != nil {
			return fmt.Errorf("--answer: %w", err)
		}
	}
	h, err := loadgen.NewCeiling(answer)
	if err != nil {
		return fmt.Errorf("--answer: %w", err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	srv := loadgen.NewServer(h, cert)
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	fmt.Fprintln(stderr, "serving on", l.Addr())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return srv.Close()
	}
}

// Command demo runs the whole job end to end on this machine, with no
// cluster and no AWS account: a real kube-apiserver and etcd, the webhook
// (with its self-managed certificates) behind the project's own
// MutatingWebhookConfiguration and RBAC, a loopback ECR endpoint, the
// example Clouddriver pod created through the API server and injected, and
// its sidecar run as a kubelet would run it, refreshing short-lived tokens
// while a reader reads the password file. It prints one line per step
// ("==> step N/7: ...") and never a password. Run it with make demo.
//
// Usage:
//
//	demo [--keep] [--manifests DIR] [--sidecar-health-addr ADDR] PATH-TO-ecr-token-refresh
//
// Exit status: 0 if every step worked, 1 if one failed, 2 for bad usage,
// 128+N when stopped by signal N (Ctrl-C: 130) before the end. With
// --keep, everything stays up after step 6 until Ctrl-C, which then ends
// the demo with 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// options are the demo's settings.
type options struct {
	binary     string // the built ecr-token-refresh
	manifests  string // the repository's manifests folder
	keep       bool   // leave everything running after step 6 until ctx ends
	healthAddr string // the sidecar's health address; "" means the pod's own if free
	out        io.Writer
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	o.out = os.Stdout
	ctrllog.SetLogger(logr.Discard()) // envtest's own logging; the demo reports instead

	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stdout, "\n%s: stopping everything the demo started\n", sig)
		cancel(interrupted{sig.(syscall.Signal)})
		for range signals {
			fmt.Fprintln(os.Stdout, "still stopping; it takes a few seconds")
		}
	}()

	err = run(ctx, o)
	var sig interrupted
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(context.Cause(ctx), &sig):
		fmt.Fprintln(os.Stderr, "demo: interrupted:", err)
		os.Exit(128 + int(sig.Signal))
	default:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// interrupted is the cause of the demo's context ending on a signal.
type interrupted struct{ syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.Signal.String() }

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: demo [flags] PATH-TO-ecr-token-refresh\n\n"+
			"Runs the webhook and the sidecar end to end against a local kube-apiserver and etcd\n"+
			"and a loopback ECR endpoint (make demo). Flags:\n")
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.keep, "keep", false, "leave everything running after the last step, with the kubeconfig printed, until Ctrl-C")
	fs.StringVar(&o.manifests, "manifests", "manifests", "the repository's manifests `folder`")
	fs.StringVar(&o.healthAddr, "sidecar-health-addr", "",
		"`address` of the sidecar's health server, set with ECR_TOKEN_REFRESH_HEALTH_ADDR (default: the pod's own :3277 if free, else a free loopback port)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return o, errors.New("want exactly one argument: the path of the built ecr-token-refresh binary")
	}
	o.binary = fs.Arg(0)
	return o, nil
}

// Command ecr-token-refresh keeps Amazon ECR registry passwords fresh in
// files inside Kubernetes pods. One binary, two modes:
//
//	ecr-token-refresh sidecar   refresh passwords into files (runs in the pod)
//	ecr-token-refresh webhook   inject the sidecar into annotated pods
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped by the build (-X main.version=…).
var version = "dev"

// defaultImage is the image the Dockerfile builds and the webhook injects.
const defaultImage = "ghcr.io/ecr-token-refresh/ecr-token-refresh"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the job failed (e.g. --once could not refresh)
	exitUsage   = 2 // bad flags or config: nothing was done
)

// errUsage marks errors that are the caller's to fix.
var errUsage = errors.New("usage")

const usage = `Usage: ecr-token-refresh <command> [flags]

Commands:
  sidecar   keep ECR passwords fresh in files (see: ecr-token-refresh sidecar -h)
  webhook   inject the sidecar into annotated pods (see: ecr-token-refresh webhook -h)
  version   print the version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "sidecar":
		err = runSidecar(ctx, args[1:], stderr)
	case "webhook":
		err = runWebhook(ctx, args[1:])
	case "version", "--version":
		fmt.Fprintln(stdout, version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "error:", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, "error:", err)
		return exitFailure
	}
}

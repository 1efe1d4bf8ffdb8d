// Command demo runs the sidecar end to end on its embedded default config
// (the original ecr-token-refresh example): it serves a loopback ECR
// endpoint, runs the built binary with --once and then as a long-running
// sidecar, and shows what a reader such as Clouddriver would find. No AWS
// account is needed and nothing leaves the machine. Run it with make demo.
package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
)

// config is the default config the demo runs: the original tool's example.
//
//go:embed config.yaml
var config string

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: demo PATH-TO-ecr-token-refresh")
	}
	binary := os.Args[1]
	srv := fakeecr.New()
	defer srv.Close()
	dir, err := os.MkdirTemp("", "ecr-token-refresh-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The original config, with its /opt paths moved under the demo folder.
	cfg := strings.ReplaceAll(config, "/opt/passwords/", dir+"/passwords/")
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	passwordFile := filepath.Join(dir, "passwords", "my-registry.pass")
	step("config (%s)", cfgPath)
	fmt.Print(cfg)

	step("ecr-token-refresh sidecar --once")
	once := exec.Command(binary, "sidecar", "--once", "--config", cfgPath)
	once.Env = append(os.Environ(), srv.Env()...)
	once.Stdout, once.Stderr = os.Stdout, os.Stdout
	if err := once.Run(); err != nil {
		return fmt.Errorf("sidecar --once: %w", err)
	}
	if err := show(srv, passwordFile); err != nil {
		return err
	}

	step("ecr-token-refresh sidecar (runs until SIGTERM; health on 127.0.0.1:3277)")
	sidecar := exec.Command(binary, "sidecar", "--config", cfgPath, "--health-addr", "127.0.0.1:3277")
	sidecar.Env = append(os.Environ(), srv.Env()...)
	sidecar.Stdout, sidecar.Stderr = os.Stdout, os.Stdout
	if err := sidecar.Start(); err != nil {
		return err
	}
	defer sidecar.Process.Kill()
	ready, err := poll("http://127.0.0.1:3277/readyz", 10*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("GET /readyz: %s", ready)
	if err := show(srv, passwordFile); err != nil {
		return err
	}
	metrics, err := poll("http://127.0.0.1:3277/metrics", time.Second)
	if err != nil {
		return err
	}
	step("metrics (excerpt)")
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "ecr_token_refresh_") && !strings.Contains(line, "_bucket") {
			fmt.Println(line)
		}
	}
	step("SIGTERM")
	if err := sidecar.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := sidecar.Wait(); err != nil {
		return fmt.Errorf("sidecar exited with %w", err)
	}
	fmt.Printf("sidecar exited 0; GetAuthorizationToken calls: %d\n", srv.CallCount(fakeecr.OpGetAuthorizationToken))
	return nil
}

// show reports what a reader of passwordFile sees, without printing the
// password itself.
func show(srv *fakeecr.Server, passwordFile string) error {
	b, err := os.ReadFile(passwordFile)
	if err != nil {
		return err
	}
	fi, err := os.Stat(passwordFile)
	if err != nil {
		return err
	}
	match := string(b) == srv.LastPassword(fakeecr.DefaultAccount, "us-west-2")
	fmt.Printf("%s: %d bytes, mode %s, no trailing newline: %t, equals the password ECR issued last: %t\n",
		passwordFile, len(b), fi.Mode().Perm(), !strings.HasSuffix(string(b), "\n"), match)
	if !match {
		return fmt.Errorf("%s does not hold the newest password", passwordFile)
	}
	return nil
}

// poll GETs url until it answers 200 or timeout passes.
func poll(url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s did not answer 200 within %s", url, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

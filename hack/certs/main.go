// Command certs writes a CA and a serving certificate for the webhook's
// Service, for the webhook in files mode (--cert-dir) on a local cluster:
//
//	go run ./hack/certs --dir DIR [--service NAME] [--namespace NS] [--host localhost]...
//
// It writes ca.crt, tls.crt and tls.key into DIR, replacing them, and
// prints the caBundle for the MutatingWebhookConfiguration, base64, on
// standard output:
//
//	kubectl patch mutatingwebhookconfiguration ecr-token-refresh --type=json \
//	  -p '[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"'"$(go run ./hack/certs --dir DIR)"'"}]'
package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ecr-token-refresh/ecr-token-refresh/certs"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "certs:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "certs:", err)
		os.Exit(1)
	}
}

// errUsage marks errors in the command line.
var errUsage = errors.New("usage")

// run writes the files that args ask for and prints the caBundle to
// stdout; it reports what it wrote to stderr.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "`directory` to write ca.crt, tls.crt and tls.key into (required)")
	service := fs.String("service", certs.ServiceName, "`name` of the webhook's Service")
	namespace := fs.String("namespace", certs.DefaultNamespace, "`namespace` of the webhook's Service")
	var extra []string
	fs.Func("host", "extra DNS name or IP address the certificate names, e.g. localhost (repeatable)", func(v string) error {
		if v == "" {
			return errors.New("empty host")
		}
		extra = append(extra, v)
		return nil
	})
	lifetime := fs.Duration("lifetime", certs.DefaultCALifetime, "how long the CA and the certificate are valid")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case *dir == "":
		return fmt.Errorf("%w: --dir is required", errUsage)
	case *service == "" || *namespace == "":
		return fmt.Errorf("%w: --service and --namespace must not be empty", errUsage)
	case *lifetime <= 0:
		return fmt.Errorf("%w: --lifetime must be positive", errUsage)
	}

	now := time.Now()
	ca, err := certs.NewCA(*service+"."+*namespace+"-ca", now, *lifetime)
	if err != nil {
		return err
	}
	serving, err := certs.NewServingCert(ca, certs.ServiceHosts(*service, *namespace, extra...), now, *lifetime)
	if err != nil {
		return err
	}
	key, err := serving.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.crt", ca.CertPEM(), 0o644},
		{"tls.key", key, 0o600},
		{"tls.crt", serving.CertPEM(), 0o644},
	} {
		if err := writeFile(filepath.Join(*dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "wrote ca.crt, tls.crt and tls.key into %s for %s, valid until %s; the caBundle follows on standard output\n",
		*dir, strings.Join(serving.Cert.DNSNames, ", "), serving.Cert.NotAfter.Format(time.RFC3339))
	_, err = fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(ca.CertPEM()))
	return err
}

// writeFile replaces path with data through a rename, so that a reader
// (the webhook's certificate watcher) never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
)

// Files serves the certificate in a directory's tls.crt and tls.key (a
// mounted Secret of type kubernetes.io/tls, or cert-manager's), and loads
// it again whenever the directory changes: a Secret volume's update swaps
// a symlink, which a watch of the files alone would miss. A pair that does
// not load (say, halfway through a copy) is skipped: the last good one
// stays in service.
type Files struct {
	dir  string
	log  logr.Logger
	cert atomic.Pointer[tls.Certificate]
}

// LoadFiles loads the certificate in dir, which must be there.
func LoadFiles(dir string, log logr.Logger) (*Files, error) {
	f := &Files{dir: dir, log: log.WithName("certs")}
	if _, err := f.load(); err != nil {
		return nil, fmt.Errorf("certs: --cert-dir %s: %w (mount the webhook's TLS Secret there, or use --self-managed-certs)", dir, err)
	}
	return f, nil
}

// GetCertificate serves the current certificate: set it as a webhook
// server's tls.Config.GetCertificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cert.Load(), nil
}

// Watch loads the certificate again on every change to the directory
// until ctx is done. It returns once the watch is set up.
func (f *Files) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("certs: watching %s: %w", f.dir, err)
	}
	if err := w.Add(f.dir); err != nil {
		_ = w.Close()
		return fmt.Errorf("certs: watching %s: %w", f.dir, err)
	}
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-w.Errors:
				f.log.Error(err, "watching the certificate directory", "dir", f.dir)
			case <-w.Events:
				c, err := f.load()
				switch {
				case err != nil:
					f.log.V(1).Info("certificate directory changed but holds no valid pair yet; serving the last one", "dir", f.dir, "reason", err.Error())
				case c != nil:
					logServing(f.log, c, "dir", f.dir)
				}
			}
		}
	}()
	return nil
}

// load serves the pair in the directory, and returns it if it differs
// from the one served, else nil.
func (f *Files) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(filepath.Join(f.dir, corev1.TLSCertKey))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(f.dir, corev1.TLSPrivateKeyKey))
	if err != nil {
		return nil, err
	}
	c, err := swapCert(&f.cert, certPEM, keyPEM)
	if err != nil {
		return nil, errors.New("tls.crt and tls.key: " + err.Error())
	}
	return c, nil
}

// Package testcerts makes a CA and serving certificates for 127.0.0.1, for
// tests that serve TLS on loopback.
package testcerts

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ecr-token-refresh/ecr-token-refresh/certs"
)

// lifetime is how long the certificates are valid: longer than any test.
const lifetime = time.Hour

// CA is a test CA.
type CA struct {
	kp *certs.KeyPair
	// Roots trusts the CA alone: a client's RootCAs, as a caBundle.
	Roots *x509.CertPool
}

// NewCA returns a new CA.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	kp, err := certs.NewCA("ecr-token-refresh-test-ca", time.Now(), lifetime)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(kp.Cert)
	return &CA{kp: kp, Roots: roots}
}

// Files returns a new serving certificate for 127.0.0.1 as the files of a
// kubernetes.io/tls Secret (ca.crt, tls.crt, tls.key), and its serial.
func (c *CA) Files(tb testing.TB) (map[string][]byte, *big.Int) {
	tb.Helper()
	serving, err := certs.NewServingCert(c.kp, []string{"127.0.0.1"}, time.Now(), lifetime)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := serving.KeyPEM()
	if err != nil {
		tb.Fatal(err)
	}
	return map[string][]byte{"ca.crt": c.kp.CertPEM(), corev1.TLSCertKey: serving.CertPEM(), corev1.TLSPrivateKeyKey: key}, serving.Cert.SerialNumber
}

// Certificate returns a new serving certificate for 127.0.0.1, for a
// server's tls.Config.
func (c *CA) Certificate(tb testing.TB) tls.Certificate {
	tb.Helper()
	files, _ := c.Files(tb)
	cert, err := tls.X509KeyPair(files[corev1.TLSCertKey], files[corev1.TLSPrivateKeyKey])
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

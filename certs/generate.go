package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"time"
)

// maxBackdate bounds how far before its issuance a certificate becomes
// valid, so that a verifier whose clock lags a little accepts it at once.
const maxBackdate = 5 * time.Minute

// KeyPair is a certificate and its ECDSA P-256 private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CertPEM is the certificate, PEM-encoded.
func (k *KeyPair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Cert.Raw})
}

// KeyPEM is the private key, PEM-encoded in PKCS #8.
func (k *KeyPair) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ServiceHosts are the names a Service is reached by from the API server
// and inside the cluster (service, service.namespace, service.namespace.svc
// and service.namespace.svc.cluster.local), followed by extra.
func ServiceHosts(service, namespace string, extra ...string) []string {
	hosts := []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
	return append(hosts, extra...)
}

// NewCA creates a self-signed CA named commonName, valid for lifetime from
// now.
func NewCA(commonName string, now time.Time, lifetime time.Duration) (*KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return create(tmpl, nil, now, now.Add(lifetime))
}

// NewServingCert creates a TLS server certificate for hosts (DNS names or
// IP addresses; the first is also its common name), signed by ca and valid
// for lifetime from now but never after ca expires.
func NewServingCert(ca *KeyPair, hosts []string, now time.Time, lifetime time.Duration) (*KeyPair, error) {
	if len(hosts) == 0 {
		return nil, errors.New("certs: a serving certificate needs at least one host")
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: hosts[0]},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	notAfter := now.Add(lifetime)
	if ca.Cert.NotAfter.Before(notAfter) {
		notAfter = ca.Cert.NotAfter
	}
	return create(tmpl, ca, now, notAfter)
}

// create completes tmpl with a new key, a random serial number and the
// validity from now to notAfter, and signs it with parent, or with its own
// key when parent is nil.
func create(tmpl *x509.Certificate, parent *KeyPair, now, notAfter time.Time) (*KeyPair, error) {
	if !notAfter.After(now) {
		return nil, fmt.Errorf("certs: %s would expire at once (not after %s)", tmpl.Subject.CommonName, notAfter)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-min(maxBackdate, notAfter.Sub(now)/10)).UTC()
	tmpl.NotAfter = notAfter.UTC()
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.Key, parent.Cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// caName names a CA created at now, so that the CAs of a bundle are told
// apart.
func caName(service, namespace string, now time.Time) string {
	return service + "." + namespace + "-ca@" + strconv.FormatInt(now.Unix(), 10)
}

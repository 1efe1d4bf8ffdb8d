package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// bundle is the list of trusted CAs, oldest first: the caBundle of the
// webhooks and the Secret's ca.crt. Its last CA signs serving certificates.
type bundle []*x509.Certificate

// parseBundle reads PEM CERTIFICATE blocks; anything else is an error.
func parseBundle(data []byte) (bundle, error) {
	var b bundle
	for rest := bytes.TrimSpace(data); len(rest) > 0; rest = bytes.TrimSpace(rest) {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, errors.New("not a PEM certificate bundle")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		b = append(b, cert)
	}
	return b, nil
}

// encode is the bundle PEM-encoded, oldest first.
func (b bundle) encode() []byte {
	var buf bytes.Buffer
	for _, c := range b {
		buf.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return buf.Bytes()
}

// newest is the last CA, or nil.
func (b bundle) newest() *x509.Certificate {
	if len(b) == 0 {
		return nil
	}
	return b[len(b)-1]
}

// unexpired are the CAs still valid at now, in order.
func (b bundle) unexpired(now time.Time) bundle {
	var kept bundle
	for _, c := range b {
		if now.Before(c.NotAfter) {
			kept = append(kept, c)
		}
	}
	return kept
}

// verifies reports whether cert chains to a CA of b at now, as a TLS
// server certificate.
func (b bundle) verifies(cert *x509.Certificate, now time.Time) bool {
	pool := x509.NewCertPool()
	for _, c := range b {
		pool.AddCert(c)
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err == nil
}

// parseKey reads a PEM PKCS #8 ECDSA private key.
func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PKCS #8 private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ECDSA key", key)
	}
	return ec, nil
}

// matches reports whether key is the private key of cert.
func matches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(&key.PublicKey)
}

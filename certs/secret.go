package certs

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The keys of the Secret. A new leader continues from them.
const (
	keyCert     = corev1.TLSCertKey       // the serving certificate
	keyKey      = corev1.TLSPrivateKeyKey // its private key
	keyCABundle = "ca.crt"                // the bundle, oldest CA first
	keyCAKey    = "ca.key"                // the private key of the bundle's newest CA
)

// state is the content of the Secret. A part that is missing or invalid is
// left empty.
type state struct {
	cas     bundle
	caKey   *ecdsa.PrivateKey
	serving *KeyPair
}

// parseState reads the Secret's data. Its error lists the parts that were
// present but invalid; the state holds the others.
func parseState(data map[string][]byte) (state, error) {
	var s state
	var errs []error
	if len(data[keyCABundle]) > 0 {
		b, err := parseBundle(data[keyCABundle])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", keyCABundle, err))
		}
		s.cas = b
	}
	if len(data[keyCAKey]) > 0 {
		k, err := parseKey(data[keyCAKey])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", keyCAKey, err))
		}
		s.caKey = k
	}
	if len(data[keyCert]) > 0 || len(data[keyKey]) > 0 {
		kp, err := parseKeyPair(data[keyCert], data[keyKey])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s and %s: %w", keyCert, keyKey, err))
		}
		s.serving = kp
	}
	return s, errors.Join(errs...)
}

// parseKeyPair reads a PEM certificate (the first of certPEM) and its
// PEM PKCS #8 key.
func parseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !matches(cert, key) {
		return nil, errors.New("the key does not match the certificate")
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// data is the Secret's data for s.
func (s state) data() (map[string][]byte, error) {
	caKey, err := (&KeyPair{Key: s.caKey}).KeyPEM()
	if err != nil {
		return nil, err
	}
	key, err := s.serving.KeyPEM()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		keyCert:     s.serving.CertPEM(),
		keyKey:      key,
		keyCABundle: s.cas.encode(),
		keyCAKey:    caKey,
	}, nil
}

// signer is the CA that signs serving certificates: the newest of the
// bundle, if ca.key is its key and it has not expired at now; else nil.
func (s state) signer(now time.Time) *KeyPair {
	ca := s.cas.newest()
	if ca == nil || s.caKey == nil || !matches(ca, s.caKey) || !now.Before(ca.NotAfter) {
		return nil
	}
	return &KeyPair{Cert: ca, Key: s.caKey}
}

// trusted reports whether the serving certificate chains to the bundle at
// now.
func (s state) trusted(now time.Time) bool {
	return s.serving != nil && s.cas.verifies(s.serving.Cert, now)
}

package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestServe(t *testing.T) {
	m, err := New(Options{Namespace: "ns", ExtraHosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &tls.Config{GetCertificate: m.GetCertificate}
	now := time.Now()
	secretFor := func(ca *KeyPair) *corev1.Secret {
		kp := mustServing(t, ca, m.opts.policy().hosts, now, time.Hour)
		key, err := kp.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		return &corev1.Secret{Data: map[string][]byte{keyCert: kp.CertPEM(), keyKey: key}}
	}
	ca1, ca2 := mustCA(t, now, 2*time.Hour), mustCA(t, now, 2*time.Hour)

	var synced atomic.Bool
	syncedFunc := synced.Load
	m.served.synced.Store(&syncedFunc)
	steps := []struct {
		name   string
		secret *corev1.Secret // loaded before the handshake, if any
		synced bool
		ready  bool
		// trusted is the CA the served certificate chains to; nil: no
		// certificate, the handshake fails.
		trusted *KeyPair
	}{
		{name: "not synced, no Secret yet"},
		{name: "Secret without a certificate", secret: &corev1.Secret{}, synced: true},
		{name: "first certificate, not synced", secret: secretFor(ca1), trusted: ca1},
		{name: "first certificate", synced: true, ready: true, trusted: ca1},
		{name: "invalid certificate: keep the last", secret: &corev1.Secret{Data: map[string][]byte{keyCert: []byte("junk")}}, synced: true, ready: true, trusted: ca1},
		{name: "new certificate", secret: secretFor(ca2), synced: true, ready: true, trusted: ca2},
	}
	for _, step := range steps {
		synced.Store(step.synced)
		if step.secret != nil {
			m.served.load(step.secret)
		}
		if err := m.ReadyCheck(); (err == nil) != step.ready {
			t.Errorf("%s: ReadyCheck = %v, want ready %v", step.name, err, step.ready)
		}
		roots := x509.NewCertPool()
		if step.trusted != nil {
			roots.AddCert(step.trusted.Cert)
		}
		err := handshake(t, srv, &tls.Config{RootCAs: roots, ServerName: "ecr-token-refresh-webhook.ns.svc"})
		if (err == nil) != (step.trusted != nil) {
			t.Errorf("%s: handshake: %v, want success %v", step.name, err, step.trusted != nil)
		}
	}
}

// handshake runs a TLS handshake between server and client over a pipe and
// returns the client's error.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	sc, cc := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sc.Close()
		_ = tls.Server(sc, server).HandshakeContext(ctx)
	}()
	defer func() { <-done }()
	defer cc.Close()
	return tls.Client(cc, client).HandshakeContext(ctx)
}

package certs

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// served is the certificate this replica serves, the Secret's latest
// valid one.
type served struct {
	secret types.NamespacedName
	log    logr.Logger
	cert   atomic.Pointer[tls.Certificate]
	// synced reports whether the watches of the Secret and the webhook
	// configuration have listed them; nil until the watches start.
	synced atomic.Pointer[func() bool]
}

// load serves the certificate in secret from now on, unless it is invalid
// or already served.
func (s *served) load(secret *corev1.Secret) {
	if len(secret.Data[keyCert]) == 0 {
		return
	}
	c, err := swapCert(&s.cert, secret.Data[keyCert], secret.Data[keyKey])
	switch {
	case err != nil:
		s.log.Error(err, "ignoring an invalid serving certificate", "secret", s.secret)
	case c != nil:
		logServing(s.log, c, "secret", s.secret)
	}
}

// swapCert serves the pair certPEM and keyPEM through cur from now on,
// unless cur serves that certificate already. It returns the certificate
// it stored, nil if it stored none.
func swapCert(cur *atomic.Pointer[tls.Certificate], certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if old := cur.Load(); old != nil && bytes.Equal(old.Certificate[0], c.Certificate[0]) {
		return nil, nil
	}
	cur.Store(&c)
	return &c, nil
}

// logServing logs that c is served from now on, from where.
func logServing(log logr.Logger, c *tls.Certificate, where ...any) {
	log.Info("serving a new certificate", append(where, "serial", c.Leaf.SerialNumber.Text(16),
		"issuer", c.Leaf.Issuer.CommonName, "notAfter", c.Leaf.NotAfter)...)
}

// getCertificate is tls.Config.GetCertificate.
func (s *served) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, s.notYet()
}

// ready is an error until the watches have synced, so that the replica
// follows rotations, and a certificate is served.
func (s *served) ready() error {
	switch {
	case s.synced.Load() == nil || !(*s.synced.Load())():
		return errors.New("not watching the Secret and the webhook configuration yet: may this replica list and watch them?")
	case s.cert.Load() == nil:
		return s.notYet()
	}
	return nil
}

func (s *served) notYet() error {
	return fmt.Errorf("no serving certificate yet in Secret %s", s.secret)
}

// watch loads the certificate of every version of the Secret that
// secrets sees and calls changed on every change to either object.
func (s *served) watch(secrets, configs cache.SharedIndexInformer, changed func()) error {
	if _, err := secrets.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onSecret(obj); changed() },
		UpdateFunc: func(_, obj any) { s.onSecret(obj); changed() },
		DeleteFunc: func(any) { changed() },
	}); err != nil {
		return err
	}
	if _, err := configs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(any, any) { changed() },
		DeleteFunc: func(any) { changed() },
	}); err != nil {
		return err
	}
	synced := func() bool { return secrets.HasSynced() && configs.HasSynced() }
	s.synced.Store(&synced)
	return nil
}

func (s *served) onSecret(obj any) {
	if secret, ok := obj.(*corev1.Secret); ok {
		s.load(secret)
	}
}

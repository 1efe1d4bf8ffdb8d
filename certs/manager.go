package certs

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"sync"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
)

// Manager runs self-managed certificates: every replica serves the
// Secret's certificate (GetCertificate) and one, elected on the Lease
// [LeaseName], writes the Secret and the caBundle.
type Manager struct {
	opts   Options
	served *served
}

// New returns a Manager configured by opts.
func New(opts Options) (*Manager, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Manager{
		opts: o,
		served: &served{
			secret: types.NamespacedName{Namespace: o.Namespace, Name: SecretName},
			log:    logr.Discard(),
		},
	}, nil
}

// GetCertificate serves the Secret's current certificate: set it as a
// webhook server's tls.Config.GetCertificate. A TLS handshake fails until
// there is one.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.served.getCertificate(hello)
}

// ReadyCheck fails until this replica watches the Secret and the webhook
// configuration and serves a certificate.
func (m *Manager) ReadyCheck() error { return m.served.ready() }

// Start runs until ctx is done: in every replica a watch of the Secret,
// whose certificate it serves, and of the webhook configuration (each
// listed and watched by name); on the elected leader the writer of the
// Secret and of the caBundle. It returns an error if cfg cannot be used,
// or if the leader lost its Lease (the process should then exit, and
// start again as a follower).
func (m *Manager) Start(ctx context.Context, cfg *rest.Config, log logr.Logger) error {
	log = log.WithName("certs")
	m.served.log = log
	k, err := newKube(cfg)
	if err != nil {
		return err
	}
	identity, err := replicaIdentity()
	if err != nil {
		return err
	}
	l := &leader{
		store:         k,
		policy:        m.opts.policy(),
		secret:        m.served.secret,
		webhookConfig: WebhookConfigName,
		delay:         m.opts.PropagationDelay,
		clock:         clock.RealClock{},
		log:           log,
		wake:          make(chan struct{}, 1),
	}
	secrets := informer(k.core, resourceSecrets, m.opts.Namespace, SecretName, &corev1.Secret{})
	configs := informer(k.admission, resourceWebhookConfigs, "", WebhookConfigName, &admissionregistrationv1.MutatingWebhookConfiguration{})
	if err := m.served.watch(secrets, configs, l.poke); err != nil {
		return fmt.Errorf("certs: watching: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { secrets.Run(ctx.Done()) })
	wg.Go(func() { configs.Run(ctx.Done()) })

	e := &election{
		leases:   k,
		key:      types.NamespacedName{Namespace: m.opts.Namespace, Name: LeaseName},
		identity: identity,
		timing:   m.opts.Election,
		clock:    clock.RealClock{},
		log:      log,
	}
	return e.run(ctx, l.run)
}

// replicaIdentity names this replica in the Lease: its host (the pod's
// name) and a random suffix, unique across restarts.
func replicaIdentity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("certs: naming this replica: %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "_" + hex.EncodeToString(b), nil
}

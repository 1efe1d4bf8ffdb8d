package certs

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Manager runs self-managed certificates in a controller-runtime manager.
// Its manager must elect a leader on the Lease [LeaseName] in
// [Manager.Namespace], and its webhook server must get its certificate from
// [Manager.TLSOpt].
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
			secret: types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName},
			log:    logr.Discard(),
			synced: func() bool { return false },
		},
	}, nil
}

// Namespace is the namespace of the Secret, the Service and the Lease.
func (m *Manager) Namespace() string { return m.opts.Namespace }

// TLSOpt makes a webhook server serve the Secret's current certificate:
// pass it in the webhook server's Options.TLSOpts. A TLS handshake fails
// until there is one.
func (m *Manager) TLSOpt(c *tls.Config) { c.GetCertificate = m.served.getCertificate }

// ReadyCheck is a healthz.Checker that fails until this replica watches
// the Secret and the webhook configuration and serves a certificate.
func (m *Manager) ReadyCheck(req *http.Request) error { return m.served.ready(req) }

// SetupWithManager adds to mgr what runs in every replica (a watch of the
// Secret, whose certificate it serves, and of the webhook configuration)
// and what runs on the leader only (the writer of the Secret and of the
// caBundle). Both list and watch their objects by name, in the namespace
// for the Secret, and leave mgr's own cache alone.
func (m *Manager) SetupWithManager(mgr manager.Manager) error {
	log := mgr.GetLogger().WithName("certs")
	m.served.log = log
	byName := func(name string) fields.Selector { return fields.OneTermEqualSelector("metadata.name", name) }
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:                  mgr.GetHTTPClient(),
		Scheme:                      mgr.GetScheme(),
		Mapper:                      mgr.GetRESTMapper(),
		ReaderFailOnMissingInformer: true,
		DefaultTransform:            cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{m.opts.Namespace: {}},
				Field:      byName(m.opts.SecretName),
			},
			&admissionregistrationv1.MutatingWebhookConfiguration{}: {Field: byName(m.opts.WebhookConfigName)},
		},
	})
	if err != nil {
		return fmt.Errorf("certs: creating the cache: %w", err)
	}
	cl, err := client.New(mgr.GetConfig(), client.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     mgr.GetScheme(),
		Mapper:     mgr.GetRESTMapper(),
	})
	if err != nil {
		return fmt.Errorf("certs: creating the client: %w", err)
	}
	l := &leader{
		client:        cl,
		policy:        m.opts.policy(),
		secret:        m.served.secret,
		webhookConfig: m.opts.WebhookConfigName,
		delay:         m.opts.PropagationDelay,
		clock:         m.opts.Clock,
		log:           log,
		wake:          make(chan struct{}, 1),
	}
	if err := m.served.watch(c, l.poke); err != nil {
		return fmt.Errorf("certs: watching: %w", err)
	}
	if err := mgr.Add(replicaCache{c}); err != nil {
		return err
	}
	return mgr.Add(l)
}

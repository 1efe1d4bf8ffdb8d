package certs

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"time"
)

// The names the manifests give the webhook's objects.
const (
	// DefaultNamespace is the webhook's namespace when [NamespaceEnv] is
	// unset.
	DefaultNamespace = "ecr-token-refresh"
	// NamespaceEnv names the environment variable that holds the
	// namespace the webhook runs in (the Deployment sets it from the
	// downward API).
	NamespaceEnv = "POD_NAMESPACE"
	// SecretName is the Secret holding the CA and serving certificate.
	SecretName = "ecr-token-refresh-webhook-tls"
	// LeaseName is the Lease that elects the replica that writes the
	// Secret and the caBundle.
	LeaseName = "ecr-token-refresh-webhook"
	// ServiceName is the Service the API server calls the webhook through.
	ServiceName = "ecr-token-refresh-webhook"
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle
	// the webhook keeps.
	WebhookConfigName = "ecr-token-refresh"
)

// Default lifetimes. Each is renewed when a third of it is left: the CA
// about every eight months, the serving certificate every two.
const (
	DefaultCALifetime       = 365 * 24 * time.Hour
	DefaultCertLifetime     = 90 * 24 * time.Hour
	DefaultPropagationDelay = 5 * time.Minute
)

// Options configure self-managed certificates. The zero value is the
// manifests' setup.
type Options struct {
	// Namespace holds the Secret [SecretName], the Service [ServiceName]
	// and the Lease [LeaseName]; default $POD_NAMESPACE, else
	// [DefaultNamespace].
	Namespace string
	// ExtraHosts are DNS names or IP addresses the serving certificate
	// names besides the Service's (see [ServiceHosts]), e.g. "localhost".
	ExtraHosts []string

	// CALifetime is how long a CA is valid; default [DefaultCALifetime].
	CALifetime time.Duration
	// CertLifetime is how long a serving certificate is valid, at most
	// CALifetime; default [DefaultCertLifetime].
	CertLifetime time.Duration
	// PropagationDelay is how long a new bundle stays in the webhook
	// configuration before a serving certificate signed by its new CA is
	// served, and how long that certificate stays in the Secret before the
	// old CA leaves the bundle: the time the API server and every replica
	// need to see a change. At most a sixth of CertLifetime; default
	// [DefaultPropagationDelay].
	PropagationDelay time.Duration

	// Election is the timing of the leader election on the Lease; zero
	// fields take the defaults.
	Election Timing
}

// withDefaults fills in the defaults and checks the result.
func (o Options) withDefaults() (Options, error) {
	o.Namespace = cmp.Or(o.Namespace, os.Getenv(NamespaceEnv), DefaultNamespace)
	o.CALifetime = cmp.Or(o.CALifetime, DefaultCALifetime)
	o.CertLifetime = cmp.Or(o.CertLifetime, DefaultCertLifetime)
	o.PropagationDelay = cmp.Or(o.PropagationDelay, DefaultPropagationDelay)
	switch {
	case o.CALifetime < 0 || o.CertLifetime < 0 || o.PropagationDelay < 0:
		return o, errors.New("certs: lifetimes and delays must be positive")
	case o.CertLifetime > o.CALifetime:
		return o, fmt.Errorf("certs: the certificate lifetime %s exceeds the CA lifetime %s", o.CertLifetime, o.CALifetime)
	case 6*o.PropagationDelay > o.CertLifetime:
		return o, fmt.Errorf("certs: the propagation delay %s exceeds a sixth of the certificate lifetime %s", o.PropagationDelay, o.CertLifetime)
	}
	var err error
	if o.Election, err = o.Election.withDefaults(); err != nil {
		return o, err
	}
	for _, h := range o.ExtraHosts {
		if h == "" {
			return o, errors.New("certs: an extra host is empty")
		}
	}
	return o, nil
}

// policy is the rotation policy of o, defaulted.
func (o Options) policy() policy {
	return policy{
		service:      ServiceName,
		namespace:    o.Namespace,
		hosts:        ServiceHosts(ServiceName, o.Namespace, o.ExtraHosts...),
		caLifetime:   o.CALifetime,
		certLifetime: o.CertLifetime,
	}
}

package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Retries after an error back off from minRetry to maxRetry; without
// changes the leader still looks again every resync.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = time.Minute
	resync   = 10 * time.Minute
)

// store is the Kubernetes API as the leader uses it.
type store interface {
	getSecret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error)
	createSecret(ctx context.Context, s *corev1.Secret) error
	updateSecret(ctx context.Context, s *corev1.Secret) error
	getWebhookConfig(ctx context.Context, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, error)
	patchWebhookConfig(ctx context.Context, name string, patch []byte) error
}

// leader writes the Secret and the caBundle. It runs in the elected
// replica only, and reads what it writes from the API server, not from a
// cache, so that a write never starts from a stale copy; an object changed
// meanwhile fails the write on its resourceVersion and is read again.
type leader struct {
	store         store
	policy        policy
	secret        types.NamespacedName
	webhookConfig string
	delay         time.Duration
	clock         clock.Clock
	log           logr.Logger
	wake          chan struct{}

	// stable is the key of the Secret's content as last seen with its
	// bundle in every webhook, since stableSince.
	stable      [sha256.Size]byte
	stableSince time.Time
}

// poke makes the leader look again now.
func (l *leader) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run reconciles until ctx is done: when a change falls due, when the
// Secret or the webhook configuration changes, and after errors.
func (l *leader) run(ctx context.Context) {
	l.log.Info("leading: managing the webhook's certificates", "secret", l.secret, "webhookConfiguration", l.webhookConfig)
	var backoff time.Duration
	for {
		next, err := l.reconcile(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := min(resync, next.Sub(l.clock.Now()))
		if err == nil {
			backoff = 0
		} else {
			backoff = min(max(2*backoff, minRetry), maxRetry)
			wait = backoff
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				l.log.V(1).Info("changed meanwhile, reading it again", "reason", err.Error())
			} else {
				l.log.Error(err, "managing the webhook's certificates", "retryIn", wait)
			}
		}
		if wait <= 0 {
			continue
		}
		timer := l.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-l.wake:
		case <-timer.C():
		}
		timer.Stop()
	}
}

// reconcile makes the next change to the Secret, if one is due, brings
// the caBundle of every webhook in line with the Secret's bundle and
// returns when to look again.
func (l *leader) reconcile(ctx context.Context) (time.Time, error) {
	now := l.clock.Now()
	secret, err := l.store.getSecret(ctx, l.secret)
	found := err == nil
	if !found {
		secret = &corev1.Secret{}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return now, fmt.Errorf("reading Secret %s: %w", l.secret, err)
	}
	s, err := parseState(secret.Data)
	if err != nil {
		l.log.Info("replacing invalid parts of the Secret", "secret", l.secret, "reason", err.Error())
	}
	data := secret.Data
	d := l.policy.plan(s, now, l.settled(data, now))
	if d.step != stepNone {
		if s, err = l.policy.apply(s, d.step, now); err != nil {
			return now, fmt.Errorf("%s: %w", d.step, err)
		}
		if data, err = s.data(); err != nil {
			return now, fmt.Errorf("%s: %w", d.step, err)
		}
		if err := l.write(ctx, secret, found, data); err != nil {
			return now, err
		}
		l.log.Info("rotated certificates", "step", d.step.String(), "secret", l.secret, "cas", caNames(s.cas),
			"servingSerial", s.serving.Cert.SerialNumber.Text(16), "servingIssuer", s.serving.Cert.Issuer.CommonName,
			"servingNotAfter", s.serving.Cert.NotAfter)
	}
	if err := l.syncWebhookConfig(ctx, data[keyCABundle]); err != nil {
		return now, err
	}
	l.observe(data)
	switch {
	case d.step != stepNone:
		return now, nil
	case d.waiting && l.stableSince.Add(l.delay).Before(d.next):
		return l.stableSince.Add(l.delay), nil
	default:
		return d.next, nil
	}
}

// write creates the Secret with data, or updates found at its
// resourceVersion.
func (l *leader) write(ctx context.Context, secret *corev1.Secret, found bool, data map[string][]byte) error {
	if found {
		secret.Data = data
		if err := l.store.updateSecret(ctx, secret); err != nil {
			return fmt.Errorf("updating Secret %s: %w", l.secret, err)
		}
		return nil
	}
	secret = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      l.secret.Name,
			Namespace: l.secret.Namespace,
			Labels: map[string]string{
				"app.kubernetes.io/name":       "ecr-token-refresh",
				"app.kubernetes.io/component":  "webhook",
				"app.kubernetes.io/managed-by": "ecr-token-refresh",
			},
		},
		Type: corev1.SecretTypeTLS,
		Data: data,
	}
	if err := l.store.createSecret(ctx, secret); err != nil {
		return fmt.Errorf("creating Secret %s: %w", l.secret, err)
	}
	return nil
}

// syncWebhookConfig sets the caBundle of every webhook of the webhook
// configuration that lacks it to caBundle, with a strategic merge patch of
// those caBundles alone, at the configuration's resourceVersion.
func (l *leader) syncWebhookConfig(ctx context.Context, caBundle []byte) error {
	cfg, err := l.store.getWebhookConfig(ctx, l.webhookConfig)
	if err != nil {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", l.webhookConfig, err)
	}
	type clientConfig struct {
		CABundle []byte `json:"caBundle"`
	}
	type webhook struct {
		Name         string       `json:"name"`
		ClientConfig clientConfig `json:"clientConfig"`
	}
	var stale []webhook
	var names []string
	for _, w := range cfg.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, caBundle) {
			stale = append(stale, webhook{Name: w.Name, ClientConfig: clientConfig{CABundle: caBundle}})
			names = append(names, w.Name)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]string{"resourceVersion": cfg.ResourceVersion},
		"webhooks": stale,
	})
	if err != nil {
		return err
	}
	if err := l.store.patchWebhookConfig(ctx, l.webhookConfig, patch); err != nil {
		return fmt.Errorf("patching the caBundle of MutatingWebhookConfiguration %s: %w", l.webhookConfig, err)
	}
	l.log.Info("updated the caBundle", "webhookConfiguration", l.webhookConfig, "webhooks", names)
	return nil
}

// observe records that the Secret holds data and that every webhook has
// its bundle, from now unless it already did.
func (l *leader) observe(data map[string][]byte) {
	if k := stateKey(data); k != l.stable {
		l.stable, l.stableSince = k, l.clock.Now()
	}
}

// settled reports whether, as far as this leader saw, the Secret has held
// data and every webhook its bundle for the propagation delay at now.
func (l *leader) settled(data map[string][]byte, now time.Time) bool {
	return stateKey(data) == l.stable && !now.Before(l.stableSince.Add(l.delay))
}

// stateKey identifies the bundle and the serving certificate of data.
func stateKey(data map[string][]byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(data[keyCABundle])
	h.Write([]byte{0})
	h.Write(data[keyCert])
	return [sha256.Size]byte(h.Sum(nil))
}

// caNames are the common names of b's CAs, for the logs.
func caNames(b bundle) []string {
	names := make([]string, len(b))
	for i, c := range b {
		names[i] = c.Subject.CommonName
	}
	return names
}

package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

var testSecret = types.NamespacedName{Namespace: "ns", Name: SecretName}

func testWebhookConfig() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigName},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.example.com"}, {Name: "b.example.com"}},
	}
}

// clientStore is the leader's store over a controller-runtime client, so
// that the tests can use its fake client and interceptors.
type clientStore struct{ c client.Client }

func (s clientStore) getSecret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	return secret, s.c.Get(ctx, key, secret)
}

func (s clientStore) createSecret(ctx context.Context, secret *corev1.Secret) error {
	return s.c.Create(ctx, secret)
}

func (s clientStore) updateSecret(ctx context.Context, secret *corev1.Secret) error {
	return s.c.Update(ctx, secret)
}

func (s clientStore) getWebhookConfig(ctx context.Context, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	return cfg, s.c.Get(ctx, client.ObjectKey{Name: name}, cfg)
}

func (s clientStore) patchWebhookConfig(ctx context.Context, name string, patch []byte) error {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	return s.c.Patch(ctx, cfg, client.RawPatch(types.StrategicMergePatchType, patch))
}

func newTestLeader(t *testing.T, c client.Client, clk *clocktesting.FakeClock, o Options) *leader {
	t.Helper()
	o.Namespace = testSecret.Namespace
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return &leader{
		store:         clientStore{c},
		policy:        o.policy(),
		secret:        testSecret,
		webhookConfig: WebhookConfigName,
		delay:         o.PropagationDelay,
		clock:         clk,
		log:           testr.New(t),
		wake:          make(chan struct{}, 1),
	}
}

// snapshot is what the API server and the replicas could see from at.
type snapshot struct {
	at       time.Time
	bundles  [][]byte // caBundle of each webhook
	serving  *x509.Certificate
	caBundle bundle // the Secret's
	version  string // the Secret's resourceVersion
}

func takeSnapshot(t *testing.T, c client.Client, at time.Time) snapshot {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{}
	if err := c.Get(ctx, testSecret, secret); err != nil {
		t.Fatal(err)
	}
	s, err := parseState(secret.Data)
	if err != nil || s.serving == nil {
		t.Fatalf("invalid Secret: %v", err)
	}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: WebhookConfigName}, cfg); err != nil {
		t.Fatal(err)
	}
	snap := snapshot{at: at, serving: s.serving.Cert, caBundle: s.cas, version: secret.ResourceVersion}
	for _, w := range cfg.Webhooks {
		snap.bundles = append(snap.bundles, w.ClientConfig.CABundle)
	}
	return snap
}

// TestLeaderRotation runs the leader for years of a fake clock with the
// default lifetimes and checks after every change that the API server
// trusts whatever a replica may serve: each caBundle it may still use (one
// set less than the propagation delay ago) trusts each serving certificate
// a replica may still serve (one in the Secret less than the delay ago).
func TestLeaderRotation(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(t0)
	c := fake.NewClientBuilder().WithObjects(testWebhookConfig()).Build()
	l := newTestLeader(t, c, clk, Options{})
	end := t0.Add(3 * 365 * 24 * time.Hour)

	var history []snapshot
	cas, servings, writes := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := 0; clk.Now().Before(end); i++ {
		if i > 1000 {
			t.Fatal("no end in sight: a rotation loop?")
		}
		next, err := l.reconcile(ctx)
		if err != nil {
			t.Fatalf("at %s: %v", clk.Now(), err)
		}
		now := clk.Now()
		snap := takeSnapshot(t, c, now)
		for _, b := range snap.bundles {
			if !bytes.Equal(b, snap.caBundle.encode()) {
				t.Fatalf("at %s: a webhook's caBundle is not the Secret's", now)
			}
		}
		history = append(history, snap)
		cas[snap.caBundle.newest().Subject.CommonName] = true
		servings[snap.serving.SerialNumber.String()] = true
		writes[snap.version] = true
		for _, seen := range visible(history, now.Add(-l.delay)) {
			for _, b := range seen.bundles {
				ca, err := parseBundle(b)
				if err != nil {
					t.Fatal(err)
				}
				if !ca.verifies(snap.serving, now) {
					t.Errorf("at %s: the caBundle of %s does not trust the new serving certificate", now, seen.at)
				}
			}
			if !snap.caBundle.verifies(seen.serving, now) {
				t.Errorf("at %s: the caBundle does not trust the serving certificate of %s", now, seen.at)
			}
		}
		if next.After(now) {
			clk.SetTime(next)
		}
	}
	// A CA about every 8 months, a serving certificate every 2.
	if len(cas) < 4 || len(servings) < 16 {
		t.Errorf("%d CAs and %d serving certificates in 3 years, want at least 4 and 16", len(cas), len(servings))
	}
	// Each CA takes three writes (new CA, switch, drop the old one), each
	// serving certificate one, the first CA and certificate one.
	if want := 2*len(cas) + len(servings) - 2; len(writes) != want {
		t.Errorf("%d writes for %d CAs and %d serving certificates, want %d", len(writes), len(cas), len(servings), want)
	}
}

// visible are the snapshots still visible to someone who lags behind
// until since: the last one before since and all after.
func visible(history []snapshot, since time.Time) []snapshot {
	for i := len(history) - 1; i >= 0; i-- {
		if !history[i].at.After(since) {
			return history[i:]
		}
	}
	return history
}

// TestLeaderRace runs a second leader in the middle of the first one's
// reconcile, between its read and its write: the first one's write fails
// on the second one's, and its next reconcile continues from it instead of
// writing again.
func TestLeaderRace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		start      time.Duration // from the first Secret
		wantErr    func(error) bool
		wantChange bool
	}{
		{"both create the Secret", -1, apierrors.IsAlreadyExists, true},
		{"both renew the serving certificate", 61 * 24 * time.Hour, apierrors.IsConflict, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clk := clocktesting.NewFakeClock(t0)
			base := fake.NewClientBuilder().WithObjects(testWebhookConfig()).Build()
			if tc.start >= 0 {
				if _, err := newTestLeader(t, base, clk, Options{}).reconcile(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Step(tc.start)
			}
			before := secretData(t, base)
			other := newTestLeader(t, base, clk, Options{})
			meanwhile := func(ctx context.Context) {
				if _, err := other.reconcile(ctx); err != nil {
					t.Fatalf("the other leader: %v", err)
				}
			}
			c := interceptor.NewClient(base, interceptor.Funcs{
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					meanwhile(ctx)
					return c.Create(ctx, obj, opts...)
				},
				Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
					meanwhile(ctx)
					return c.Update(ctx, obj, opts...)
				},
			})
			l := newTestLeader(t, c, clk, Options{})
			if _, err := l.reconcile(ctx); !tc.wantErr(err) {
				t.Fatalf("first reconcile: %v", err)
			}
			theirs := secretData(t, base)
			if bytes.Equal(theirs[keyCert], before[keyCert]) == tc.wantChange {
				t.Errorf("the other leader changed the serving certificate: %v, want %v", !tc.wantChange, tc.wantChange)
			}
			if _, err := l.reconcile(ctx); err != nil {
				t.Fatalf("second reconcile: %v", err)
			}
			if got := secretData(t, base); !bytes.Equal(got[keyCert], theirs[keyCert]) || !bytes.Equal(got[keyCABundle], theirs[keyCABundle]) {
				t.Error("the second reconcile wrote again instead of continuing from the other leader's Secret")
			}
		})
	}
}

// TestLeaderPatchConflict checks that the caBundle is patched at the
// resourceVersion the leader read, not over a change made meanwhile.
func TestLeaderPatchConflict(t *testing.T) {
	ctx := context.Background()
	base := fake.NewClientBuilder().WithObjects(testWebhookConfig()).Build()
	c := interceptor.NewClient(base, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			cfg := testWebhookConfig()
			if err := c.Get(ctx, client.ObjectKeyFromObject(cfg), cfg); err != nil {
				return err
			}
			cfg.Webhooks = cfg.Webhooks[:1]
			if err := c.Update(ctx, cfg); err != nil {
				return err
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	_, err := newTestLeader(t, c, clocktesting.NewFakeClock(t0), Options{}).reconcile(ctx)
	if !apierrors.IsConflict(err) {
		t.Errorf("error %v, want a conflict", err)
	}
}

func secretData(t *testing.T, c client.Client) map[string][]byte {
	t.Helper()
	secret := &corev1.Secret{}
	if err := c.Get(context.Background(), testSecret, secret); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return secret.Data
}

// TestLeaderRepairs checks that the leader replaces what others broke.
func TestLeaderRepairs(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		breakIt  func(secret *corev1.Secret, cfg *admissionregistrationv1.MutatingWebhookConfiguration)
		sameCA   bool
		sameCert bool
	}{
		{"caBundle emptied", func(_ *corev1.Secret, cfg *admissionregistrationv1.MutatingWebhookConfiguration) {
			cfg.Webhooks[1].ClientConfig.CABundle = nil
		}, true, true},
		{"serving key garbled", func(s *corev1.Secret, _ *admissionregistrationv1.MutatingWebhookConfiguration) {
			s.Data[keyKey] = []byte("garbage")
		}, true, false},
		{"CA key lost", func(s *corev1.Secret, _ *admissionregistrationv1.MutatingWebhookConfiguration) {
			delete(s.Data, keyCAKey)
		}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(t0)
			c := fake.NewClientBuilder().WithObjects(testWebhookConfig()).Build()
			l := newTestLeader(t, c, clk, Options{})
			if _, err := l.reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			before := takeSnapshot(t, c, clk.Now())
			secret := &corev1.Secret{}
			cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := c.Get(ctx, testSecret, secret); err != nil {
				t.Fatal(err)
			}
			if err := c.Get(ctx, client.ObjectKey{Name: WebhookConfigName}, cfg); err != nil {
				t.Fatal(err)
			}
			tc.breakIt(secret, cfg)
			if err := c.Update(ctx, secret); err != nil {
				t.Fatal(err)
			}
			if err := c.Update(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			clk.Step(time.Minute)
			if _, err := l.reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			after := takeSnapshot(t, c, clk.Now())
			for _, b := range after.bundles {
				if !bytes.Equal(b, after.caBundle.encode()) {
					t.Error("a webhook's caBundle is not the Secret's")
				}
			}
			if !after.caBundle.verifies(after.serving, clk.Now()) {
				t.Error("the bundle does not trust the serving certificate")
			}
			if got := after.caBundle.newest().Equal(before.caBundle.newest()); got != tc.sameCA {
				t.Errorf("same CA: %v, want %v", got, tc.sameCA)
			}
			if got := after.serving.Equal(before.serving); got != tc.sameCert {
				t.Errorf("same serving certificate: %v, want %v", got, tc.sameCert)
			}
		})
	}
}

func TestLeaderWithoutWebhookConfig(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	c := fake.NewClientBuilder().Build()
	_, err := newTestLeader(t, c, clk, Options{}).reconcile(context.Background())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "MutatingWebhookConfiguration") {
		t.Errorf("error %v, want the webhook configuration not found", err)
	}
	if secretData(t, c) == nil {
		t.Error("no Secret: the replicas would never be ready")
	}
}

// TestLeaderStart runs the leader's loop on a fake clock: it creates the
// Secret at once, renews when the clock reaches the renewal time, and
// restores a caBundle changed meanwhile as soon as it is woken up.
func TestLeaderStart(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	c := fake.NewClientBuilder().WithObjects(testWebhookConfig()).Build()
	l := newTestLeader(t, c, clk, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	testutil.WaitFor(t, 10*time.Second, "the Secret", func() bool { return secretData(t, c) != nil && clk.HasWaiters() })
	first := takeSnapshot(t, c, clk.Now())

	clk.SetTime(renewAt(first.serving))
	testutil.WaitFor(t, 10*time.Second, "a renewal", func() bool {
		return !bytes.Equal(secretData(t, c)[keyCert], first.serving.Raw) && clk.HasWaiters()
	})
	if got := takeSnapshot(t, c, clk.Now()); got.serving.Equal(first.serving) || !got.caBundle.newest().Equal(first.caBundle.newest()) {
		t.Error("want a new serving certificate under the same CA")
	}

	cfg := testWebhookConfig()
	if err := c.Get(ctx, client.ObjectKeyFromObject(cfg), cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks[0].ClientConfig.CABundle = nil
	if err := c.Update(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	l.poke()
	testutil.WaitFor(t, 10*time.Second, "the caBundle restored", func() bool {
		snap := takeSnapshot(t, c, clk.Now())
		return bytes.Equal(snap.bundles[0], snap.caBundle.encode())
	})
}

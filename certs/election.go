package certs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// leases is the Lease API as the election uses it.
type leases interface {
	getLease(ctx context.Context, key types.NamespacedName) (*coordinationv1.Lease, error)
	createLease(ctx context.Context, l *coordinationv1.Lease) error
	updateLease(ctx context.Context, l *coordinationv1.Lease) error
	createEvent(ctx context.Context, ev *corev1.Event) error
}

// errLostLease is returned when the leader could not renew its Lease in
// time: another replica may lead now, so this one stops writing.
var errLostLease = errors.New("certs: lost the Lease: could not renew it within the renew deadline")

// election elects one replica leader on a Lease, as client-go's
// leaderelection does (whose resource locks would link client-go's
// clientsets): a replica takes the Lease when it is free or its holder
// has not renewed it for its duration, measured on this replica's clock
// from when it last saw the Lease change, so clock skew between replicas
// does not matter.
type election struct {
	leases   leases
	key      types.NamespacedName
	identity string
	timing   Timing
	clock    clock.Clock
	log      logr.Logger

	// observed is the Lease as last seen, and observedAt when it last
	// changed.
	observed    coordinationv1.LeaseSpec
	observedAt  time.Time
	observedUID types.UID
}

// run leads until ctx is done: it waits for the Lease, then calls lead
// with a context that ends when ctx does or the Lease is lost, and renews
// the Lease meanwhile. Once ctx is done and lead has returned it frees
// the Lease for the next leader and returns nil; errLostLease if the
// Lease was lost.
func (e *election) run(ctx context.Context, lead func(context.Context)) error {
	e.log.Info("waiting for the Lease", "lease", e.key, "identity", e.identity)
	for !e.tryAcquireOrRenew(ctx) {
		if !e.wait(ctx, e.timing.RetryPeriod) {
			return nil
		}
	}
	e.log.Info("holding the Lease", "lease", e.key, "identity", e.identity)
	e.record(ctx, e.identity+" became leader")
	leadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(leadCtx)
	}()
	stop := func() {
		cancel()
		<-done
	}
	renewed := e.clock.Now()
	for {
		if !e.wait(ctx, e.timing.RetryPeriod) {
			stop()
			e.release()
			return nil
		}
		if e.tryAcquireOrRenew(ctx) {
			renewed = e.clock.Now()
			continue
		}
		if e.clock.Since(renewed) > e.timing.RenewDeadline {
			stop()
			return errLostLease
		}
	}
}

// wait waits for d, and reports false if ctx ended first.
func (e *election) wait(ctx context.Context, d time.Duration) bool {
	t := e.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// tryAcquireOrRenew takes or renews the Lease, and reports whether this
// replica holds it now.
func (e *election) tryAcquireOrRenew(ctx context.Context) bool {
	now := e.clock.Now()
	lease, err := e.leases.getLease(ctx, e.key)
	write, verb := e.leases.updateLease, "update"
	switch {
	case apierrors.IsNotFound(err):
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: e.key.Name, Namespace: e.key.Namespace}}
		write, verb = e.leases.createLease, "create"
	case err != nil:
		e.log.Error(err, "reading the Lease", "lease", e.key)
		return false
	default:
		e.observe(lease.Spec, now)
		if holder := ptr.Deref(lease.Spec.HolderIdentity, ""); holder != e.identity && holder != "" && now.Before(e.expiry()) {
			return false
		}
	}
	e.hold(lease, now)
	if err := write(ctx, lease); err != nil {
		e.log.V(1).Info("could not "+verb+" the Lease", "lease", e.key, "reason", err.Error())
		return false
	}
	e.observe(lease.Spec, now)
	e.observedUID = lease.UID
	return true
}

// record leaves an Event on the Lease, as client-go's leader election
// does, for kubectl describe; failing to is not worth more than a log line.
func (e *election) record(ctx context.Context, message string) {
	now := metav1.NewTime(e.clock.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", e.key.Name, now.UnixNano()), Namespace: e.key.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: coordinationv1.SchemeGroupVersion.String(), Kind: "Lease",
			Namespace: e.key.Namespace, Name: e.key.Name, UID: e.observedUID,
		},
		Reason:              "LeaderElection",
		Message:             message,
		Type:                corev1.EventTypeNormal,
		Source:              corev1.EventSource{Component: LeaseName},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: LeaseName,
		ReportingInstance:   e.identity,
	}
	if err := e.leases.createEvent(ctx, ev); err != nil {
		e.log.Error(err, "recording an Event on the Lease", "lease", e.key)
	}
}

// hold makes lease this replica's, renewed at now.
func (e *election) hold(lease *coordinationv1.Lease, now time.Time) {
	s := &lease.Spec
	if ptr.Deref(s.HolderIdentity, "") != e.identity {
		if lease.ResourceVersion != "" {
			s.LeaseTransitions = ptr.To(ptr.Deref(s.LeaseTransitions, 0) + 1)
		}
		s.HolderIdentity = ptr.To(e.identity)
		s.AcquireTime = &metav1.MicroTime{Time: now}
	}
	s.LeaseDurationSeconds = ptr.To(int32(e.timing.LeaseDuration.Round(time.Second) / time.Second))
	s.RenewTime = &metav1.MicroTime{Time: now}
}

// observe notes spec, as seen at now.
func (e *election) observe(spec coordinationv1.LeaseSpec, now time.Time) {
	renewed := func(s coordinationv1.LeaseSpec) time.Time { return ptr.Deref(s.RenewTime, metav1.MicroTime{}).Time }
	if ptr.Deref(spec.HolderIdentity, "") != ptr.Deref(e.observed.HolderIdentity, "") || !renewed(spec).Equal(renewed(e.observed)) {
		e.observed, e.observedAt = spec, now
	}
}

// expiry is when the Lease as observed runs out.
func (e *election) expiry() time.Time {
	d := e.timing.LeaseDuration
	if s := e.observed.LeaseDurationSeconds; s != nil {
		d = time.Duration(*s) * time.Second
	}
	return e.observedAt.Add(d)
}

// release frees the Lease if this replica holds it, so that the next
// leader need not wait for it to run out.
func (e *election) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.timing.RetryPeriod)
	defer cancel()
	lease, err := e.leases.getLease(ctx, e.key)
	if err != nil || ptr.Deref(lease.Spec.HolderIdentity, "") != e.identity {
		return
	}
	lease.Spec.HolderIdentity = nil
	lease.Spec.LeaseDurationSeconds = ptr.To[int32](1)
	lease.Spec.RenewTime = &metav1.MicroTime{Time: e.clock.Now()}
	if err := e.leases.updateLease(ctx, lease); err != nil {
		e.log.Error(err, "freeing the Lease", "lease", e.key)
		return
	}
	e.log.Info("freed the Lease", "lease", e.key)
}

// Timing is the leader election's timing: the defaults are client-go's.
type Timing struct {
	// LeaseDuration is how long the other replicas wait after the last
	// renewal they saw before taking the Lease.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps writing without
	// renewing the Lease; it must be shorter than LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is the time between two attempts to take or renew the
	// Lease.
	RetryPeriod time.Duration
}

// Default leader election timing.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// withDefaults fills in the zero fields and checks the order.
func (t Timing) withDefaults() (Timing, error) {
	t.LeaseDuration = cmp.Or(t.LeaseDuration, DefaultLeaseDuration)
	t.RenewDeadline = cmp.Or(t.RenewDeadline, DefaultRenewDeadline)
	t.RetryPeriod = cmp.Or(t.RetryPeriod, DefaultRetryPeriod)
	if !(0 < t.RetryPeriod && t.RetryPeriod < t.RenewDeadline && t.RenewDeadline < t.LeaseDuration) || t.LeaseDuration < time.Second {
		return t, fmt.Errorf("certs: leader election timing: want 0 < retry period (%s) < renew deadline (%s) < lease duration (%s), and a lease of at least 1s",
			t.RetryPeriod, t.RenewDeadline, t.LeaseDuration)
	}
	return t, nil
}

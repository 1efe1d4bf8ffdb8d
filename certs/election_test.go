package certs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// memLeases keeps one Lease as the API server would: resourceVersions,
// conflicts, not found and already exists.
type memLeases struct {
	mu      sync.Mutex
	lease   *coordinationv1.Lease
	version int
	events  []string
	// broken fails every write, as an unreachable API server would.
	broken atomic.Bool
}

var leaseResource = schema.GroupResource{Group: coordinationv1.GroupName, Resource: resourceLeases}

func (m *memLeases) getLease(_ context.Context, key types.NamespacedName) (*coordinationv1.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lease == nil {
		return nil, apierrors.NewNotFound(leaseResource, key.Name)
	}
	return m.lease.DeepCopy(), nil
}

func (m *memLeases) write(l *coordinationv1.Lease) {
	m.version++
	l.ResourceVersion = string(rune('0' + m.version))
	m.lease = l.DeepCopy()
}

func (m *memLeases) createLease(_ context.Context, l *coordinationv1.Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.broken.Load():
		return errors.New("connection refused")
	case m.lease != nil:
		return apierrors.NewAlreadyExists(leaseResource, l.Name)
	}
	m.write(l)
	return nil
}

func (m *memLeases) updateLease(_ context.Context, l *coordinationv1.Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.broken.Load():
		return errors.New("connection refused")
	case m.lease == nil:
		return apierrors.NewNotFound(leaseResource, l.Name)
	case m.lease.ResourceVersion != l.ResourceVersion:
		return apierrors.NewConflict(leaseResource, l.Name, errors.New("changed meanwhile"))
	}
	m.write(l)
	return nil
}

func (m *memLeases) createEvent(_ context.Context, ev *corev1.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, ev.Message)
	return nil
}

func (m *memLeases) holder() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lease == nil {
		return ""
	}
	return ptr.Deref(m.lease.Spec.HolderIdentity, "")
}

// TestElection runs two replicas' elections on a fake clock: one leads
// and renews, the other waits; the leader that cannot renew stops leading
// within the renew deadline; the other takes the Lease once it has not
// changed for the lease duration, records an Event, and frees the Lease
// when it stops.
func TestElection(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	api := &memLeases{}
	timing, err := Timing{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	newElection := func(identity string) *election {
		return &election{leases: api, key: types.NamespacedName{Namespace: "ns", Name: LeaseName}, identity: identity,
			timing: timing, clock: clk, log: testr.New(t)}
	}
	a, b := newElection("a"), newElection("b")
	ctx := context.Background()

	aLeads, aDone := make(chan struct{}), make(chan error, 1)
	var aStopped atomic.Bool
	go func() {
		aDone <- a.run(ctx, func(ctx context.Context) {
			close(aLeads)
			<-ctx.Done()
			aStopped.Store(true)
		})
	}()
	<-aLeads
	if b.tryAcquireOrRenew(ctx) {
		t.Fatal("b took the Lease a holds")
	}
	// a renews every retry period: however long that goes on, b waits.
	var bLooked time.Time // when b last saw the Lease change
	for range 3 {
		testutil.WaitFor(t, 5*time.Second, "a waiting to renew", clk.HasWaiters)
		clk.Step(timing.LeaseDuration)
		testutil.WaitFor(t, 5*time.Second, "a's renewal", func() bool {
			api.mu.Lock()
			defer api.mu.Unlock()
			return api.lease.Spec.RenewTime.Time.Equal(clk.Now())
		})
		if b.tryAcquireOrRenew(ctx) {
			t.Fatal("b took the Lease a renews")
		}
		bLooked = clk.Now()
	}

	// The API server becomes unreachable: a stops leading once the renew
	// deadline has passed, and says so.
	api.broken.Store(true)
	for !aStopped.Load() {
		testutil.WaitFor(t, 5*time.Second, "a waiting to renew", func() bool { return clk.HasWaiters() || aStopped.Load() })
		clk.Step(timing.RetryPeriod)
		select {
		case err := <-aDone:
			if !errors.Is(err, errLostLease) {
				t.Fatalf("a stopped with %v, want errLostLease", err)
			}
			if !aStopped.Load() {
				t.Fatal("a's run returned before its leading ended")
			}
			aDone <- err
		default:
		}
	}
	if err := <-aDone; !errors.Is(err, errLostLease) {
		t.Fatalf("a stopped with %v, want errLostLease", err)
	}

	// Reachable again: b takes the Lease only when it has not changed for
	// the lease duration since b saw it change, as b's clock measures it.
	api.broken.Store(false)
	clk.SetTime(bLooked.Add(timing.LeaseDuration - time.Second))
	if b.tryAcquireOrRenew(ctx) {
		t.Fatal("b took the Lease before it ran out")
	}
	clk.Step(time.Second)
	bCtx, cancel := context.WithCancel(ctx)
	bLeads, bDone := make(chan struct{}), make(chan error, 1)
	go func() { bDone <- b.run(bCtx, func(context.Context) { close(bLeads) }) }()
	<-bLeads
	if got := api.holder(); got != "b" {
		t.Fatalf("holder %q, want b", got)
	}
	api.mu.Lock()
	transitions, events := ptr.Deref(api.lease.Spec.LeaseTransitions, 0), append([]string(nil), api.events...)
	api.mu.Unlock()
	if transitions != 1 {
		t.Errorf("lease transitions %d, want 1", transitions)
	}
	if want := []string{"a became leader", "b became leader"}; len(events) != 2 || events[0] != want[0] || events[1] != want[1] {
		t.Errorf("events %q, want %q", events, want)
	}

	cancel()
	if err := <-bDone; err != nil {
		t.Fatalf("b stopped with %v", err)
	}
	if got := api.holder(); got != "" {
		t.Errorf("holder %q after b stopped, want the Lease freed", got)
	}
}

// TestTiming checks the election timing's defaults and order.
func TestTiming(t *testing.T) {
	tests := []struct {
		name    string
		in      Timing
		wantErr bool
	}{
		{"defaults", Timing{}, false},
		{"short", Timing{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond}, false},
		{"renew deadline not below the lease", Timing{LeaseDuration: 4 * time.Second, RenewDeadline: 4 * time.Second}, true},
		{"retry period not below the deadline", Timing{RetryPeriod: 10 * time.Second}, true},
		{"lease under a second", Timing{LeaseDuration: 500 * time.Millisecond, RenewDeadline: 400 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want one: %v", err, tt.wantErr)
			}
			if err == nil && (got.LeaseDuration == 0 || got.RenewDeadline == 0 || got.RetryPeriod == 0) {
				t.Errorf("zero field left in %+v", got)
			}
		})
	}
}

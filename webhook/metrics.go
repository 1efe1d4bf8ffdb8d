package webhook

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an admission, the values of the metrics' outcome label.
const (
	// outcomeInjected: the pod was patched (first injection, or AWS
	// identity added on reinvocation).
	outcomeInjected = "injected"
	// outcomeSkipped: the pod was admitted unchanged.
	outcomeSkipped = "skipped"
	// outcomeDenied: an annotation was invalid or collided with the pod.
	outcomeDenied = "denied"
	// outcomeError: the request could not be read.
	outcomeError = "error"
)

// metrics are the webhook's Prometheus metrics:
//
//	ecr_token_refresh_webhook_admissions_total{outcome}          counter
//	ecr_token_refresh_webhook_admission_duration_seconds{outcome} histogram
//
// The duration is the decision's own work on a request that was read:
// decoding the pod, deciding and encoding the patch; not reading the
// request or writing the answer.
type metrics struct {
	admissions *prometheus.CounterVec
	duration   *prometheus.HistogramVec
}

// newMetrics creates the metrics in reg. Metrics that reg already holds
// (a second handler in the same process) are shared.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	admissions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ecr_token_refresh_webhook_admissions_total",
		Help: "Pod admissions handled by the ecr-token-refresh webhook, by outcome (injected, skipped, denied, error).",
	}, []string{"outcome"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ecr_token_refresh_webhook_admission_duration_seconds",
		Help:    "Time the ecr-token-refresh webhook spent deciding on a pod admission, by outcome.",
		Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1},
	}, []string{"outcome"})
	m := &metrics{}
	var err error
	if m.admissions, err = register(reg, admissions); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	for _, o := range []string{outcomeInjected, outcomeSkipped, outcomeDenied, outcomeError} {
		m.admissions.WithLabelValues(o)
	}
	return m, nil
}

// register registers c in reg, or returns the collector reg already holds.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// observe records one admission.
func (m *metrics) observe(outcome string, d time.Duration) {
	m.admissions.WithLabelValues(outcome).Inc()
	m.duration.WithLabelValues(outcome).Observe(d.Seconds())
}

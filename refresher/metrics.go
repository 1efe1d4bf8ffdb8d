package refresher

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the sidecar's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	lastSuccess *prometheus.GaugeVec
	expiry      *prometheus.GaugeVec
	refreshes   *prometheus.CounterVec
	calls       *prometheus.HistogramVec
	reloads     *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	registry := []string{"registry_id", "region", "password_file"}
	m := &Metrics{
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ecr_token_refresh_last_success_timestamp_seconds",
			Help: "When the registry's password file was last written with a fresh token (Unix time).",
		}, registry),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ecr_token_refresh_token_expiry_timestamp_seconds",
			Help: "When the token in the registry's password file expires (Unix time).",
		}, registry),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecr_token_refresh_refreshes_total",
			Help: "Refreshes of a registry's files, by result (success, failure).",
		}, append(registry, "result")),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ecr_token_refresh_api_call_duration_seconds",
			Help:    "Latency of ECR GetAuthorizationToken calls, SDK retries included, by region and result (success or the AWS error code).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 13),
		}, []string{"region", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecr_token_refresh_config_reloads_total",
			Help: "Config file reloads, by result (success, failure).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.lastSuccess, m.expiry, m.refreshes, m.calls, m.reloads)
	return m
}

func (m *Metrics) observeCall(region string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = errorCode(err)
	}
	m.calls.WithLabelValues(region, result).Observe(d.Seconds())
}

func (m *Metrics) observeRefresh(r Registry, ok bool, tok Token, now time.Time) {
	if m == nil {
		return
	}
	labels := []string{r.RegistryID, r.Region, r.PasswordFile}
	if !ok {
		m.refreshes.WithLabelValues(append(labels, "failure")...).Inc()
		return
	}
	m.refreshes.WithLabelValues(append(labels, "success")...).Inc()
	m.lastSuccess.WithLabelValues(labels...).Set(float64(now.Unix()))
	m.expiry.WithLabelValues(labels...).Set(float64(tok.ExpiresAt.Unix()))
}

func (m *Metrics) observeReload(ok bool) {
	if m == nil {
		return
	}
	result := "success"
	if !ok {
		result = "failure"
	}
	m.reloads.WithLabelValues(result).Inc()
}

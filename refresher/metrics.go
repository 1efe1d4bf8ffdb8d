package refresher

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the sidecar's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	files   *fileMetrics
	calls   *prometheus.HistogramVec
	reloads *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		files: newFileMetrics(),
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
	reg.MustRegister(m.files, m.calls, m.reloads)
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
	m.files.observe(r, ok, tok, now)
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

// retain forgets the series of registries that regs no longer holds, so
// that a registry removed from the config stops reporting (and alerting on)
// a token nobody refreshes.
func (m *Metrics) retain(regs []Registry) {
	if m == nil {
		return
	}
	m.files.retain(regs)
}

// fileMetrics are the per-registry series:
//
//	ecr_token_refresh_last_success_timestamp_seconds{registry_id,region,password_file}
//	ecr_token_refresh_token_expiry_timestamp_seconds{registry_id,region,password_file}
//	ecr_token_refresh_refreshes_total{registry_id,region,password_file,result}
//
// It is a collector that builds the series only when scraped: between
// scrapes a registry costs one small map entry instead of a labelled child
// per series, which matters with hundreds of registries.
type fileMetrics struct {
	lastSuccess, expiry, refreshes *prometheus.Desc

	mu    sync.Mutex
	files map[fileKey]*fileStats
}

// fileKey is a registry's label values. The strings are the config's own.
type fileKey struct{ registryID, region, passwordFile string }

// fileStats is what the series of one registry report.
type fileStats struct {
	successes, failures uint64
	lastSuccess, expiry float64 // Unix seconds; set by the first success
}

func newFileMetrics() *fileMetrics {
	labels := []string{"registry_id", "region", "password_file"}
	return &fileMetrics{
		lastSuccess: prometheus.NewDesc("ecr_token_refresh_last_success_timestamp_seconds",
			"When the registry's password file was last written with a fresh token (Unix time).", labels, nil),
		expiry: prometheus.NewDesc("ecr_token_refresh_token_expiry_timestamp_seconds",
			"When the token in the registry's password file expires (Unix time).", labels, nil),
		refreshes: prometheus.NewDesc("ecr_token_refresh_refreshes_total",
			"Refreshes of a registry's files, by result (success, failure).", append(labels, "result"), nil),
		files: map[fileKey]*fileStats{},
	}
}

func (f *fileMetrics) observe(r Registry, ok bool, tok Token, now time.Time) {
	k := fileKey{r.RegistryID, r.Region, r.PasswordFile}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.files[k]
	if s == nil {
		s = &fileStats{}
		f.files[k] = s
	}
	if !ok {
		s.failures++
		return
	}
	s.successes++
	s.lastSuccess = float64(now.Unix())
	s.expiry = float64(tok.ExpiresAt.Unix())
}

func (f *fileMetrics) retain(regs []Registry) {
	keep := make(map[fileKey]bool, len(regs))
	for _, r := range regs {
		keep[fileKey{r.RegistryID, r.Region, r.PasswordFile}] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.files {
		if !keep[k] {
			delete(f.files, k)
		}
	}
}

// Describe implements prometheus.Collector.
func (f *fileMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- f.lastSuccess
	ch <- f.expiry
	ch <- f.refreshes
}

// Collect implements prometheus.Collector. A series appears once it has
// something to say: the success series and the timestamps after the first
// success, the failure series after the first failure.
func (f *fileMetrics) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, s := range f.files {
		if s.successes > 0 {
			ch <- prometheus.MustNewConstMetric(f.refreshes, prometheus.CounterValue, float64(s.successes), k.registryID, k.region, k.passwordFile, "success")
			ch <- prometheus.MustNewConstMetric(f.lastSuccess, prometheus.GaugeValue, s.lastSuccess, k.registryID, k.region, k.passwordFile)
			ch <- prometheus.MustNewConstMetric(f.expiry, prometheus.GaugeValue, s.expiry, k.registryID, k.region, k.passwordFile)
		}
		if s.failures > 0 {
			ch <- prometheus.MustNewConstMetric(f.refreshes, prometheus.CounterValue, float64(s.failures), k.registryID, k.region, k.passwordFile, "failure")
		}
	}
}

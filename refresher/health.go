package refresher

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultHealthAddr is the sidecar's health and metrics address, the
// original ecr-token-refresh's port.
const DefaultHealthAddr = ":3277"

// Handler serves the sidecar's probes and metrics:
//
//	/healthz  200 while the process runs; never depends on AWS
//	/health   the same, kept for probes written for the original tool
//	/readyz   200 only while every password file holds an unexpired token
//	/metrics  Prometheus metrics from gatherer
func (r *Refresher) Handler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	alive := func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }
	mux.HandleFunc("GET /healthz", alive)
	mux.HandleFunc("GET /health", alive)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if missing := r.NotReady(); len(missing) > 0 {
			http.Error(w, "not ready:\n"+strings.Join(missing, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}

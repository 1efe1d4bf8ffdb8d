// Package loadgen replays pod admissions against a mutating webhook as the
// Kubernetes API server sends them – POST application/json AdmissionReview
// v1, HTTP/1.1 keep-alive over TLS verified against the caBundle, one
// request per connection at a time – checks every answer, and measures
// throughput and latency. It also holds the ceiling: a bare net/http TLS
// server that reads the same requests and answers a fixed AdmissionReview,
// the most any webhook could do on the same machine.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Timeout bounds one request, as the API server's default webhook
// timeoutSeconds does.
const Timeout = 10 * time.Second

// Options configure a run.
type Options struct {
	// URL is the webhook's https URL, e.g.
	// https://127.0.0.1:9443/mutate-v1-pod?timeout=10s; required.
	URL string
	// RootCAs is the caBundle the server's certificate must verify
	// against; nil means the system's roots.
	RootCAs *x509.CertPool
	// ServerName is the name the certificate must hold; empty means the
	// URL's host.
	ServerName string
	// Pods are sent in turn: request i creates Pods[i%len(Pods)];
	// required.
	Pods []Pod
	// Conns is the number of connections, each carrying one request at a
	// time; 0 means 1.
	Conns int
	// Requests ends the run after this many requests in all; 0 means no
	// limit.
	Requests int
	// Duration ends the run after this long; 0 means no limit. The run
	// also ends when its context does. Neither interrupts a request: the
	// run stops starting new ones, and waits for those under way (each at
	// most [Timeout]).
	Duration time.Duration
	// RequestsPerConn closes a connection after this many requests, so
	// that the next one opens a new connection; 0 keeps connections open
	// as the API server does.
	RequestsPerConn int
	// OnHandshake, if set, is called with every verified TLS handshake,
	// from the connection's goroutine.
	OnHandshake func(tls.ConnectionState)
	// OnResult, if set, is called with every request's outcome, from the
	// connection's goroutine.
	OnResult func(Sample)
}

// Sample is the outcome of one request.
type Sample struct {
	// Start is when the request was started, Sent when it was written
	// completely (zero if it never was), End when its answer was read or
	// it failed.
	Start, Sent, End time.Time
	// Err is why there was no answer: a connection or TLS error, a timeout
	// or an HTTP status other than 200.
	Err error
	// Wrong is why the answer was not correct.
	Wrong error
}

// Result sums a run up.
type Result struct {
	// Requests is the number of requests sent (answered or not).
	Requests int
	// Errors is the number of requests without an answer (see
	// [Sample.Err]); Wrong the number of answers that were not correct.
	Errors, Wrong int
	// FirstError is the first error or wrong answer, for the message.
	FirstError error
	// Handshakes is the number of verified TLS handshakes.
	Handshakes int
	// Elapsed is the time from the first request's start to the last
	// answer.
	Elapsed time.Duration
	// P50, P90, P99 and Max are latency percentiles over the answered
	// requests (nearest rank).
	P50, P90, P99, Max time.Duration
	// Latencies are those of the answered requests, sorted.
	Latencies []time.Duration
}

// Answered is the number of requests that got an answer, right or wrong.
func (r Result) Answered() int { return r.Requests - r.Errors }

// RPS is the throughput: answers per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Answered()) / r.Elapsed.Seconds()
}

// String sums the result up in one line.
func (r Result) String() string {
	return fmt.Sprintf("%d requests in %s: %.0f answers/s, p50 %s p90 %s p99 %s max %s, %d errors, %d wrong, %d handshakes",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.RPS(), r.P50, r.P90, r.P99, r.Max, r.Errors, r.Wrong, r.Handshakes)
}

// Run sends requests as opts say until the run ends, and sums them up. Its
// error is about opts; what happened to the requests is in the Result.
func Run(ctx context.Context, opts Options) (Result, error) {
	u, err := url.Parse(opts.URL)
	switch {
	case err != nil:
		return Result{}, fmt.Errorf("loadgen: URL: %w", err)
	case u.Scheme != "https" || u.Host == "":
		return Result{}, fmt.Errorf("loadgen: URL: %q is not an https URL (e.g. https://127.0.0.1:9443/mutate-v1-pod)", opts.URL)
	case len(opts.Pods) == 0:
		return Result{}, errors.New("loadgen: Pods: at least one pod is required")
	case opts.Conns < 0 || opts.Requests < 0 || opts.Duration < 0 || opts.RequestsPerConn < 0:
		return Result{}, errors.New("loadgen: Conns, Requests, Duration and RequestsPerConn must not be negative")
	}
	templates := make([]template, len(opts.Pods))
	for i, p := range opts.Pods {
		if templates[i], err = newTemplate(p); err != nil {
			return Result{}, fmt.Errorf("loadgen: Pods[%d]: %w", i, err)
		}
	}
	conns := max(opts.Conns, 1)
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	var runID [4]byte
	_, _ = rand.Read(runID[:]) // never fails

	r := &run{opts: opts, url: u.String(), templates: templates, id: binary.BigEndian.Uint32(runID[:])}
	workers := make([]*worker, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		workers[i] = r.newWorker()
		wg.Go(func() { workers[i].loop(ctx) })
	}
	wg.Wait()
	parts := make([]Result, len(workers))
	for i, w := range workers {
		w.client.CloseIdleConnections()
		parts[i] = Result{Requests: w.requests, Errors: w.errors, Wrong: w.wrong, FirstError: w.firstError, Latencies: w.latencies}
	}
	res := Combine(parts...)
	res.Elapsed, res.Handshakes = time.Since(start), int(r.handshakes.Load())
	return res, nil
}

// Combine sums up runs made one after the other, e.g. in turns with
// another server's, as one: counts and elapsed times add up, latencies
// are pooled.
func Combine(results ...Result) Result {
	var res Result
	for _, r := range results {
		res.Requests += r.Requests
		res.Errors += r.Errors
		res.Wrong += r.Wrong
		res.Handshakes += r.Handshakes
		res.Elapsed += r.Elapsed
		if res.FirstError == nil {
			res.FirstError = r.FirstError
		}
		res.Latencies = append(res.Latencies, r.Latencies...)
	}
	if len(res.Latencies) > 0 {
		slices.Sort(res.Latencies)
		res.P50, res.P90, res.P99 = percentile(res.Latencies, 50), percentile(res.Latencies, 90), percentile(res.Latencies, 99)
		res.Max = res.Latencies[len(res.Latencies)-1]
	}
	return res
}

// run is the state the connections share.
type run struct {
	opts       Options
	url        string
	templates  []template
	id         uint32
	next       atomic.Int64 // index of the next request
	handshakes atomic.Int64
}

// worker is one connection and its own client, tallies and checker.
type worker struct {
	run     *run
	client  *http.Client
	checker checker

	requests, errors, wrong int
	firstError              error
	latencies               []time.Duration
}

func (r *run) newWorker() *worker {
	tlsConfig := &tls.Config{
		RootCAs:    r.opts.RootCAs,
		ServerName: r.opts.ServerName,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			r.handshakes.Add(1)
			if r.opts.OnHandshake != nil {
				r.opts.OnHandshake(cs)
			}
			return nil
		},
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: Timeout,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
	}
	w := &worker{run: r, client: &http.Client{Transport: transport, Timeout: Timeout}}
	if r.opts.Requests > 0 {
		w.latencies = make([]time.Duration, 0, r.opts.Requests/max(r.opts.Conns, 1)+1)
	}
	return w
}

// loop sends requests one after the other until the run ends.
func (w *worker) loop(ctx context.Context) {
	perConn := 0
	for ctx.Err() == nil {
		i := int(w.run.next.Add(1) - 1)
		if w.run.opts.Requests > 0 && i >= w.run.opts.Requests {
			return
		}
		w.send(i)
		if perConn++; w.run.opts.RequestsPerConn > 0 && perConn == w.run.opts.RequestsPerConn {
			w.client.CloseIdleConnections()
			perConn = 0
		}
	}
}

// send sends request i and checks its answer.
func (w *worker) send(i int) {
	podIndex := i % len(w.run.templates)
	t := &w.run.templates[podIndex]
	id := string(uid(nil, w.run.id, i))
	// A new body each time: the transport may still be writing the last
	// one when its answer is in.
	body := t.body(make([]byte, 0, len(t.before)+len(id)+len(t.after)), id)

	var s Sample
	req, err := http.NewRequest(http.MethodPost, w.run.url, bytes.NewReader(body))
	if err != nil {
		panic(err) // the URL was parsed in Run
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	req.Header.Set("User-Agent", "kube-apiserver-admission")
	// The transport reports the write from a goroutine of its own.
	var sent atomic.Pointer[time.Time]
	if w.run.opts.OnResult != nil {
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(info httptrace.WroteRequestInfo) {
				if info.Err == nil {
					now := time.Now()
					sent.Store(&now)
				}
			},
		}))
	}
	s.Start = time.Now()
	answer, err := w.roundTrip(req)
	s.End = time.Now()
	if t := sent.Load(); t != nil {
		s.Sent = *t
	}
	if s.Err = err; err == nil {
		s.Wrong = w.checker.check(t, podIndex, id, answer)
	}
	w.tally(s)
	if w.run.opts.OnResult != nil {
		w.run.opts.OnResult(s)
	}
}

// roundTrip sends req and returns the answer's body.
func (w *worker) roundTrip(req *http.Request) ([]byte, error) {
	res, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the answer: %w", err)
	case res.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %s: %.200s", res.Status, body)
	}
	return body, nil
}

// tally counts s.
func (w *worker) tally(s Sample) {
	w.requests++
	switch {
	case s.Err != nil:
		w.errors++
		if w.firstError == nil {
			w.firstError = s.Err
		}
		return
	case s.Wrong != nil:
		w.wrong++
		if w.firstError == nil {
			w.firstError = s.Wrong
		}
	}
	w.latencies = append(w.latencies, s.End.Sub(s.Start))
}

// percentile is the p-th percentile (0 < p <= 100) of sorted, which is not
// empty, by the nearest-rank method: the smallest value that at least p
// percent of the values do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

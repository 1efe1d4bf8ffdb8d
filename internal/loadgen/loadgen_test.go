package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testcerts"
	admissionv1 "k8s.io/api/admission/v1"
)

const testPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"spinnaker","uid":"not-the-request-uid"},` +
	`"spec":{"containers":[{"name":"app","image":"app"}]}}`

// answer is an AdmissionReview answer with uid "u", allowed as given and
// with patch (JSON) if not empty.
func answer(allowed bool, patch string) []byte {
	out := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"u","allowed":` + map[bool]string{true: "true", false: "false"}[allowed]
	if patch != "" {
		out += `,"patchType":"JSONPatch","patch":"` + base64.StdEncoding.EncodeToString([]byte(patch)) + `"`
	}
	return []byte(out + `}}`)
}

const (
	addLabel   = `[{"op":"add","path":"/metadata/labels","value":{"injected":"true"}}]`
	badPath    = `[{"op":"remove","path":"/spec/nothing"}]`
	changeNone = `[{"op":"test","path":"/kind","value":"Pod"}]`
)

// serve serves h over TLS on 127.0.0.1 with a certificate of a new CA,
// and returns its URL and that CA.
func serve(t *testing.T, h http.Handler) (string, *x509.CertPool) {
	t.Helper()
	cert, roots := testCert(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, cert)
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + l.Addr().String() + "/mutate-v1-pod?timeout=10s", roots
}

// testCert is a serving certificate for 127.0.0.1 and its CA.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca := testcerts.NewCA(t)
	return ca.Certificate(t), ca.Roots
}

func ceiling(t *testing.T, answer []byte) http.Handler {
	t.Helper()
	c, err := NewCeiling(answer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRun runs the load generator against the ceiling and against servers
// that answer wrongly, and checks what it counts.
func TestRun(t *testing.T) {
	_, otherCA := testCert(t)
	tests := []struct {
		name      string
		handler   func(t *testing.T) http.Handler
		wantPatch bool
		opts      Options // URL, RootCAs and Pods filled in
		untrusted bool    // verify against another CA
		want      Result  // Requests, Errors, Wrong, Handshakes
		wantErr   string  // in FirstError
	}{
		{name: "patch applies", wantPatch: true,
			handler: func(t *testing.T) http.Handler { return ceiling(t, answer(true, addLabel)) },
			opts:    Options{Conns: 4, Requests: 200},
			want:    Result{Requests: 200, Handshakes: 4}},
		{name: "no patch wanted, none given",
			handler: func(t *testing.T) http.Handler { return ceiling(t, []byte(DefaultAnswer)) },
			opts:    Options{Conns: 2, Requests: 50},
			want:    Result{Requests: 50, Handshakes: 2}},
		{name: "a patch where none is wanted",
			handler: func(t *testing.T) http.Handler { return ceiling(t, answer(true, addLabel)) },
			opts:    Options{Conns: 2, Requests: 50},
			want:    Result{Requests: 50, Wrong: 50, Handshakes: 2}, wantErr: "want no patch"},
		{name: "no patch where one is wanted", wantPatch: true,
			handler: func(t *testing.T) http.Handler { return ceiling(t, []byte(DefaultAnswer)) },
			opts:    Options{Requests: 10},
			want:    Result{Requests: 10, Wrong: 10, Handshakes: 1}, wantErr: "no patch"},
		{name: "patch does not apply", wantPatch: true,
			handler: func(t *testing.T) http.Handler { return ceiling(t, answer(true, badPath)) },
			opts:    Options{Requests: 10},
			want:    Result{Requests: 10, Wrong: 10, Handshakes: 1}, wantErr: "does not apply"},
		{name: "patch changes nothing", wantPatch: true,
			handler: func(t *testing.T) http.Handler { return ceiling(t, answer(true, changeNone)) },
			opts:    Options{Requests: 10},
			want:    Result{Requests: 10, Wrong: 10, Handshakes: 1}, wantErr: "changes nothing"},
		{name: "denied",
			handler: func(t *testing.T) http.Handler { return ceiling(t, answer(false, "")) },
			opts:    Options{Requests: 10},
			want:    Result{Requests: 10, Wrong: 10, Handshakes: 1}, wantErr: "denied"},
		{name: "uid not echoed",
			handler: func(t *testing.T) http.Handler { return fixed(answer(true, ""), "application/json", http.StatusOK) },
			opts:    Options{Requests: 10},
			want:    Result{Requests: 10, Wrong: 10, Handshakes: 1}, wantErr: `uid is "u"`},
		{name: "not an AdmissionReview",
			handler: func(t *testing.T) http.Handler {
				return fixed([]byte(`{"kind":"Status"}`), "application/json", http.StatusOK)
			},
			opts: Options{Requests: 10},
			want: Result{Requests: 10, Wrong: 10, Handshakes: 1}, wantErr: "want an admission.k8s.io/v1 AdmissionReview"},
		{name: "not JSON",
			handler: func(t *testing.T) http.Handler { return fixed([]byte(`ok`), "text/plain", http.StatusOK) },
			opts:    Options{Requests: 10},
			want:    Result{Requests: 10, Wrong: 10, Handshakes: 1}, wantErr: "not JSON"},
		{name: "HTTP 500",
			handler: func(t *testing.T) http.Handler {
				return fixed([]byte(`oops`), "text/plain", http.StatusInternalServerError)
			},
			opts: Options{Requests: 10},
			want: Result{Requests: 10, Errors: 10, Handshakes: 1}, wantErr: "HTTP 500"},
		{name: "certificate of another CA", untrusted: true,
			handler: func(t *testing.T) http.Handler { return ceiling(t, []byte(DefaultAnswer)) },
			opts:    Options{Requests: 10},
			want:    Result{Requests: 10, Errors: 10}, wantErr: "certificate signed by unknown authority"},
		{name: "a new connection every 10 requests",
			handler: func(t *testing.T) http.Handler { return ceiling(t, []byte(DefaultAnswer)) },
			opts:    Options{Requests: 100, RequestsPerConn: 10},
			want:    Result{Requests: 100, Handshakes: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.URL, opts.RootCAs = serve(t, tt.handler(t))
			if tt.untrusted {
				opts.RootCAs = otherCA
			}
			opts.Pods = []Pod{{Object: []byte(testPod), WantPatch: tt.wantPatch}}
			got, err := Run(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got.Requests != tt.want.Requests || got.Errors != tt.want.Errors || got.Wrong != tt.want.Wrong || got.Handshakes != tt.want.Handshakes {
				t.Errorf("got %s, want %d requests, %d errors, %d wrong, %d handshakes (first error: %v)",
					got, tt.want.Requests, tt.want.Errors, tt.want.Wrong, tt.want.Handshakes, got.FirstError)
			}
			switch {
			case tt.wantErr == "" && got.FirstError != nil:
				t.Errorf("first error %v, want none", got.FirstError)
			case tt.wantErr != "" && (got.FirstError == nil || !strings.Contains(got.FirstError.Error(), tt.wantErr)):
				t.Errorf("first error %v, want one containing %q", got.FirstError, tt.wantErr)
			}
			if answered := got.Answered(); answered > 0 && (got.P50 <= 0 || got.P50 > got.P90 || got.P90 > got.P99 || got.P99 > got.Max || got.RPS() <= 0) {
				t.Errorf("%d answers but latencies p50 %s p90 %s p99 %s max %s, %.0f answers/s", answered, got.P50, got.P90, got.P99, got.Max, got.RPS())
			}
		})
	}
}

// fixed answers body with the status and Content-Type, whatever the
// request.
func fixed(body []byte, contentType string, status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

// TestRunSendsAsTheAPIServer checks each request: method, headers,
// protocol, an AdmissionReview for creating the pod, and a uid of its own.
func TestRunSendsAsTheAPIServer(t *testing.T) {
	var mu sync.Mutex
	uids := map[string]bool{}
	var problems []string
	answerer := ceiling(t, []byte(DefaultAnswer))
	url, roots := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		var review admissionv1.AdmissionReview
		err = json.Unmarshal(body, &review)
		mu.Lock()
		switch req := review.Request; {
		case r.Method != http.MethodPost || r.Proto != "HTTP/1.1" || r.Header.Get("Content-Type") != "application/json" ||
			r.URL.RequestURI() != "/mutate-v1-pod?timeout=10s":
			problems = append(problems, r.Method+" "+r.Proto+" "+r.URL.RequestURI()+" "+r.Header.Get("Content-Type"))
		case err != nil || review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || req == nil:
			problems = append(problems, "not an AdmissionReview: "+string(body))
		case req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.Resource.Resource != "pods" || req.Namespace != "spinnaker" ||
			string(req.Object.Raw) != testPod:
			problems = append(problems, "not the pod's creation: "+string(body))
		case !regexp.MustCompile(`^[0-9a-f]{8}-0000-4000-8000-[0-9a-f]{12}$`).MatchString(string(req.UID)) || uids[string(req.UID)]:
			problems = append(problems, "uid "+string(req.UID)+" malformed or repeated")
		default:
			uids[string(req.UID)] = true
		}
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		answerer.ServeHTTP(w, r)
	}))
	res, err := Run(t.Context(), Options{URL: url, RootCAs: roots, Conns: 3, Requests: 30,
		Pods: []Pod{{Object: []byte(testPod)}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors+res.Wrong > 0 || len(uids) != 30 || len(problems) > 0 {
		t.Errorf("%s, %d uids (first error %v); problems: %q", res, len(uids), res.FirstError, problems)
	}
}

// TestRunEnds checks the ends of a run that has no request count: its
// duration and its context. Requests under way are not cut off.
func TestRunEnds(t *testing.T) {
	url, roots := serve(t, ceiling(t, []byte(DefaultAnswer)))
	pods := []Pod{{Object: []byte(testPod)}}
	t.Run("duration", func(t *testing.T) {
		res, err := Run(t.Context(), Options{URL: url, RootCAs: roots, Pods: pods, Conns: 2, Duration: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests == 0 || res.Errors+res.Wrong > 0 || res.Elapsed < 50*time.Millisecond {
			t.Errorf("%s (%v), want answers only, for 50ms at least", res, res.FirstError)
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var samples []Sample
		res, err := Run(ctx, Options{URL: url, RootCAs: roots, Pods: pods, OnResult: func(s Sample) {
			if samples = append(samples, s); len(samples) == 20 {
				cancel()
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests != 20 || res.Errors+res.Wrong > 0 {
			t.Errorf("%s (%v), want 20 answers: the run ends when its context does", res, res.FirstError)
		}
		for i, s := range samples {
			if s.Err != nil || s.Wrong != nil || s.Start.After(s.Sent) || s.Sent.After(s.End) {
				t.Errorf("sample %d: start %s, sent %s, end %s, error %v, wrong %v", i, s.Start, s.Sent, s.End, s.Err, s.Wrong)
			}
		}
	})
}

// TestRunSamplesUnsentRequests: a request that never reached the server
// has no Sent time and an error.
func TestRunSamplesUnsentRequests(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	var samples []Sample
	res, err := Run(t.Context(), Options{URL: "https://" + addr + "/", Pods: []Pod{{Object: []byte(testPod)}}, Requests: 3,
		OnResult: func(s Sample) { samples = append(samples, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 3 || len(samples) != 3 || !samples[0].Sent.IsZero() || !errors.Is(samples[0].Err, syscall.ECONNREFUSED) {
		t.Errorf("%s; samples %+v, want 3 refused and unsent", res, samples)
	}
}

// TestRunOptions checks that bad options are errors naming the field.
func TestRunOptions(t *testing.T) {
	pods := []Pod{{Object: []byte(testPod)}}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no URL", Options{Pods: pods}, "URL"},
		{"plain http", Options{URL: "http://127.0.0.1:9443/", Pods: pods}, "not an https URL"},
		{"no pods", Options{URL: "https://127.0.0.1:9443/"}, "Pods: at least one pod"},
		{"pod not JSON", Options{URL: "https://127.0.0.1:9443/", Pods: []Pod{{Object: []byte("kind: Pod")}}}, "Pods[0]: pod: not JSON"},
		{"negative connections", Options{URL: "https://127.0.0.1:9443/", Pods: pods, Conns: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(t.Context(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"one value", ms(7), 99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"median of five is the third", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(hundred...), 99, 99 * time.Millisecond},
		{"p90 of 100 is the 90th", ms(hundred...), 90, 90 * time.Millisecond},
		{"p99 of 10 is the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p100 is the largest", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"a tiny p is the smallest", ms(1, 2, 3), 0.1, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %s, want %s", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestReview(t *testing.T) {
	body, err := Review("u-1", []byte(testPod))
	if err != nil {
		t.Fatal(err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if r := review.Request; r == nil || r.UID != "u-1" || r.Operation != admissionv1.Create || r.Namespace != "spinnaker" ||
		string(r.Object.Raw) != testPod || r.Options.Raw == nil || r.UserInfo.Username == "" {
		t.Errorf("review %+v", review.Request)
	}
	if _, err := Review("u-1", []byte("{")); err == nil {
		t.Error("a pod that is not JSON gave no error")
	}
}

func TestNewCeiling(t *testing.T) {
	tests := []struct {
		name, answer, want string
	}{
		{"not JSON", `{`, "not JSON"},
		{"no response", `{"kind":"AdmissionReview"}`, "no response.uid"},
		{"no uid", `{"response":{"allowed":true}}`, "no response.uid"},
		{"another uid first", `{"request":{"uid":"a"},"response":{"uid":"b"}}`, "first uid is not its response.uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCeiling([]byte(tt.answer)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestCeilingServeHTTP: the ceiling answers its AdmissionReview with the
// request's uid, and a request without a uid with 400.
func TestCeilingServeHTTP(t *testing.T) {
	c := ceiling(t, answer(true, addLabel))
	body, err := Review("3f0c-42", []byte(testPod))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantUID    string
	}{
		{"review", string(body), http.StatusOK, "3f0c-42"},
		{"no uid", `{"request":{}}`, http.StatusBadRequest, ""},
		{"unterminated uid", `{"request":{"uid":"abc`, http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body)))
			if rec.Code != tt.wantStatus {
				t.Fatalf("HTTP %d %s, want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil || review.Response == nil ||
				string(review.Response.UID) != tt.wantUID || string(review.Response.Patch) != addLabel {
				t.Errorf("answer %s (%v)", rec.Body, err)
			}
			if rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

func TestCombine(t *testing.T) {
	ms := time.Millisecond
	first := errors.New("first")
	tests := []struct {
		name    string
		results []Result
		want    Result
	}{
		{"none", nil, Result{}},
		{"one", []Result{{Requests: 3, Errors: 1, Elapsed: 2 * ms, Latencies: []time.Duration{3 * ms, ms}, FirstError: first}},
			Result{Requests: 3, Errors: 1, Elapsed: 2 * ms, P50: ms, P90: 3 * ms, P99: 3 * ms, Max: 3 * ms, FirstError: first}},
		{"two in turns", []Result{
			{Requests: 2, Wrong: 1, Handshakes: 1, Elapsed: 10 * ms, Latencies: []time.Duration{ms, 2 * ms}},
			{Requests: 2, Errors: 1, Handshakes: 1, Elapsed: 30 * ms, Latencies: []time.Duration{4 * ms}, FirstError: first}},
			Result{Requests: 4, Errors: 1, Wrong: 1, Handshakes: 2, Elapsed: 40 * ms, P50: 2 * ms, P90: 4 * ms, P99: 4 * ms, Max: 4 * ms, FirstError: first}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Combine(tt.results...)
			if !slices.IsSorted(got.Latencies) || len(got.Latencies) != got.Answered() {
				t.Errorf("latencies %v: want %d, sorted", got.Latencies, got.Answered())
			}
			got.Latencies = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := (Result{Requests: 4, Errors: 1, Elapsed: 2 * time.Second}).RPS(); got != 1.5 {
		t.Errorf("3 answers in 2s: %v answers/s, want 1.5", got)
	}
}

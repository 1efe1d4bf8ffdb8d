package loadgen

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultAnswer is the ceiling's answer when none is given: the pod is
// allowed unchanged.
const DefaultAnswer = `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"","allowed":true}}`

// uidKey starts the first uid in an AdmissionReview: request.uid, which
// the API server encodes first, or response.uid in an answer.
var uidKey = []byte(`"uid":"`)

// Ceiling is the handler of the ceiling server: it reads the whole
// request and answers a fixed AdmissionReview with the request's uid – the
// least work a webhook can do and still be correct for one pod.
type Ceiling struct {
	before, after []byte // the answer around its uid
	bufs          sync.Pool
}

// NewCeiling returns a Ceiling that answers answer, an AdmissionReview
// whose response has a uid (any value: the request's replaces it).
func NewCeiling(answer []byte) (*Ceiling, error) {
	var review struct {
		Response *struct {
			UID *string `json:"uid"`
		} `json:"response"`
	}
	if err := json.Unmarshal(answer, &review); err != nil {
		return nil, fmt.Errorf("ceiling: the answer is not JSON: %w", err)
	}
	if review.Response == nil || review.Response.UID == nil {
		return nil, errors.New("ceiling: the answer has no response.uid")
	}
	start := bytes.Index(answer, uidKey)
	if start < 0 {
		return nil, errors.New(`ceiling: the answer's response.uid is not written "uid":"…"`)
	}
	start += len(uidKey)
	end := start + bytes.IndexByte(answer[start:], '"')
	if string(answer[start:end]) != *review.Response.UID {
		return nil, errors.New("ceiling: the answer's first uid is not its response.uid")
	}
	return &Ceiling{
		before: bytes.Clone(answer[:start]),
		after:  bytes.Clone(answer[end:]),
		bufs:   sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}, nil
}

// ServeHTTP answers one AdmissionReview.
func (c *Ceiling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := c.bufs.Get().(*bytes.Buffer)
	defer c.bufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body := buf.Bytes()
	start := bytes.Index(body, uidKey)
	if start < 0 {
		http.Error(w, "no uid in the request", http.StatusBadRequest)
		return
	}
	start += len(uidKey)
	end := bytes.IndexByte(body[start:], '"')
	if end < 0 {
		http.Error(w, "no uid in the request", http.StatusBadRequest)
		return
	}
	uid := body[start : start+end]
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(c.before) + len(uid) + len(c.after))}
	_, _ = w.Write(c.before)
	_, _ = w.Write(uid)
	_, _ = w.Write(c.after)
}

// NewServer returns an HTTPS server for h with cert, configured as the
// webhook's server is: TLS 1.2 at least, HTTP/1.1 only. Serve it with
// ServeTLS(listener, "", "").
func NewServer(h http.Handler, cert tls.Certificate) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		},
		// An empty map (not nil) keeps HTTP/2 off.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Path is the URL path the webhook is served at.
const Path = "/mutate-v1-pod"

// maxReviewBytes bounds an AdmissionReview's body. The API server sends at
// most its request limit (3 MiB) twice over, for an update's old and new
// objects; a create carries one.
const maxReviewBytes = 7 << 20

// bodies are the buffers request bodies are read into, reused: a pod's
// admission is a few KiB, read a few thousand times a second at most.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody is the largest buffer kept for reuse; a larger body's
// buffer is left to the garbage collector.
const maxPooledBody = 64 << 10

// podKind is the only kind the webhook handles.
var podKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// reviewTypeMeta is the type of every AdmissionReview the webhook answers.
var reviewTypeMeta = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}

// Options configure the webhook.
type Options struct {
	// SidecarImage is the image of the injected containers; required.
	SidecarImage string
	// Registerer receives the webhook's metrics; nil means
	// prometheus.DefaultRegisterer.
	Registerer prometheus.Registerer
	// Logger receives a line per injection, denial and unreadable
	// request; the zero value discards them.
	Logger logr.Logger
}

// Handler is the admission handler that injects the sidecar into pods. It
// serves AdmissionReviews over HTTP (ServeHTTP) and answers single
// requests (Review).
//
// Deciding on a pod is a pure function of the pod and its annotations.
type Handler struct {
	image   string
	metrics *metrics
	log     logr.Logger
}

// NewHandler returns the webhook's handler.
func NewHandler(opts Options) (*Handler, error) {
	if opts.SidecarImage == "" {
		return nil, errors.New("webhook: the sidecar image is required")
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("webhook: registering metrics: %w", err)
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	return &Handler{image: opts.SidecarImage, metrics: m, log: log}, nil
}

// ServeHTTP answers an AdmissionReview posted by the API server. A request
// that cannot be read still gets an AdmissionReview: an error answer with
// code 400, which the API server reports to the pod's creator.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "the webhook takes POSTed AdmissionReviews", http.StatusMethodNotAllowed)
		return
	}
	var resp *admissionv1.AdmissionResponse
	req, err := readReview(w, r)
	if err != nil {
		h.metrics.observe(outcomeError, 0)
		h.log.Error(err, "cannot read the AdmissionReview")
		resp = errored(http.StatusBadRequest, err)
	} else {
		resp = h.Review(r.Context(), req)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: reviewTypeMeta, Response: resp})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// readReview reads the request of the AdmissionReview in r's body.
func readReview(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionRequest, error) {
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return nil, fmt.Errorf("content type %q: expected application/json", r.Header.Get("Content-Type"))
	}
	buf := bodies.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			bodies.Put(buf)
		}
	}()
	if r.ContentLength > 0 && r.ContentLength <= maxReviewBytes {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxReviewBytes)); err != nil {
		return nil, fmt.Errorf("reading the AdmissionReview: %w", err)
	}
	// The request's object is copied out of buf (runtime.RawExtension
	// keeps a copy), so buf can serve the next request.
	var review admissionv1.AdmissionReview
	if err := jsonv2.Unmarshal(buf.Bytes(), &review); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	switch {
	case review.TypeMeta != reviewTypeMeta:
		return nil, fmt.Errorf("expected an %s %s, got %q %q", reviewTypeMeta.APIVersion, reviewTypeMeta.Kind, review.APIVersion, review.Kind)
	case review.Request == nil:
		return nil, errors.New("the AdmissionReview has no request")
	}
	return review.Request, nil
}

// Review answers one admission request: the pod unchanged, patched with
// the sidecar, or denied with the reason.
func (h *Handler) Review(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	start := time.Now()
	resp, outcome := h.decide(req)
	resp.UID = req.UID
	h.metrics.observe(outcome, time.Since(start))

	// Injections are counted in the metrics and logged at V(1) only: a
	// line each would cost a busy cluster more than the injection itself.
	switch outcome {
	case outcomeInjected:
		h.log.V(1).Info("patched pod", "uid", req.UID, "namespace", req.Namespace, "warnings", resp.Warnings)
	case outcomeDenied:
		h.log.Info("denied pod", "uid", req.UID, "namespace", req.Namespace, "reason", resp.Result.Message, "warnings", resp.Warnings)
	case outcomeError:
		h.log.Error(errors.New(resp.Result.Message), "cannot handle admission request", "uid", req.UID, "namespace", req.Namespace)
	}
	return resp
}

// decide answers req and names the outcome, for the metrics.
func (h *Handler) decide(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	if req.Operation != admissionv1.Create || req.SubResource != "" {
		return &admissionv1.AdmissionResponse{Allowed: true}, outcomeSkipped
	}
	if req.Kind != podKind {
		return errored(http.StatusBadRequest, fmt.Errorf("expected a v1 Pod, got %s", req.Kind.String())), outcomeError
	}
	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		return errored(http.StatusBadRequest, err), outcomeError
	}
	if pod.Status.Phase != "" && pod.Status.Phase != corev1.PodPending {
		return &admissionv1.AdmissionResponse{Allowed: true}, outcomeSkipped
	}

	warnings := unknownAnnotations(pod.Annotations)
	p, err := mutate(pod, h.image)
	switch {
	case err != nil:
		return &admissionv1.AdmissionResponse{
			Result:   &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: err.Error()},
			Warnings: warnings,
		}, outcomeDenied
	case len(p) == 0:
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}, outcomeSkipped
	}
	body, err := json.Marshal(p)
	if err != nil {
		return errored(http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err)), outcomeError
	}
	patchType := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: body, PatchType: &patchType, Warnings: warnings}, outcomeInjected
}

// errored is the answer to a request the webhook cannot handle.
func errored(code int32, err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: err.Error()}}
}

// mutate returns the patch for pod: none for a pod that does not opt in,
// the injection for one that does, and what appeared since (see reinvoke)
// for one injected before. Its error is the reason to deny the pod.
func mutate(pod *corev1.Pod, image string) (patch, error) {
	want, err := injectRequested(pod.Annotations)
	if err != nil || !want {
		return nil, err
	}
	if status, ok := pod.Annotations[AnnotationStatus]; ok {
		if status != StatusInjected {
			return nil, fmt.Errorf("%s: %q is written by the webhook (expected %q or no annotation)", AnnotationStatus, status, StatusInjected)
		}
		return reinvoke(pod)
	}
	s, err := parseSettings(pod)
	if err != nil {
		return nil, err
	}
	return inject(pod, s, image)
}

package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/json"
)

// Path is the URL path the webhook is served at.
const Path = "/mutate-v1-pod"

// podKind is the only kind the webhook handles.
var podKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// Options configure the webhook.
type Options struct {
	// SidecarImage is the image of the injected containers; required.
	SidecarImage string
	// Registerer receives the webhook's metrics; nil means
	// controller-runtime's registry, which its metrics server exposes.
	Registerer prometheus.Registerer
}

// Handler is the admission handler that injects the sidecar into pods.
// Deciding on a pod is a pure function of the pod and its annotations.
type Handler struct {
	image   string
	metrics *metrics
}

var _ admission.Handler = (*Handler)(nil)

// NewHandler returns a Handler configured by opts, its metrics registered.
func NewHandler(opts Options) (*Handler, error) {
	if opts.SidecarImage == "" {
		return nil, errors.New("webhook: the sidecar image is required")
	}
	reg := opts.Registerer
	if reg == nil {
		reg = ctrlmetrics.Registry
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("webhook: registering metrics: %w", err)
	}
	return &Handler{image: opts.SidecarImage, metrics: m}, nil
}

// Register serves a new Handler configured by opts at [Path] on srv, the
// webhook server of a controller-runtime manager. Panics in the handler are
// answered with an error, as controller-runtime does by default.
func Register(srv crwebhook.Server, opts Options) error {
	h, err := NewHandler(opts)
	if err != nil {
		return err
	}
	srv.Register(Path, &admission.Webhook{Handler: h})
	return nil
}

// Handle answers one admission request: it injects the sidecar into a pod
// being created with the inject annotation, adds AWS identity that appeared
// since to a pod injected earlier, denies a pod with an invalid annotation
// or a colliding name, and admits anything else unchanged. Unknown
// annotations under the prefix come back as warnings.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, outcome := h.decide(req)
	h.metrics.observe(outcome, time.Since(start))

	log := logf.FromContext(ctx).WithValues("outcome", outcome)
	switch outcome {
	case outcomeInjected:
		log.Info("patched pod", "operations", len(resp.Patches), "warnings", resp.Warnings)
	case outcomeDenied:
		log.Info("denied pod", "reason", resp.Result.Message, "warnings", resp.Warnings)
	case outcomeError:
		log.Error(errors.New(resp.Result.Message), "cannot handle admission request")
	default:
		log.V(1).Info("admitted pod unchanged", "warnings", resp.Warnings)
	}
	return resp
}

// decide returns the response to req and its outcome.
func (h *Handler) decide(req admission.Request) (admission.Response, string) {
	if req.Operation != admissionv1.Create || req.SubResource != "" {
		return admission.Allowed(""), outcomeSkipped
	}
	if req.Kind != podKind {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("expected a v1 Pod, got %s", req.Kind.String())), outcomeError
	}
	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), outcomeError
	}
	if pod.Status.Phase != "" && pod.Status.Phase != corev1.PodPending {
		return admission.Allowed(""), outcomeSkipped
	}

	warnings := unknownAnnotations(pod.Annotations)
	p, err := mutate(pod, h.image)
	switch {
	case err != nil:
		return admission.Denied(err.Error()).WithWarnings(warnings...), outcomeDenied
	case len(p) == 0:
		return admission.Allowed("").WithWarnings(warnings...), outcomeSkipped
	}
	return admission.Patched("", p...).WithWarnings(warnings...), outcomeInjected
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

// decodePod decodes the pod of an admission request as the API server
// does: case-sensitively, ignoring unknown fields, rejecting duplicate
// ones (which a patch written against the raw object could not address).
func decodePod(raw []byte) (*corev1.Pod, error) {
	if len(raw) == 0 {
		return nil, errors.New("the admission request has no object")
	}
	pod := &corev1.Pod{}
	strict, err := json.UnmarshalStrict(raw, pod, json.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("decoding the pod: %w", errors.Join(strict...))
	}
	return pod, nil
}

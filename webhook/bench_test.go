package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// clouddriverPod is the Clouddriver example pod, as JSON.
func clouddriverPod(b *testing.B) []byte {
	raw, _ := readPodJSON(b, "testdata/clouddriver.in.yaml")
	return raw
}

// BenchmarkDecodeClouddriver is the baseline: decoding the Clouddriver
// pod from its admission request, which every pod webhook has to do.
func BenchmarkDecodeClouddriver(b *testing.B) {
	req := createRequest(clouddriverPod(b))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodePod(req.Object.Raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleClouddriver is the handler's cost per admission of the
// Clouddriver pod: decoding, validating, building the patch and counting
// it (the patch is encoded by controller-runtime, see
// BenchmarkServeHTTPClouddriver).
func BenchmarkHandleClouddriver(b *testing.B) {
	h, _ := newTestHandler(b)
	req := createRequest(clouddriverPod(b))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := h.Handle(ctx, req); len(resp.Patches) == 0 {
			b.Fatalf("not injected: %+v", resp.Result)
		}
	}
}

// BenchmarkServeHTTPClouddriver is the whole HTTP exchange in process: the
// AdmissionReview decoded, handled, and the answer with its patch encoded.
func BenchmarkServeHTTPClouddriver(b *testing.B) {
	srv := crwebhook.NewServer(crwebhook.Options{})
	if err := Register(srv, Options{SidecarImage: testImage, Registerer: prometheus.NewRegistry()}); err != nil {
		b.Fatal(err)
	}
	mux := srv.WebhookMux()
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"version":"v1","kind":"Pod"},` +
		`"resource":{"version":"v1","resource":"pods"},"namespace":"spinnaker","operation":"CREATE","object":` + string(clouddriverPod(b)) + `}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"patch"`) {
			b.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
	}
}

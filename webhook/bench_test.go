package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
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

// BenchmarkReviewClouddriver is the handler's cost per admission of the
// Clouddriver pod: decoding, validating, building and encoding the patch,
// and counting it. "inject" is the pod as the Deployment creates it;
// "injected" is that pod again after the patch, as on a reinvocation; and
// "unannotated" is the pod without the webhook's annotations, which a
// webhook configuration without matchConditions sends too.
func BenchmarkReviewClouddriver(b *testing.B) {
	h, _ := newTestHandler(b)
	raw := clouddriverPod(b)
	ctx := context.Background()
	resp := h.Review(ctx, createRequest(raw))
	if len(resp.Patch) == 0 {
		b.Fatalf("not injected: %+v", resp.Result)
	}
	var pod map[string]any
	if err := json.Unmarshal(raw, &pod); err != nil {
		b.Fatal(err)
	}
	delete(pod["metadata"].(map[string]any), "annotations")
	unannotated, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name      string
		raw       []byte
		wantPatch bool
	}{
		{"inject", raw, true},
		{"injected", testutil.ApplyPatch(b, raw, resp.Patch), false},
		{"unannotated", unannotated, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := createRequest(bc.raw)
			b.ReportAllocs()
			for b.Loop() {
				if resp := h.Review(ctx, req); !resp.Allowed || (len(resp.Patch) > 0) != bc.wantPatch {
					b.Fatalf("allowed %v, patch %s, result %+v", resp.Allowed, resp.Patch, resp.Result)
				}
			}
		})
	}
}

// BenchmarkServeHTTPClouddriver is the whole HTTP exchange in process: the
// AdmissionReview decoded, handled, and the answer with its patch encoded.
func BenchmarkServeHTTPClouddriver(b *testing.B) {
	h, _ := newTestHandler(b)
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"version":"v1","kind":"Pod"},` +
		`"resource":{"version":"v1","resource":"pods"},"namespace":"spinnaker","operation":"CREATE","object":` + string(clouddriverPod(b)) + `}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"patch"`) {
			b.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
	}
}

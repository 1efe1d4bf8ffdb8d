package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the handler's output")

// testImage is the sidecar image of the tests.
const testImage = "ghcr.io/ecr-token-refresh/ecr-token-refresh:v1.2.3"

// newTestHandler returns a Handler with its own metrics registry.
func newTestHandler(t testing.TB) (*Handler, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := NewHandler(Options{SidecarImage: testImage, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return h, reg
}

// createRequest is the admission request for creating the pod raw (JSON).
func createRequest(raw []byte) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID:       types.UID("8d2b1c5e-0f3a-4c1e-9b7a-5e6f7a8b9c0d"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "spinnaker",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// readPodJSON reads a pod YAML file as JSON, and returns the comment lines
// that start it too.
func readPodJSON(t testing.TB, path string) (raw []byte, header string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for line := range strings.Lines(string(data)) {
		if !strings.HasPrefix(line, "#") {
			break
		}
		header += line
	}
	return raw, header
}

// goldenInputs returns the golden test cases' inputs,
// testdata/<case>.in.yaml, and fails the test if there are none.
func goldenInputs(t testing.TB) []string {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no test cases: %v", err)
	}
	return inputs
}

// checkAddOnly fails unless every operation of resp is an "add".
func checkAddOnly(t testing.TB, resp *admissionv1.AdmissionResponse) {
	t.Helper()
	if len(resp.Patch) == 0 {
		return
	}
	var ops []operation
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatalf("patch %s: %v", resp.Patch, err)
	}
	for _, op := range ops {
		if op.Op != "add" {
			t.Errorf("operation %s %s: only add is allowed", op.Op, op.Path)
		}
	}
}

// TestGolden runs the handler on every testdata/<case>.in.yaml and compares
// the pod with the patch applied, preceded by the input's comments and the
// warnings, with testdata/<case>.golden.yaml. go test -update rewrites the golden files.
func TestGolden(t *testing.T) {
	h, _ := newTestHandler(t)
	for _, in := range goldenInputs(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			raw, header := readPodJSON(t, in)
			resp := h.Review(context.Background(), createRequest(raw))
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			checkAddOnly(t, resp)
			patched := testutil.ApplyPatch(t, raw, resp.Patch)

			var got bytes.Buffer
			got.WriteString(header)
			for _, w := range resp.Warnings {
				got.WriteString("# warning: " + w + "\n")
			}
			out, err := yaml.JSONToYAML(patched)
			if err != nil {
				t.Fatal(err)
			}
			got.Write(out)

			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./webhook -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs from the handler's output (go test ./webhook -update rewrites it); got:\n%s", golden, got.Bytes())
			}

			again := h.Review(context.Background(), createRequest(patched))
			if !again.Allowed || len(again.Patch) != 0 {
				t.Errorf("second run on the patched pod: allowed %v, patch %s, result %+v", again.Allowed, again.Patch, again.Result)
			}
		})
	}
}

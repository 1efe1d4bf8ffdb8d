package webhook

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// FuzzHandler feeds the handler arbitrary pods and uids, the way
// controller-runtime serves it but with panics not recovered, and checks
// that the uid is echoed, that an admitted pod's patch is add-only and
// applies to the pod, and that the handler has nothing to add to the
// patched pod.
func FuzzHandler(f *testing.F) {
	for _, in := range goldenInputs(f) {
		raw, _ := readPodJSON(f, in)
		f.Add("8d2b1c5e", raw)
	}
	for _, raw := range []string{``, `null`, `{}`, `[]`, `{"metadata":{"annotations":{"ecr-token-refresh.io/inject":"true"}}}`,
		`{"metadata":{"annotations":{"ecr-token-refresh.io/inject":"true","ecr-token-refresh.io/registry-a":"123456789012.dkr.ecr.us-west-2.amazonaws.com"}},"spec":{"containers":[null]}}`,
		`{"metadata":{"annotations":{"ecr-token-refresh.io/inject":"true","ecr-token-refresh.io/status":"injected"}},"spec":{"initContainers":[{"name":"ecr-token-refresh","env":null}],"containers":[{"name":"a","env":[{"name":"AWS_REGION","value":"x"}]}]}}`,
	} {
		f.Add("", []byte(raw))
	}
	h, _ := newTestHandler(f)
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, uid string, raw []byte) {
		req := createRequest(raw)
		req.UID = types.UID(uid)
		resp := h.Review(ctx, req)
		if resp.UID != req.UID {
			t.Fatalf("uid %q answered as %q", req.UID, resp.UID)
		}
		if !resp.Allowed || len(resp.Patch) == 0 {
			if len(resp.Patch) > 0 {
				t.Fatalf("not allowed but patched: %s", resp.Patch)
			}
			return
		}
		checkAddOnly(t, resp)
		patched := testutil.ApplyPatch(t, raw, resp.Patch)
		again := h.Review(ctx, createRequest(patched))
		if !again.Allowed || len(again.Patch) != 0 {
			t.Fatalf("second run on the patched pod: allowed %v, patch %s, result %s\npatched pod: %s", again.Allowed, again.Patch, again.Result, patched)
		}
	})
}

package webhook

import (
	"context"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// FuzzHandler feeds the handler arbitrary pods and uids, the way
// controller-runtime serves it but with panics not recovered, and checks
// that the uid is echoed, that an admitted pod's patch is add-only and
// applies to the pod, and that the handler has nothing to add to the
// patched pod.
func FuzzHandler(f *testing.F) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range inputs {
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
	wh := (&admission.Webhook{Handler: h}).WithRecoverPanic(false)
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, uid string, raw []byte) {
		req := createRequest(raw)
		req.UID = types.UID(uid)
		resp := wh.Handle(ctx, req)
		if resp.UID != req.UID {
			t.Fatalf("uid %q answered as %q", req.UID, resp.UID)
		}
		if !resp.Allowed || len(resp.Patches) == 0 {
			if len(resp.Patches) > 0 {
				t.Fatalf("not allowed but patched: %+v", resp.Patches)
			}
			return
		}
		checkAddOnly(t, resp)
		patched := testutil.ApplyPatch(t, raw, resp.Patches)
		again := wh.Handle(ctx, createRequest(patched))
		if !again.Allowed || len(again.Patches) != 0 {
			t.Fatalf("second run on the patched pod: allowed %v, patch %+v, result %+v\npatched pod: %s", again.Allowed, again.Patches, again.Result, patched)
		}
	})
}

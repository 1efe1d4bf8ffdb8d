package testutil

import (
	"encoding/json"
	"testing"

	evanpatch "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
)

// ApplyPatch applies an admission response's JSON Patch operations to raw,
// as the API server does, and fails the test if they do not apply.
func ApplyPatch(t testing.TB, raw []byte, ops []jsonpatch.Operation) []byte {
	t.Helper()
	if len(ops) == 0 {
		return raw
	}
	js, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := evanpatch.DecodePatch(js)
	if err != nil {
		t.Fatalf("decoding the patch: %v\n%s", err, js)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying the patch: %v\n%s", err, js)
	}
	return out
}

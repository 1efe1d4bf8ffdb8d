package testutil

import (
	"testing"

	evanpatch "github.com/evanphx/json-patch/v5"
)

// ApplyPatch applies an admission response's JSON Patch to raw, as the API
// server does, and fails the test if it does not apply.
func ApplyPatch(t testing.TB, raw, patch []byte) []byte {
	t.Helper()
	if len(patch) == 0 {
		return raw
	}
	p, err := evanpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding the patch: %v\n%s", err, patch)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying the patch: %v\n%s", err, patch)
	}
	return out
}

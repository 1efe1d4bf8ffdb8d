package envtest

import (
	"os"
	"regexp"
	"testing"
)

// TestVersionsAgree: the Makefile builds, hack/envtest pins and this
// package looks for the same Kubernetes version.
func TestVersionsAgree(t *testing.T) {
	for file, pattern := range map[string]string{
		"../../Makefile":            `(?m)^KUBERNETES_VERSION := (\S+)$`,
		"../../hack/envtest/go.mod": `(?m)^\s*k8s.io/kubernetes (v\S+)`,
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(pattern).FindSubmatch(data)
		if m == nil {
			t.Fatalf("%s: no match for %s", file, pattern)
		}
		if string(m[1]) != KubernetesVersion {
			t.Errorf("%s says %s, KubernetesVersion is %s", file, m[1], KubernetesVersion)
		}
	}
}

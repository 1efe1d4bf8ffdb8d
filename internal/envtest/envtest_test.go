package envtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// TestCheck: a folder without the binaries is reported with the missing
// binary and the fix; the Makefile's folder passes once built.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	err := Check(dir)
	if err == nil || !strings.Contains(err.Error(), "no kube-apiserver") || !strings.Contains(err.Error(), "make envtest") {
		t.Errorf("Check(empty folder) = %v, want an error naming kube-apiserver and make envtest", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); err == nil || !strings.Contains(err.Error(), "no etcd") {
		t.Errorf("Check(folder without etcd) = %v, want an error naming etcd", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etcd"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); err != nil {
		t.Errorf("Check(folder with both) = %v", err)
	}
}

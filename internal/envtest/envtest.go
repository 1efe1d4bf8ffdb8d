// Package envtest starts a real kube-apiserver and etcd for integration
// tests (controller-runtime's envtest), from the binaries that `make
// envtest` builds into bin/envtest/<version> and KUBEBUILDER_ASSETS names.
package envtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Start starts env (a zero Environment is fine) and stops it when the test
// ends. Without the binaries the test is skipped on a developer's machine
// and fails in CI (CI set), so that CI never passes with the integration
// suites unrun. In -short mode the test is skipped.
func Start(t testing.TB, env *envtest.Environment) *envtest.Environment {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if env.BinaryAssetsDirectory == "" {
		env.BinaryAssetsDirectory = AssetsDir()
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(env.BinaryAssetsDirectory, bin)); err != nil {
			msg := "envtest binaries missing in " + env.BinaryAssetsDirectory + ": run make envtest (or make test)"
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping kube-apiserver and etcd: %v", err)
		}
	})
	return env
}

// AssetsDir is KUBEBUILDER_ASSETS, or else the Makefile's default folder
// found from this source file, so that go test works without make too.
func AssetsDir() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "envtest", KubernetesVersion)
}

// KubernetesVersion is the version of the envtest binaries; keep it equal
// to KUBERNETES_VERSION in the Makefile.
const KubernetesVersion = "v1.37.2"

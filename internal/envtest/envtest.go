// Package envtest starts a real kube-apiserver and etcd (controller-runtime's
// envtest) from the binaries that `make envtest` builds into
// bin/envtest/<version> and KUBEBUILDER_ASSETS names: for the integration
// tests (Start) and for make demo (Run), from one place.
package envtest

import (
	"fmt"
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
	if env.BinaryAssetsDirectory == "" {
		env.BinaryAssetsDirectory = AssetsDir()
	}
	require(t, env.BinaryAssetsDirectory)
	if err := Run(env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping kube-apiserver and etcd: %v", err)
		}
	})
	return env
}

// Require gates a test that needs the binaries, also one that starts them
// through Run in code under test: in -short mode it skips the test;
// without the binaries it skips it on a developer's machine and fails it
// in CI (CI set).
func Require(t testing.TB) {
	t.Helper()
	require(t, AssetsDir())
}

func require(t testing.TB, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if err := Check(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// Run starts env, taking the binaries from AssetsDir unless
// env.BinaryAssetsDirectory says otherwise. The caller stops env.
func Run(env *envtest.Environment) error {
	if env.BinaryAssetsDirectory == "" {
		env.BinaryAssetsDirectory = AssetsDir()
	}
	if err := Check(env.BinaryAssetsDirectory); err != nil {
		return err
	}
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	return nil
}

// Binaries are the names of the binaries in the assets directory.
var Binaries = []string{"kube-apiserver", "etcd"}

// Check returns an error naming the fix if a binary is not in dir.
func Check(dir string) error {
	for _, bin := range Binaries {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return fmt.Errorf("envtest binaries missing in %s (no %s): run make envtest (or make test, make demo)", dir, bin)
		}
	}
	return nil
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

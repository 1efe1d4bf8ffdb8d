// Package manifests_test checks what a cluster admin applies: every
// kustomization builds (golden files), every object is accepted by a real
// API server, and the example Clouddriver pod is injected through the
// manifests' own MutatingWebhookConfiguration.
package manifests_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/apply"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// kustomizations are every kustomization under manifests/, by name.
var kustomizations = map[string]string{
	"base":         "base",
	"cert-manager": "overlays/cert-manager",
	"clouddriver":  "examples/clouddriver",
}

// build renders the kustomization in dir as kubectl apply -k would.
func build(t *testing.T, dir string) ([]byte, []*unstructured.Unstructured) {
	t.Helper()
	out, objs, err := apply.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	return out, objs
}

func TestKustomizationsBuild(t *testing.T) {
	for name, dir := range kustomizations {
		t.Run(name, func(t *testing.T) {
			got, objs := build(t, dir)
			if len(objs) == 0 {
				t.Fatal("no objects")
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./manifests -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("kustomize build %s differs from %s; if the change is intended, run go test ./manifests -update and review the diff", dir, golden)
			}
		})
	}
}

// find returns the one object of kind named name.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := apply.Find(objs, kind, name)
	if o == nil {
		t.Fatalf("no %s %s", kind, name)
	}
	return o
}

// TestImageIsTheDockerfiles: the manifests deploy the image that make image
// builds from the Dockerfile, and the binary injects by default.
func TestImageIsTheDockerfiles(t *testing.T) {
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE \?= (\S+)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("no IMAGE ?= line in the Makefile")
	}
	image := string(m[1])
	main, err := os.ReadFile("../cmd/ecr-token-refresh/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(main, []byte(`defaultImage = "`+image+`"`)) {
		t.Errorf("cmd/ecr-token-refresh's defaultImage is not the Makefile's IMAGE %s", image)
	}
	for _, name := range []string{"base", "cert-manager"} {
		_, objs := build(t, kustomizations[name])
		d := find(t, objs, "Deployment", "ecr-token-refresh-webhook")
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		got := containers[0].(map[string]any)["image"].(string)
		if !strings.HasPrefix(got, image+":") {
			t.Errorf("%s deploys %s, want %s:<version>", name, got, image)
		}
	}
}

package apply

import (
	"maps"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestBuildAndFind renders the base manifests: the objects come in
// kustomize's order, in the kustomization's namespace, and Find finds one.
func TestBuildAndFind(t *testing.T) {
	yaml, objs, err := Build("../../manifests/base")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(yaml), "kind: MutatingWebhookConfiguration") {
		t.Errorf("the YAML has no MutatingWebhookConfiguration:\n%s", yaml)
	}
	if objs[0].GetKind() != "Namespace" {
		t.Errorf("first object is a %s, want the Namespace first", objs[0].GetKind())
	}
	d := Find(objs, "Deployment", "ecr-token-refresh-webhook")
	if d == nil || d.GetNamespace() != "ecr-token-refresh" {
		t.Fatalf("Find(Deployment ecr-token-refresh-webhook) = %v", d)
	}
	if Find(objs, "Deployment", "nope") != nil {
		t.Error("Find found an object that is not there")
	}
	if _, _, err := Build(t.TempDir()); err == nil || !strings.Contains(err.Error(), "kustomize build") {
		t.Errorf("Build(folder without kustomization) = %v, want a kustomize build error", err)
	}
}

func TestWebhookURL(t *testing.T) {
	_, objs, err := Build("../../manifests/base")
	if err != nil {
		t.Fatal(err)
	}
	mwc := Find(objs, "MutatingWebhookConfiguration", "ecr-token-refresh").DeepCopy()
	if err := WebhookURL(mwc, "https://127.0.0.1:9443/"); err != nil {
		t.Fatal(err)
	}
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	cc := hooks[0].(map[string]any)["clientConfig"].(map[string]any)
	if cc["url"] != "https://127.0.0.1:9443/mutate-v1-pod" {
		t.Errorf("url = %v, want https://127.0.0.1:9443/mutate-v1-pod", cc["url"])
	}
	if _, ok := cc["service"]; ok {
		t.Errorf("the service reference is still there: %v", cc)
	}

	// Bad input: not a webhook configuration, or no service path to keep.
	if err := WebhookURL(Find(objs, "Service", "ecr-token-refresh-webhook"), "https://x"); err == nil {
		t.Error("WebhookURL accepted a Service")
	}
	if err := WebhookURL(mwc, "https://x"); err == nil || !strings.Contains(err.Error(), "clientConfig.service.path") {
		t.Errorf("WebhookURL on a configuration without a service = %v, want an error naming clientConfig.service.path", err)
	}
}

// TestTemplatePod turns the example Deployment's pod template into the Pod
// its ReplicaSet would create.
func TestTemplatePod(t *testing.T) {
	_, objs, err := Build("../../manifests/examples/clouddriver")
	if err != nil {
		t.Fatal(err)
	}
	d := Find(objs, "Deployment", "spin-clouddriver")
	pod, err := TemplatePod(d)
	if err != nil {
		t.Fatal(err)
	}
	if pod.Namespace != "spinnaker" || pod.GenerateName != "spin-clouddriver-" || pod.Name != "" {
		t.Errorf("pod namespace %q, generateName %q, name %q; want spinnaker, spin-clouddriver-, none", pod.Namespace, pod.GenerateName, pod.Name)
	}
	annotations, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "annotations")
	if len(annotations) == 0 || !maps.Equal(pod.Annotations, annotations) {
		t.Errorf("pod annotations %v, want the template's %v", pod.Annotations, annotations)
	}
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(pod.Spec.Containers) != len(containers) || pod.Spec.Containers[0].Name != containers[0].(map[string]any)["name"] {
		t.Errorf("pod containers %v, want the template's %v", pod.Spec.Containers, containers)
	}

	if _, err := TemplatePod(Find(objs, "ConfigMap", "ecr-token-refresh-config")); err == nil || !strings.Contains(err.Error(), "is not a Deployment") {
		t.Errorf("TemplatePod(ConfigMap) = %v, want an error saying it is not a Deployment", err)
	}
}

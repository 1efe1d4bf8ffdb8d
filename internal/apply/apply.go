// Package apply renders the project's kustomizations and applies their
// objects to an API server as `kubectl apply -k --server-side` would, for
// the manifests' tests and make demo.
package apply

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Build renders the kustomization in dir as kubectl apply -k would, and
// returns the YAML and its objects in order.
func Build(dir string) ([]byte, []*unstructured.Unstructured, error) {
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		return nil, nil, err
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			return nil, nil, err
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, nil, err
		}
		objs = append(objs, u)
	}
	return out, objs, nil
}

// Objects applies objs in order with server-side apply as field manager
// owner, taking over fields another manager owns (kubectl's
// --force-conflicts). objs are left unchanged.
func Objects(ctx context.Context, c client.Client, owner string, objs ...*unstructured.Unstructured) error {
	for _, obj := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.FieldOwner(owner), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// Find returns the object of kind named name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// TemplatePod returns the Pod that deployment's ReplicaSet would create
// from its pod template: the template's metadata and spec, in the
// Deployment's namespace, named after it (generateName NAME-). There is
// no controller-manager in envtest to do it.
func TemplatePod(deployment *unstructured.Unstructured) (*corev1.Pod, error) {
	if k := deployment.GetKind(); k != "Deployment" {
		return nil, fmt.Errorf("%s %s is not a Deployment", k, deployment.GetName())
	}
	dep := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(deployment.Object, dep); err != nil {
		return nil, fmt.Errorf("reading Deployment %s: %w", deployment.GetName(), err)
	}
	pod := &corev1.Pod{ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
	pod.Namespace, pod.GenerateName = dep.Namespace, dep.Name+"-"
	return pod, nil
}

// WebhookURL points every webhook of a Mutating- or
// ValidatingWebhookConfiguration at base (e.g. https://127.0.0.1:9443)
// instead of its Service: clientConfig.service becomes clientConfig.url,
// base followed by the service's path. The caBundle is kept.
func WebhookURL(cfg *unstructured.Unstructured, base string) error {
	if k := cfg.GetKind(); k != "MutatingWebhookConfiguration" && k != "ValidatingWebhookConfiguration" {
		return fmt.Errorf("%s %s is not a webhook configuration", k, cfg.GetName())
	}
	hooks, _, err := unstructured.NestedSlice(cfg.Object, "webhooks")
	if err != nil {
		return err
	}
	for i, h := range hooks {
		hook, ok := h.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: webhooks[%d] is not an object", cfg.GetName(), i)
		}
		path, found, err := unstructured.NestedString(hook, "clientConfig", "service", "path")
		if err != nil || !found {
			return fmt.Errorf("%s: webhooks[%d].clientConfig.service.path: required to point the webhook at a URL", cfg.GetName(), i)
		}
		unstructured.RemoveNestedField(hook, "clientConfig", "service")
		if err := unstructured.SetNestedField(hook, strings.TrimSuffix(base, "/")+path, "clientConfig", "url"); err != nil {
			return err
		}
	}
	return unstructured.SetNestedSlice(cfg.Object, hooks, "webhooks")
}

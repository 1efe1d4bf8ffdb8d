package certs

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// kube is the Kubernetes API as the certificates use it: the Secret, the
// webhook configuration and the Lease, through client-go's REST client
// with a scheme of those three API groups. (client-go's clientsets and
// controller-runtime link every API group: some 10 MiB of resident memory
// in every process of the binary, the sidecar's too.)
type kube struct {
	core, admission, coordination rest.Interface
}

// newKube returns the API of cfg, over one HTTP client.
func newKube(cfg *rest.Config) (*kube, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, admissionregistrationv1.AddToScheme, coordinationv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("certs: the API server's HTTP client: %w", err)
	}
	restFor := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion, c.APIPath, c.NegotiatedSerializer = &gv, apiPath, codecs
		return rest.RESTClientForConfigAndClient(c, httpClient)
	}
	k := &kube{}
	if k.core, err = restFor(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if k.admission, err = restFor(admissionregistrationv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if k.coordination, err = restFor(coordinationv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	return k, nil
}

// Resources, as the REST paths name them.
const (
	resourceSecrets        = "secrets"
	resourceWebhookConfigs = "mutatingwebhookconfigurations"
	resourceLeases         = "leases"
)

func (k *kube) getSecret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := k.core.Get().Namespace(key.Namespace).Resource(resourceSecrets).Name(key.Name).Do(ctx).Into(s)
	return s, err
}

func (k *kube) createSecret(ctx context.Context, s *corev1.Secret) error {
	return k.core.Post().Namespace(s.Namespace).Resource(resourceSecrets).Body(s).Do(ctx).Into(s)
}

func (k *kube) updateSecret(ctx context.Context, s *corev1.Secret) error {
	return k.core.Put().Namespace(s.Namespace).Resource(resourceSecrets).Name(s.Name).Body(s).Do(ctx).Into(s)
}

func (k *kube) getWebhookConfig(ctx context.Context, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	c := &admissionregistrationv1.MutatingWebhookConfiguration{}
	err := k.admission.Get().Resource(resourceWebhookConfigs).Name(name).Do(ctx).Into(c)
	return c, err
}

func (k *kube) patchWebhookConfig(ctx context.Context, name string, patch []byte) error {
	return k.admission.Patch(types.StrategicMergePatchType).Resource(resourceWebhookConfigs).Name(name).Body(patch).Do(ctx).Error()
}

func (k *kube) getLease(ctx context.Context, key types.NamespacedName) (*coordinationv1.Lease, error) {
	l := &coordinationv1.Lease{}
	err := k.coordination.Get().Namespace(key.Namespace).Resource(resourceLeases).Name(key.Name).Do(ctx).Into(l)
	return l, err
}

func (k *kube) createLease(ctx context.Context, l *coordinationv1.Lease) error {
	return k.coordination.Post().Namespace(l.Namespace).Resource(resourceLeases).Body(l).Do(ctx).Into(l)
}

func (k *kube) updateLease(ctx context.Context, l *coordinationv1.Lease) error {
	return k.coordination.Put().Namespace(l.Namespace).Resource(resourceLeases).Name(l.Name).Body(l).Do(ctx).Into(l)
}

func (k *kube) createEvent(ctx context.Context, ev *corev1.Event) error {
	return k.core.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Error()
}

// informer watches the one object of a resource named name, in namespace
// ("" for cluster-scoped resources).
func informer(c rest.Interface, resource, namespace, name string, obj runtime.Object) cache.SharedIndexInformer {
	lw := cache.NewListWatchFromClient(c, resource, namespace, fields.OneTermEqualSelector("metadata.name", name))
	inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})
	// Its managed fields are of no use to the certificates.
	_ = inf.SetTransform(func(o any) (any, error) {
		if m, ok := o.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return o, nil
	})
	return inf
}

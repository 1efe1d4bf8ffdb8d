package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/kubelet"
	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
	"github.com/ecr-token-refresh/ecr-token-refresh/webhook"
)

// TestInjectedSidecarRuns runs the containers the webhook injects as a
// kubelet would (internal/kubelet) – their args against the image's
// entrypoint (this binary), with only their own environment and the pod's
// volumes as folders, the init container to completion first, the probes
// on their port and path – and sees the password files appear: the patch
// and the sidecar agree. The app container carries the AWS
// settings (here: the loopback endpoint and its credentials), which the
// webhook copies into the sidecar.
func TestInjectedSidecarRuns(t *testing.T) {
	for _, native := range []string{"true", "false"} {
		t.Run("native-sidecar="+native, func(t *testing.T) {
			srv := fakeecr.New()
			defer srv.Close()
			pod := injectedPod(t, map[string]string{
				webhook.AnnotationInject:                         "true",
				webhook.AnnotationRegistryPrefix + "my-registry": "123456789012.dkr.ecr.us-west-2.amazonaws.com",
				webhook.AnnotationRegistryPrefix + "other":       "210987654321.dkr.ecr.eu-west-1.amazonaws.com",
				webhook.AnnotationNativeSidecar:                  native,
			}, srv.Env())
			kl, err := kubelet.New(pod, t.TempDir(), binary)
			if err != nil {
				t.Fatal(err)
			}
			mountPath, ok := kl.HostPath(webhook.DefaultMountPath)
			if !ok {
				t.Fatalf("no volume is mounted at %s", webhook.DefaultMountPath)
			}

			var sidecar *corev1.Container
			for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
				switch c.Name {
				case webhook.InitContainerName: // runs to completion before anything else
					cmd, err := kl.Cmd(c)
					if err != nil {
						t.Fatal(err)
					}
					out, err := cmd.CombinedOutput()
					if err != nil {
						t.Fatalf("init container %s: %v\n%s", c.Name, err, out)
					}
					assertPasswords(t, srv, mountPath)
				case webhook.ContainerName:
					sidecar = &c
				}
			}
			if sidecar == nil {
				t.Fatalf("no %s container in the injected pod", webhook.ContainerName)
			}
			cmd, err := kl.Cmd(*sidecar)
			if err != nil {
				t.Fatal(err)
			}
			p := startLogged(t, cmd)
			probe := sidecar.ReadinessProbe.HTTPGet
			if sidecar.StartupProbe != nil {
				probe = sidecar.StartupProbe.HTTPGet
			}
			if probe.Path != "/readyz" {
				t.Fatalf("the sidecar is probed at %s, want /readyz", probe.Path)
			}
			waitReady(t, fmt.Sprintf("127.0.0.1:%d", probe.Port.IntValue()))
			assertPasswords(t, srv, mountPath)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := p.wait(3 * time.Second); err != nil {
				t.Errorf("sidecar after SIGTERM: %v\n%s", err, p.log.String())
			}
		})
	}
}

// injectedPod runs the webhook's handler on a Clouddriver-like pod with
// annotations whose app container has env, and returns the patched pod.
func injectedPod(t *testing.T, annotations map[string]string, env []string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "spin-clouddriver", Namespace: "spinnaker", Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "clouddriver",
			Image: "us-docker.pkg.dev/spinnaker-community/docker/clouddriver:5.90.0",
		}}},
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: k, Value: v})
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	// Its own registry: the process-wide one belongs to TestRunWebhook.
	h, err := webhook.NewHandler(webhook.Options{SidecarImage: defaultImage + ":" + version, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	resp := h.Review(context.Background(), &admissionv1.AdmissionRequest{
		UID:       "1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "spinnaker",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	})
	if !resp.Allowed {
		t.Fatalf("the webhook denied the pod: %v", resp.Result)
	}
	injected := &corev1.Pod{}
	if err := json.Unmarshal(testutil.ApplyPatch(t, raw, resp.Patch), injected); err != nil {
		t.Fatal(err)
	}
	return injected
}

// assertPasswords checks both registries' files under mountPath hold the
// newest passwords of their regions, exactly.
func assertPasswords(t *testing.T, srv *fakeecr.Server, mountPath string) {
	t.Helper()
	for name, region := range map[string]string{"my-registry": "us-west-2", "other": "eu-west-1"} {
		got, err := os.ReadFile(filepath.Join(mountPath, name+".pass"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != srv.LastPassword(fakeecr.DefaultAccount, region) {
			t.Errorf("%s.pass does not hold the newest %s password", name, region)
		}
	}
}

package kubelet

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// testPod is a pod like an injected Clouddriver: a sidecar writing into an
// emptyDir and reading a configMap, an app mounting both, one by subPath.
func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{
				Name: "sidecar",
				Args: []string{"sidecar", "--registry", "123456789012.dkr.ecr.us-west-2.amazonaws.com=/opt/passwords/a.pass", "/opt/passwordsX"},
				Env: []corev1.EnvVar{
					{Name: "CONFIG", Value: "/opt/config/app/config.yaml"},
					{Name: "OTHER", Value: "/etc/hosts"},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "passwords", MountPath: "/opt/passwords"},
					{Name: "config", MountPath: "/opt/config/app", ReadOnly: true},
				},
			}},
			Containers: []corev1.Container{{
				Name: "app",
				VolumeMounts: []corev1.VolumeMount{
					{Name: "passwords", MountPath: "/opt/passwords/", ReadOnly: true},
					{Name: "local", MountPath: "/etc/app/local.yml", SubPath: "local.yml"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "passwords", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"},
				}}},
				{Name: "local", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-local"},
					Items:                []corev1.KeyToPath{{Key: "local.yml", Path: "local.yml", Mode: ptr.To[int32](0o600)}},
				}}},
			},
		},
	}
}

func testConfigMaps() []*corev1.ConfigMap {
	return []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{
			"config.yaml": "passwordFile: \"/opt/passwords/a.pass\"\nother: /opt/passwords-not\n",
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "app-local"}, Data: map[string]string{
			"local.yml": "passwordFile: /opt/passwords/a.pass\n", "unused": "x",
		}},
	}
}

// newTestPod lays out pod with testConfigMaps under a new root, running
// entrypoint, and returns it with the folder of each volume by name.
func newTestPod(t *testing.T, pod *corev1.Pod, entrypoint string) (*Pod, func(volume string) string) {
	t.Helper()
	root := t.TempDir()
	p, err := New(pod, root, entrypoint, testConfigMaps()...)
	if err != nil {
		t.Fatal(err)
	}
	return p, func(volume string) string { return filepath.Join(root, "volumes", volume) }
}

// TestVolumesAreFolders: every volume is a folder, configMap keys are
// files with their modes and their paths rewritten.
func TestVolumesAreFolders(t *testing.T) {
	p, vol := newTestPod(t, testPod(), "/bin/true")
	want := []Volume{
		{Name: "passwords", Source: "emptyDir", Dir: vol("passwords")},
		{Name: "config", Source: "configMap app-config", Dir: vol("config")},
		{Name: "local", Source: "configMap app-local", Dir: vol("local")},
	}
	if !slices.Equal(p.Volumes, want) {
		t.Errorf("Volumes = %v, want %v", p.Volumes, want)
	}
	if fi, err := os.Stat(vol("passwords")); err != nil || fi.Mode().Perm() != 0o777 || !fi.IsDir() {
		t.Errorf("emptyDir folder: %v, %v; want a folder with mode 0777", fi, err)
	}
	for _, tt := range []struct {
		file, content string
		mode          os.FileMode
	}{
		{vol("config") + "/config.yaml", "passwordFile: \"" + vol("passwords") + "/a.pass\"\nother: /opt/passwords-not\n", 0o644},
		{vol("local") + "/local.yml", "passwordFile: " + vol("passwords") + "/a.pass\n", 0o600},
	} {
		got, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.content {
			t.Errorf("%s = %q, want %q", tt.file, got, tt.content)
		}
		if fi, _ := os.Stat(tt.file); fi.Mode().Perm() != tt.mode {
			t.Errorf("%s has mode %v, want %v", tt.file, fi.Mode().Perm(), tt.mode)
		}
	}
	if _, err := os.Stat(vol("local") + "/unused"); err == nil {
		t.Error("a key not listed in items was written")
	}
}

func TestHostPath(t *testing.T) {
	p, vol := newTestPod(t, testPod(), "/bin/true")
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"/opt/passwords", vol("passwords"), true},
		{"/opt/passwords/a.pass", vol("passwords") + "/a.pass", true},
		{"/opt/config/app/config.yaml", vol("config") + "/config.yaml", true},
		{"/etc/app/local.yml", vol("local") + "/local.yml", true},
		{"/opt/passwords2/a.pass", "/opt/passwords2/a.pass", false},
		{"/opt/config/other", "/opt/config/other", false},
	} {
		got, ok := p.HostPath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("HostPath(%s) = %s, %t; want %s, %t", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestCmd: the entrypoint with the args, only the container's env plus
// PATH and the extra env, paths under mount points rewritten.
func TestCmd(t *testing.T) {
	pod := testPod()
	p, vol := newTestPod(t, pod, "/usr/local/bin/app")
	cmd, err := p.Cmd(pod.Spec.InitContainers[0], "EXTRA=1", "OTHER=/x")
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []string{"/usr/local/bin/app", "sidecar", "--registry", "123456789012.dkr.ecr.us-west-2.amazonaws.com=" + vol("passwords") + "/a.pass", "/opt/passwordsX"}
	if !slices.Equal(cmd.Args, wantArgs) {
		t.Errorf("args = %q, want %q", cmd.Args, wantArgs)
	}
	wantEnv := []string{"PATH=" + os.Getenv("PATH"), "CONFIG=" + vol("config") + "/config.yaml", "OTHER=/etc/hosts", "EXTRA=1", "OTHER=/x"}
	if !slices.Equal(cmd.Env, wantEnv) {
		t.Errorf("env = %q, want %q", cmd.Env, wantEnv)
	}
	// The extra env wins, as the process sees it.
	if got := cmd.Environ(); !slices.Contains(got, "OTHER=/x") || slices.Contains(got, "OTHER=/etc/hosts") {
		t.Errorf("the process's environment %q does not let the extra env win", got)
	}
}

// TestUnsupported: what this stand-in cannot run is an error naming it.
func TestUnsupported(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*corev1.Pod)
		cms    []*corev1.ConfigMap
		want   string
	}{
		{"secret volume", func(p *corev1.Pod) {
			p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}
		}, testConfigMaps(), "volume passwords: only emptyDir and configMap"},
		{"missing configMap", func(*corev1.Pod) {}, testConfigMaps()[:1], "volume local: configMap app-local: not given"},
		{"missing key", func(p *corev1.Pod) {
			p.Spec.Volumes[2].ConfigMap.Items[0].Key = "nope"
		}, testConfigMaps(), "configMap app-local has no key nope"},
		{"unknown volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts[0].Name = "nope"
		}, testConfigMaps(), "container app mounts volume nope"},
		{"two volumes at one path", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts[0].Name = "config"
		}, testConfigMaps(), "container app mounts /opt/passwords from another volume"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod()
			tt.change(pod)
			_, err := New(pod, t.TempDir(), "/bin/true", tt.cms...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}

	pod := testPod()
	p, _ := newTestPod(t, pod, "/bin/true")
	c := pod.Spec.InitContainers[0]
	c.Command = []string{"/bin/sh"}
	c.Env = append(c.Env, corev1.EnvVar{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}})
	_, err := p.Cmd(c)
	for _, want := range []string{"container sidecar: command replaces", "env POD: valueFrom"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Cmd: %v, want an error containing %q", err, want)
		}
	}

	optional := testPod()
	optional.Spec.Volumes[2].ConfigMap.Optional = ptr.To(true)
	if _, err := New(optional, t.TempDir(), "/bin/true", testConfigMaps()[:1]...); err != nil {
		t.Errorf("a missing optional configMap: %v, want an empty folder", err)
	}
}

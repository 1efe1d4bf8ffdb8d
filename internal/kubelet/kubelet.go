// Package kubelet runs a pod's containers on this machine much as a
// kubelet would, for the tests and make demo: a container's args against
// the image's entrypoint (a local binary), with only the container's own
// environment, and the pod's volumes as folders.
//
// There is no mount namespace, so a volume is a folder under the pod's
// root, and every path under a mount point – in args, in env values and
// in the files of configMap volumes – is rewritten to that folder. Paths
// a program uses without naming them (its built-in defaults) are the
// caller's to pass, e.g. in env (see HostPath). Volumes of type emptyDir
// and configMap are supported; ordering, probes and restarts are the
// caller's.
package kubelet

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Pod is a pod whose volumes are folders under a root.
type Pod struct {
	// Volumes are the pod's volumes, in the pod's order.
	Volumes []Volume

	entrypoint string
	mounts     []mount // longest mount path first
}

// Volume is one of the pod's volumes as a folder.
type Volume struct {
	// Name is the volume's name in the pod.
	Name string
	// Source says what it is: "emptyDir" or "configMap NAME".
	Source string
	// Dir is the folder that stands in for it.
	Dir string
}

// mount maps a container path to a host path.
type mount struct {
	path, host string
}

// New lays out pod's volumes as folders under root/volumes: an emptyDir is
// an empty folder (mode 0777, as the kubelet makes it), a configMap volume
// holds its ConfigMap's keys as files, taken from configMaps, with paths
// under the pod's mount points rewritten. entrypoint is the binary that
// every container's image runs.
func New(pod *corev1.Pod, root, entrypoint string, configMaps ...*corev1.ConfigMap) (*Pod, error) {
	p := &Pod{entrypoint: entrypoint}
	dirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(root, "volumes", v.Name)
		dirs[v.Name] = dir
		switch {
		case v.EmptyDir != nil:
			p.Volumes = append(p.Volumes, Volume{Name: v.Name, Source: "emptyDir", Dir: dir})
		case v.ConfigMap != nil:
			p.Volumes = append(p.Volumes, Volume{Name: v.Name, Source: "configMap " + v.ConfigMap.Name, Dir: dir})
		default:
			return nil, fmt.Errorf("volume %s: only emptyDir and configMap volumes can be run here", v.Name)
		}
	}
	seen := map[string]string{}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			dir, ok := dirs[m.Name]
			if !ok {
				return nil, fmt.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
			}
			host := filepath.Join(dir, filepath.FromSlash(m.SubPath))
			mp := path.Clean(m.MountPath)
			if prev, ok := seen[mp]; ok {
				if prev != host {
					return nil, fmt.Errorf("container %s mounts %s from another volume than an earlier container: one folder per mount path here", c.Name, mp)
				}
				continue
			}
			seen[mp] = host
			p.mounts = append(p.mounts, mount{path: mp, host: host})
		}
	}
	slices.SortFunc(p.mounts, func(a, b mount) int { return cmp.Compare(len(b.path), len(a.path)) })

	byName := map[string]*corev1.ConfigMap{}
	for _, cm := range configMaps {
		byName[cm.Name] = cm
	}
	for _, v := range pod.Spec.Volumes {
		if err := p.makeVolume(v, dirs[v.Name], byName); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	return p, nil
}

// makeVolume creates volume v's folder dir and its files.
func (p *Pod) makeVolume(v corev1.Volume, dir string, configMaps map[string]*corev1.ConfigMap) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if v.EmptyDir != nil {
		return os.Chmod(dir, 0o777)
	}
	src := v.ConfigMap
	cm, ok := configMaps[src.Name]
	if !ok {
		if src.Optional != nil && *src.Optional {
			return nil
		}
		return fmt.Errorf("configMap %s: not given", src.Name)
	}
	mode := fs.FileMode(0o644)
	if src.DefaultMode != nil {
		mode = fs.FileMode(*src.DefaultMode)
	}
	// The items, or else every key at its own name.
	items := src.Items
	if len(items) == 0 {
		for k := range cm.Data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		data, ok := cm.Data[it.Key]
		if !ok {
			return fmt.Errorf("configMap %s has no key %s", src.Name, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = fs.FileMode(*it.Mode)
		}
		file := filepath.Join(dir, filepath.FromSlash(it.Path))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(file, []byte(p.mapPaths(data)), m); err != nil {
			return err
		}
		if err := os.Chmod(file, m); err != nil { // WriteFile's mode is masked by the umask
			return err
		}
	}
	return nil
}

// HostPath returns the folder or file that stands in for path, a path
// inside the pod's containers, and whether path is under a mount point.
func (p *Pod) HostPath(path string) (string, bool) {
	for _, m := range p.mounts {
		if rest, ok := strings.CutPrefix(path, m.path); ok && (rest == "" || rest[0] == '/') {
			return m.host + filepath.FromSlash(rest), true
		}
	}
	return path, false
}

// mapPaths rewrites every path under a mount point in s, e.g. in
// "--registry HOST=/opt/passwords/a.pass", to its host path.
func (p *Pod) mapPaths(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if i == 0 || !isPathByte(s[i-1]) {
			if m, ok := p.mountAt(s, i); ok {
				b.WriteString(m.host)
				i += len(m.path)
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// mountAt returns the longest mount whose path starts s at i as a whole
// path: followed by the end, a slash or a byte that ends a path.
func (p *Pod) mountAt(s string, i int) (mount, bool) {
	for _, m := range p.mounts {
		end := i + len(m.path)
		if strings.HasPrefix(s[i:], m.path) && (end == len(s) || s[end] == '/' || !isPathByte(s[end])) {
			return m, true
		}
	}
	return mount{}, false
}

// isPathByte reports whether c can be part of a path name.
func isPathByte(c byte) bool {
	return c == '/' || c == '.' || c == '_' || c == '-' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Cmd returns the command that runs container c: the entrypoint with c's
// args, in the environment of c's env (plus PATH) followed by extraEnv
// ("KEY=value", which win over c's). Paths under mount points in args and
// env values are rewritten.
func (p *Pod) Cmd(c corev1.Container, extraEnv ...string) (*exec.Cmd, error) {
	var errs []error
	if len(c.Command) > 0 {
		errs = append(errs, fmt.Errorf("container %s: command replaces the image's entrypoint: not supported here", c.Name))
	}
	if len(c.EnvFrom) > 0 {
		errs = append(errs, fmt.Errorf("container %s: envFrom: not supported here", c.Name))
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			errs = append(errs, fmt.Errorf("container %s: env %s: valueFrom: not supported here", c.Name, e.Name))
		}
		env = append(env, e.Name+"="+p.mapPaths(e.Value))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = p.mapPaths(a)
	}
	cmd := exec.Command(p.entrypoint, args...)
	cmd.Env = append(env, extraEnv...)
	return cmd, nil
}

package webhook

import (
	"bytes"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ecr-token-refresh/ecr-token-refresh/refresher"
)

// FuzzAnnotations feeds the annotation parser arbitrary annotations and
// container names. It must not panic; a rejection names an annotation of
// the contract; and what it accepts is consistent and acceptable to the
// sidecar: one source of registries, a clean absolute mount path, valid
// container indexes, and sidecar arguments that the sidecar's own parser
// (refresher.FromSpecs) takes, no --registry value split where the
// sidecar splits it (commas and blanks).
//
// annotations is key NUL value NUL key NUL value…; containers is the
// pod's container names, comma-separated.
func FuzzAnnotations(f *testing.F) {
	for _, in := range goldenInputs(f) {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.Unmarshal(data, &pod); err != nil {
			f.Fatalf("%s: %v", in, err)
		}
		var names []string
		for _, c := range pod.Spec.Containers {
			names = append(names, c.Name)
		}
		f.Add(encodeAnnotations(pod.Annotations), strings.Join(names, ","))
	}
	registry := map[string]string{AnnotationInject: "true", AnnotationRegistryPrefix + "a": "123456789012.dkr.ecr.us-west-2.amazonaws.com"}
	for _, extra := range []map[string]string{
		{AnnotationMountPath: "/opt/pass words"},
		{AnnotationMountPath: "/opt/pass,words"},
		{AnnotationMountPath: "/"},
		{AnnotationMountPath: "/opt/config"},
		{AnnotationCPURequest: "1", AnnotationCPULimit: "500m"},
		{AnnotationRoleARN: "arn:aws:iam::123456789012:role/a,b"},
		{AnnotationInterval: "1h 0m"},
	} {
		a := maps.Clone(registry)
		maps.Copy(a, extra)
		f.Add(encodeAnnotations(a), "app")
	}
	f.Add(encodeAnnotations(map[string]string{
		AnnotationInject: "true", AnnotationConfigMap: "ecr", AnnotationInterval: "1h", AnnotationContainers: " , ",
	}), "")

	f.Fuzz(func(t *testing.T, annotations []byte, containers string) {
		a := decodeAnnotations(annotations)
		pod := &corev1.Pod{}
		pod.Annotations = a
		for name := range strings.SplitSeq(containers, ",") {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name})
		}
		_ = unknownAnnotations(a)
		if _, err := injectRequested(a); err != nil && !strings.Contains(err.Error(), AnnotationInject) {
			t.Fatalf("inject error does not name %s: %v", AnnotationInject, err)
		}
		s, err := parseSettings(pod)
		if err != nil {
			if !strings.Contains(err.Error(), annotationPrefix) {
				t.Fatalf("error names no annotation: %v", err)
			}
			return
		}
		if (s.configMap == "") == (len(s.registries) == 0) {
			t.Fatalf("accepted config-map %q with %d registries: want exactly one source", s.configMap, len(s.registries))
		}
		if !path.IsAbs(s.mountPath) || path.Clean(s.mountPath) != s.mountPath || s.mountPath == "/" {
			t.Fatalf("accepted mount path %q", s.mountPath)
		}
		for i, idx := range s.appContainers {
			if idx < 0 || idx >= len(pod.Spec.Containers) || i > 0 && idx <= s.appContainers[i-1] {
				t.Fatalf("app containers %v of %d containers", s.appContainers, len(pod.Spec.Containers))
			}
		}
		if len(s.registries) == 0 {
			return
		}
		var specs []string
		interval, role := "", ""
		args := sidecarArgs(s)
		for i := 1; i+1 < len(args); i += 2 {
			v := args[i+1]
			switch args[i] {
			case "--registry":
				if strings.ContainsAny(v, ", \n") {
					t.Fatalf("sidecar argument --registry %q would be split at a comma or blank", v)
				}
				specs = append(specs, v)
			case "--interval":
				interval = v
			case "--role-arn":
				role = v
			default:
				t.Fatalf("unexpected sidecar argument %q", args[i])
			}
		}
		if _, err := refresher.FromSpecs(specs, interval, role); err != nil {
			t.Fatalf("the webhook accepted what the sidecar rejects: %v\nargs: %q", err, args)
		}
	})
}

// encodeAnnotations is the fuzz form of annotations: key NUL value NUL….
func encodeAnnotations(a map[string]string) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(a)) {
		b.WriteString(k + "\x00" + a[k] + "\x00")
	}
	return b.Bytes()
}

// decodeAnnotations reads the fuzz form of annotations; a key without a
// value gets "".
func decodeAnnotations(data []byte) map[string]string {
	a := map[string]string{}
	parts := strings.Split(string(data), "\x00")
	for i := 0; i < len(parts); i += 2 {
		if i+1 < len(parts) {
			a[parts[i]] = parts[i+1]
		} else if parts[i] != "" {
			a[parts[i]] = ""
		}
	}
	return a
}

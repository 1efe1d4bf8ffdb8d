package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	evanpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
)

// Pod is one pod the load generator sends for creation, and what a correct
// answer looks like.
type Pod struct {
	// Object is the pod as the API server sends it: JSON.
	Object []byte
	// WantPatch says that a correct answer carries a JSON Patch that
	// applies to Object and changes it; otherwise it carries no patch.
	WantPatch bool
}

// template is a pod's AdmissionReview, split around the request's uid.
type template struct {
	pod           Pod
	before, after []byte
}

// newTemplate builds the AdmissionReview the API server sends a mutating
// webhook for creating p in its namespace, as the ReplicaSet controller
// would: request.uid comes first, as the API server encodes it.
func newTemplate(p Pod) (template, error) {
	var meta struct {
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(p.Object, &meta); err != nil {
		return template{}, fmt.Errorf("pod: not JSON: %w", err)
	}
	ns := meta.Metadata.Namespace
	if ns == "" {
		ns = "default"
	}
	nsJSON, _ := json.Marshal(ns) // a string always encodes
	var after bytes.Buffer
	after.WriteString(`","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"requestKind":{"group":"","version":"v1","kind":"Pod"},"requestResource":{"group":"","version":"v1","resource":"pods"},"namespace":`)
	after.Write(nsJSON)
	after.WriteString(`,"operation":"CREATE","userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller",` +
		`"uid":"5b3e3b0c-3c1e-4e4e-9a53-5f0e4c9e2f11","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]},"object":`)
	after.Write(p.Object)
	after.WriteString(`,"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}`)
	return template{
		pod:    p,
		before: []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"`),
		after:  after.Bytes(),
	}, nil
}

// Review is the AdmissionReview the API server sends for creating pod,
// with request uid uid.
func Review(uid string, pod []byte) ([]byte, error) {
	t, err := newTemplate(Pod{Object: pod})
	if err != nil {
		return nil, err
	}
	return t.body(nil, uid), nil
}

// body appends the review with uid to buf.
func (t *template) body(buf []byte, uid string) []byte {
	buf = append(buf, t.before...)
	buf = append(buf, uid...)
	return append(buf, t.after...)
}

// uid appends the uid of request i in the run with prefix run to buf, in
// the form of the UUIDs the API server sends.
func uid(buf []byte, run uint32, i int) []byte {
	return fmt.Appendf(buf, "%08x-0000-4000-8000-%012x", run, i)
}

// checker verifies answers. A patch that was shown to apply to a pod is
// remembered, so that the load generator's own work stays small: the same
// answer is compared, not applied again. A checker belongs to one
// connection.
type checker struct {
	applied map[string]bool // pod index and patch, joined by NUL
}

// check returns why answer is not a correct answer to the review of t
// with uid want, or nil. Like the API server, it decodes the answer as
// JSON whatever its Content-Type.
func (c *checker) check(t *template, podIndex int, want string, answer []byte) error {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(answer, &review); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	switch r := review.Response; {
	case review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview":
		return fmt.Errorf("the answer is a %s %s, want an admission.k8s.io/v1 AdmissionReview", review.APIVersion, review.Kind)
	case r == nil:
		return errors.New("the answer has no response")
	case string(r.UID) != want:
		return fmt.Errorf("the answer's uid is %q, want %q", r.UID, want)
	case !r.Allowed:
		msg := ""
		if r.Result != nil {
			msg = r.Result.Message
		}
		return fmt.Errorf("the pod was denied: %s", msg)
	case !t.pod.WantPatch:
		if len(r.Patch) > 0 {
			return fmt.Errorf("want no patch, got %s", r.Patch)
		}
		return nil
	case len(r.Patch) == 0:
		return errors.New("the answer has no patch")
	case r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch:
		return fmt.Errorf("patchType %v, want %s", r.PatchType, admissionv1.PatchTypeJSONPatch)
	}
	key := strconv.Itoa(podIndex) + "\x00" + string(review.Response.Patch)
	if c.applied[key] {
		return nil
	}
	if err := applies(t.pod.Object, review.Response.Patch); err != nil {
		return err
	}
	if c.applied == nil {
		c.applied = make(map[string]bool)
	}
	c.applied[key] = true
	return nil
}

// applies returns nil if patch applies to pod as the API server applies it
// and changes it.
func applies(pod, patch []byte) error {
	p, err := evanpatch.DecodePatch(patch)
	if err != nil {
		return fmt.Errorf("the patch is not a JSON Patch: %w", err)
	}
	out, err := p.Apply(pod)
	if err != nil {
		return fmt.Errorf("the patch does not apply: %w", err)
	}
	if evanpatch.Equal(out, pod) {
		return errors.New("the patch changes nothing")
	}
	return nil
}

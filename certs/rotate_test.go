package certs

import (
	"testing"
	"time"
)

func testPolicy(extra ...string) policy {
	return policy{
		service:      "svc",
		namespace:    "ns",
		hosts:        ServiceHosts("svc", "ns", extra...),
		caLifetime:   300 * time.Hour,
		certLifetime: 30 * time.Hour,
	}
}

func TestPlan(t *testing.T) {
	p := testPolicy()
	hosts := p.hosts
	caA := mustCA(t, t0, p.caLifetime)
	servA := mustServing(t, caA, hosts, t0, p.certLifetime)
	servA2 := mustServing(t, caA, hosts, t0.Add(195*time.Hour), p.certLifetime)
	caB := mustCA(t, t0.Add(201*time.Hour), p.caLifetime)
	servB := mustServing(t, caB, hosts, t0.Add(203*time.Hour), p.certLifetime)
	h := func(d time.Duration) time.Time { return t0.Add(d * time.Hour) }

	for _, tc := range []struct {
		name        string
		policy      policy
		state       state
		now         time.Time
		settled     bool
		want        step
		wantWaiting bool
		wantNext    time.Time
	}{
		{name: "empty: a new CA", state: state{}, now: t0, want: stepNewCA},
		{name: "no serving certificate: issue one", state: state{cas: bundle{caA.Cert}, caKey: caA.Key}, now: h(1), want: stepIssue},
		{name: "fresh: wait until the serving certificate is due", state: state{bundle{caA.Cert}, caA.Key, servA}, now: h(1), want: stepNone, wantNext: renewAt(servA.Cert)},
		{name: "serving certificate due: renew", state: state{bundle{caA.Cert}, caA.Key, servA}, now: renewAt(servA.Cert), want: stepRenew},
		{name: "serving certificate expired: issue at once", state: state{bundle{caA.Cert}, caA.Key, servA}, now: h(31), want: stepIssue},
		{name: "other hosts: renew", policy: testPolicy("localhost"), state: state{bundle{caA.Cert}, caA.Key, servA}, now: h(1), want: stepRenew},
		{name: "serving certificate by a CA not in the bundle: issue", state: state{bundle{caB.Cert}, caB.Key, servA2}, now: h(205), want: stepIssue},
		{name: "CA key of another CA: a new CA", state: state{bundle{caA.Cert}, caB.Key, servA}, now: h(1), want: stepNewCA},
		{name: "CA expired: a new CA", state: state{bundle{caA.Cert}, caA.Key, servA}, now: h(301), want: stepNewCA},
		{name: "CA due: a new CA", state: state{bundle{caA.Cert}, caA.Key, servA2}, now: renewAt(caA.Cert), want: stepNewCA},
		{name: "CA due with the serving certificate: renew it under the old CA first", state: state{bundle{caA.Cert}, caA.Key, servA2}, now: renewAt(servA2.Cert), want: stepRenew},
		{name: "new CA, unsettled: wait to switch", state: state{bundle{caA.Cert, caB.Cert}, caB.Key, servA2}, now: h(202), want: stepNone, wantWaiting: true, wantNext: servA2.Cert.NotAfter},
		{name: "new CA, settled: switch", state: state{bundle{caA.Cert, caB.Cert}, caB.Key, servA2}, now: h(202), settled: true, want: stepSwitch},
		{name: "new CA, serving certificate due but unsettled: wait", state: state{bundle{caA.Cert, caB.Cert}, caB.Key, servA2}, now: renewAt(servA2.Cert), want: stepNone, wantWaiting: true, wantNext: servA2.Cert.NotAfter},
		{name: "switched, unsettled: keep the old CA", state: state{bundle{caA.Cert, caB.Cert}, caB.Key, servB}, now: h(204), want: stepNone, wantWaiting: true, wantNext: renewAt(servB.Cert)},
		{name: "switched, settled: drop the old CA", state: state{bundle{caA.Cert, caB.Cert}, caB.Key, servB}, now: h(204), settled: true, want: stepDropOld},
		{name: "old CA expired: drop it", state: state{bundle{caA.Cert, caB.Cert}, caB.Key, mustServing(t, caB, hosts, h(295), p.certLifetime)}, now: h(301), want: stepDropExpired},
		{name: "rotated: nothing until the serving certificate is due", state: state{bundle{caB.Cert}, caB.Key, servB}, now: h(204), settled: true, want: stepNone, wantNext: renewAt(servB.Cert)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := p
			if tc.policy.hosts != nil {
				pol = tc.policy
			}
			d := pol.plan(tc.state, tc.now, tc.settled)
			if d.step != tc.want || d.waiting != tc.wantWaiting {
				t.Errorf("plan = %s (waiting %v), want %s (waiting %v)", d.step, d.waiting, tc.want, tc.wantWaiting)
			}
			if !tc.wantNext.IsZero() && !d.next.Equal(tc.wantNext) {
				t.Errorf("next %s, want %s", d.next, tc.wantNext)
			}
			if d.step == stepNone && !d.next.After(tc.now) {
				t.Errorf("next %s is not after now %s", d.next, tc.now)
			}
		})
	}
}

func TestApply(t *testing.T) {
	p := testPolicy()
	caA := mustCA(t, t0, p.caLifetime)
	servA := mustServing(t, caA, p.hosts, t0.Add(240*time.Hour), p.certLifetime)
	caB := mustCA(t, t0.Add(250*time.Hour), p.caLifetime)
	servB := mustServing(t, caB, p.hosts, t0.Add(251*time.Hour), p.certLifetime)
	h := func(d time.Duration) time.Time { return t0.Add(d * time.Hour) }

	for _, tc := range []struct {
		name string
		step step
		in   state
		now  time.Time
		// wantCAs are the bundle's CAs, nil for one created by the step.
		wantCAs     []*KeyPair
		wantServing *KeyPair // nil for one issued by the step
		wantIssuer  *KeyPair // nil for the CA created by the step
	}{
		{name: "first CA and serving certificate", step: stepNewCA, now: t0, wantCAs: []*KeyPair{nil}},
		{name: "a new CA next to the old one", step: stepNewCA, in: state{bundle{caA.Cert}, caA.Key, servA}, now: h(250),
			wantCAs: []*KeyPair{caA, nil}, wantServing: servA},
		{name: "a new CA replacing an expired one", step: stepNewCA, in: state{bundle{caA.Cert}, caA.Key, servA}, now: h(301),
			wantCAs: []*KeyPair{nil}},
		{name: "switch to the new CA", step: stepSwitch, in: state{bundle{caA.Cert, caB.Cert}, caB.Key, servA}, now: h(251),
			wantCAs: []*KeyPair{caA, caB}, wantIssuer: caB},
		{name: "renew under the same CA", step: stepRenew, in: state{bundle{caB.Cert}, caB.Key, servB}, now: h(270),
			wantCAs: []*KeyPair{caB}, wantIssuer: caB},
		{name: "drop the old CA", step: stepDropOld, in: state{bundle{caA.Cert, caB.Cert}, caB.Key, servB}, now: h(252),
			wantCAs: []*KeyPair{caB}, wantServing: servB},
		{name: "drop an expired CA", step: stepDropExpired, in: state{bundle{caA.Cert, caB.Cert}, caB.Key, servB}, now: h(301),
			wantCAs: []*KeyPair{caB}, wantServing: servB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := p.apply(tc.in, tc.step, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.cas) != len(tc.wantCAs) {
				t.Fatalf("%d CAs, want %d", len(s.cas), len(tc.wantCAs))
			}
			for i, want := range tc.wantCAs {
				switch {
				case want == nil && (s.cas[i].NotBefore.After(tc.now) || !s.cas[i].NotAfter.Equal(tc.now.Add(p.caLifetime))):
					t.Errorf("CA %d is not new: valid from %s to %s", i, s.cas[i].NotBefore, s.cas[i].NotAfter)
				case want != nil && !s.cas[i].Equal(want.Cert):
					t.Errorf("CA %d is %s, want %s", i, s.cas[i].Subject.CommonName, want.Cert.Subject.CommonName)
				}
			}
			if !matches(s.cas.newest(), s.caKey) {
				t.Error("ca.key is not the newest CA's key")
			}
			if tc.wantServing != nil {
				if !s.serving.Cert.Equal(tc.wantServing.Cert) {
					t.Error("the serving certificate changed")
				}
				return
			}
			issuer := s.cas.newest()
			if tc.wantIssuer != nil {
				issuer = tc.wantIssuer.Cert
			}
			if tc.in.serving != nil && s.serving.Cert.Equal(tc.in.serving.Cert) || !(bundle{issuer}).verifies(s.serving.Cert, tc.now) || !p.names(s.serving.Cert) {
				t.Errorf("serving certificate: want a new one for %q signed by %s", p.hosts, issuer.Subject.CommonName)
			}
			if d := p.plan(s, tc.now, false); d.step != stepNone {
				t.Errorf("plan after %s: %s, want none", tc.step, d.step)
			}
		})
	}
}

package certs

import (
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"time"
)

// step is one change to the Secret.
type step int

const (
	// stepNone changes nothing.
	stepNone step = iota
	// stepNewCA adds a new CA to the bundle, which signs from then on:
	// there is no usable CA, or the newest is due. A serving certificate
	// that the bundle does not trust is replaced at once.
	stepNewCA
	// stepIssue issues a serving certificate at once: there is none, or
	// the bundle does not trust it (it expired, or so did its CA).
	stepIssue
	// stepRenew issues a serving certificate under the CA that signed the
	// current one: it is due, or the hosts it names changed.
	stepRenew
	// stepDropExpired drops the expired CAs from the bundle.
	stepDropExpired
	// stepSwitch replaces a serving certificate signed by an older CA by
	// one signed by the newest, once the bundle has settled.
	stepSwitch
	// stepDropOld drops every CA but the newest, once the serving
	// certificate that it signed has settled.
	stepDropOld
)

// String describes the step for the logs.
func (s step) String() string {
	return [...]string{
		stepNone:        "none",
		stepNewCA:       "new CA",
		stepIssue:       "issue serving certificate",
		stepRenew:       "renew serving certificate",
		stepDropExpired: "drop expired CAs",
		stepSwitch:      "switch serving certificate to the newest CA",
		stepDropOld:     "drop old CAs",
	}[s]
}

// decision is what plan decided.
type decision struct {
	// step is the change to make now.
	step step
	// waiting is set when a step waits for the state to settle.
	waiting bool
	// next is when a step falls due if nothing changes; zero when step is
	// not stepNone.
	next time.Time
}

// policy is how certificates are issued and rotated.
type policy struct {
	service, namespace       string
	hosts                    []string
	caLifetime, certLifetime time.Duration
}

// plan decides the next change to s at now. settled reports whether s has
// been in the Secret and its bundle in the webhook configuration for the
// propagation delay: only then may the serving certificate move to a new
// CA (the API server trusts it) or an old CA leave the bundle (no replica
// serves a certificate it signed).
func (p policy) plan(s state, now time.Time, settled bool) decision {
	signer := s.signer(now)
	if signer == nil {
		return decision{step: stepNewCA}
	}
	if !s.trusted(now) {
		return decision{step: stepIssue}
	}
	serving := s.serving.Cert
	byNewest := bundle{signer.Cert}.verifies(serving, now)
	gated := stepNone
	switch {
	case byNewest && (due(serving, now) || !p.names(serving)):
		return decision{step: stepRenew}
	case due(signer.Cert, now):
		return decision{step: stepNewCA}
	case len(s.cas.unexpired(now)) < len(s.cas):
		return decision{step: stepDropExpired}
	case !byNewest:
		gated = stepSwitch
	case len(s.cas) > 1:
		gated = stepDropOld
	}
	if gated != stepNone && settled {
		return decision{step: gated}
	}
	next := []time.Time{renewAt(signer.Cert), serving.NotAfter}
	if byNewest {
		next = append(next, renewAt(serving))
	}
	for _, ca := range s.cas {
		next = append(next, ca.NotAfter)
	}
	return decision{waiting: gated != stepNone, next: slices.MinFunc(next, time.Time.Compare)}
}

// apply makes st on s at now.
func (p policy) apply(s state, st step, now time.Time) (state, error) {
	switch st {
	case stepNewCA:
		ca, err := NewCA(caName(p.service, p.namespace, now), now, p.caLifetime)
		if err != nil {
			return s, err
		}
		s.cas, s.caKey = append(s.cas.unexpired(now), ca.Cert), ca.Key
		if s.trusted(now) {
			return s, nil
		}
		s.serving, err = NewServingCert(ca, p.hosts, now, p.certLifetime)
		return s, err
	case stepIssue, stepRenew, stepSwitch:
		signer := s.signer(now)
		if signer == nil {
			return s, errors.New("certs: no CA to sign with")
		}
		serving, err := NewServingCert(signer, p.hosts, now, p.certLifetime)
		if err != nil {
			return s, err
		}
		s.serving = serving
	case stepDropExpired:
		s.cas = s.cas.unexpired(now)
	case stepDropOld:
		s.cas = bundle{s.cas.newest()}
	}
	return s, nil
}

// names reports whether cert names exactly the policy's hosts.
func (p policy) names(cert *x509.Certificate) bool {
	var want, got []string
	for _, h := range p.hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		want = append(want, h)
	}
	got = append(got, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		got = append(got, ip.String())
	}
	slices.Sort(want)
	slices.Sort(got)
	return slices.Equal(slices.Compact(want), slices.Compact(got))
}

// renewAt is when a third of cert's validity is left.
func renewAt(cert *x509.Certificate) time.Time {
	return cert.NotAfter.Add(-cert.NotAfter.Sub(cert.NotBefore) / 3)
}

// due reports whether cert is due for renewal at now.
func due(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(renewAt(cert))
}

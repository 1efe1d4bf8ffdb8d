package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"
)

// t0 is the tests' start of time, whole seconds as in certificates.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestServiceHosts(t *testing.T) {
	got := ServiceHosts("svc", "ns", "localhost", "127.0.0.1")
	want := []string{"svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local", "localhost", "127.0.0.1"}
	if !slices.Equal(got, want) {
		t.Errorf("ServiceHosts = %q, want %q", got, want)
	}
}

func TestNewCA(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lifetime time.Duration
		backdate time.Duration
	}{
		{"a year, backdated five minutes", 365 * 24 * time.Hour, maxBackdate},
		{"seconds, backdated a tenth", 10 * time.Second, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := NewCA("test-ca", t0, tc.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			c := ca.Cert
			if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("IsCA %v, BasicConstraintsValid %v, MaxPathLen %d: want a CA with path length 0", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen)
			}
			if c.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Errorf("KeyUsage %b lacks CertSign", c.KeyUsage)
			}
			if c.Subject.CommonName != "test-ca" {
				t.Errorf("CommonName %q", c.Subject.CommonName)
			}
			checkValidity(t, c, t0.Add(-tc.backdate), t0.Add(tc.lifetime))
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
		})
	}
	if _, err := NewCA("test-ca", t0, 0); err == nil {
		t.Error("NewCA with no lifetime: no error")
	}
}

func TestNewServingCert(t *testing.T) {
	ca := mustCA(t, t0, 100*time.Hour)
	other := mustCA(t, t0, 100*time.Hour)
	hosts := ServiceHosts("svc", "ns", "localhost", "127.0.0.1", "::1")
	for _, tc := range []struct {
		name         string
		now          time.Time
		lifetime     time.Duration
		wantNotAfter time.Time
		wantBackdate time.Duration
	}{
		{"within the CA's validity", t0, 10 * time.Hour, t0.Add(10 * time.Hour), maxBackdate},
		{"short-lived", t0, 10 * time.Second, t0.Add(10 * time.Second), time.Second},
		{"capped at the CA's expiry", t0.Add(95 * time.Hour), 10 * time.Hour, ca.Cert.NotAfter, maxBackdate},
		{"capped, short-lived", ca.Cert.NotAfter.Add(-20 * time.Second), 10 * time.Hour, ca.Cert.NotAfter, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kp, err := NewServingCert(ca, hosts, tc.now, tc.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			c := kp.Cert
			if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("IsCA %v, KeyUsage %b, ExtKeyUsage %v: want a server certificate", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
			}
			wantDNS := []string{"svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local", "localhost"}
			if !slices.Equal(c.DNSNames, wantDNS) {
				t.Errorf("DNSNames %q, want %q", c.DNSNames, wantDNS)
			}
			if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
				t.Errorf("IPAddresses %v, want 127.0.0.1 and ::1", c.IPAddresses)
			}
			if c.Subject.CommonName != "svc" {
				t.Errorf("CommonName %q, want svc", c.Subject.CommonName)
			}
			checkValidity(t, c, tc.now.Add(-tc.wantBackdate), tc.wantNotAfter)
			for _, h := range hosts {
				if _, err := c.Verify(verifyOpts(ca, h, tc.now)); err != nil {
					t.Errorf("verifying for %s with its CA: %v", h, err)
				}
			}
			if _, err := c.Verify(verifyOpts(ca, "svc.other.svc", tc.now)); err == nil {
				t.Error("verifies for a host it does not name")
			}
			if _, err := c.Verify(verifyOpts(other, "svc.ns.svc", tc.now)); err == nil {
				t.Error("verifies with another CA")
			}
			if _, err := c.Verify(verifyOpts(ca, "svc.ns.svc", c.NotAfter.Add(time.Second))); err == nil {
				t.Error("verifies after it expired")
			}
			key, err := kp.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(kp.CertPEM(), key); err != nil {
				t.Errorf("PEM is no TLS key pair: %v", err)
			}
		})
	}
	if _, err := NewServingCert(ca, nil, t0, time.Hour); err == nil {
		t.Error("NewServingCert with no hosts: no error")
	}
	if _, err := NewServingCert(ca, hosts, ca.Cert.NotAfter, time.Hour); err == nil {
		t.Error("NewServingCert when the CA expires: no error")
	}
}

// checkValidity checks that c is valid from notBefore to notAfter.
func checkValidity(t *testing.T, c *x509.Certificate, notBefore, notAfter time.Time) {
	t.Helper()
	if !c.NotAfter.Equal(notAfter) {
		t.Errorf("NotAfter %s, want %s", c.NotAfter, notAfter)
	}
	if want := notBefore.Truncate(time.Second); !c.NotBefore.Equal(want) {
		t.Errorf("NotBefore %s, want %s", c.NotBefore, want)
	}
}

func verifyOpts(ca *KeyPair, host string, now time.Time) x509.VerifyOptions {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: now}
}

func mustCA(t testing.TB, now time.Time, lifetime time.Duration) *KeyPair {
	t.Helper()
	ca, err := NewCA(caName("svc", "ns", now), now, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustServing(t testing.TB, ca *KeyPair, hosts []string, now time.Time, lifetime time.Duration) *KeyPair {
	t.Helper()
	kp, err := NewServingCert(ca, hosts, now, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

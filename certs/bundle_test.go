package certs

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBundle(t *testing.T) {
	old := mustCA(t, t0, 10*time.Hour)
	cur := mustCA(t, t0.Add(5*time.Hour), 10*time.Hour)
	hosts := []string{"svc.ns.svc"}
	byOld := mustServing(t, old, hosts, t0, 10*time.Hour)
	byCur := mustServing(t, cur, hosts, t0.Add(5*time.Hour), time.Hour)
	b := bundle{old.Cert, cur.Cert}

	parsed, err := parseBundle(b.encode())
	if err != nil || len(parsed) != 2 || !parsed[0].Equal(old.Cert) || !parsed[1].Equal(cur.Cert) {
		t.Errorf("parseBundle(encode) = %d CAs, %v: want old then new", len(parsed), err)
	}
	if b.newest() != cur.Cert || (bundle{}).newest() != nil {
		t.Error("newest is not the last CA")
	}
	for _, tc := range []struct {
		name          string
		now           time.Time
		wantUnexpired int
		trustsOld     bool
		trustsCur     bool
	}{
		{"both valid", t0.Add(5*time.Hour + time.Minute), 2, true, true},
		{"old expired", t0.Add(10*time.Hour + time.Second), 1, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.unexpired(tc.now); len(got) != tc.wantUnexpired || got.newest() != cur.Cert {
				t.Errorf("unexpired: %d CAs, want %d ending with the newest", len(got), tc.wantUnexpired)
			}
			if got := b.verifies(byOld.Cert, tc.now); got != tc.trustsOld {
				t.Errorf("trusts the certificate by the old CA: %v, want %v", got, tc.trustsOld)
			}
			if got := b.verifies(byCur.Cert, tc.now); got != tc.trustsCur {
				t.Errorf("trusts the certificate by the new CA: %v, want %v", got, tc.trustsCur)
			}
		})
	}
	if (bundle{old.Cert}).verifies(byCur.Cert, t0.Add(5*time.Hour)) {
		t.Error("the old CA alone trusts a certificate by the new one")
	}

	for _, bad := range []string{"junk", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := parseBundle([]byte(bad)); err == nil {
			t.Errorf("parseBundle(%q): no error", bad)
		}
	}
}

func TestParseState(t *testing.T) {
	ca := mustCA(t, t0, 10*time.Hour)
	serving := mustServing(t, ca, []string{"svc.ns.svc"}, t0, time.Hour)
	valid, err := state{cas: bundle{ca.Cert}, caKey: ca.Key, serving: serving}.data()
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(valid)); !slices.Equal(got, []string{"ca.crt", "ca.key", "tls.crt", "tls.key"}) {
		t.Errorf("Secret keys %q", got)
	}
	if !bytes.Equal(valid["tls.crt"], serving.CertPEM()) || !bytes.Equal(valid["ca.crt"], ca.CertPEM()) {
		t.Error("tls.crt or ca.crt is not the certificate's PEM")
	}
	other := mustCA(t, t0, time.Hour)
	otherKey, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	with := func(key string, v []byte) map[string][]byte {
		d := maps.Clone(valid)
		d[key] = v
		return d
	}
	for _, tc := range []struct {
		name                    string
		data                    map[string][]byte
		wantErr                 string
		wantCA, wantKey, wantTL bool
	}{
		{"empty", nil, "", false, false, false},
		{"valid", valid, "", true, true, true},
		{"bad bundle", with("ca.crt", []byte("junk")), "ca.crt", false, true, true},
		{"bad CA key", with("ca.key", []byte("junk")), "ca.key", true, false, true},
		{"serving key of another certificate", with("tls.key", otherKey), "does not match", true, true, false},
		{"serving key missing", with("tls.key", nil), "tls.key", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseState(tc.data)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if (len(s.cas) > 0) != tc.wantCA || (s.caKey != nil) != tc.wantKey || (s.serving != nil) != tc.wantTL {
				t.Errorf("parsed bundle %v, CA key %v, serving %v: want %v, %v, %v",
					len(s.cas) > 0, s.caKey != nil, s.serving != nil, tc.wantCA, tc.wantKey, tc.wantTL)
			}
		})
	}
	s, _ := parseState(with("ca.key", otherKey))
	if s.signer(t0) != nil {
		t.Error("a CA key of another CA signs")
	}
	s, _ = parseState(valid)
	if s.signer(t0) == nil || s.signer(ca.Cert.NotAfter) != nil {
		t.Error("signer: want the CA until it expires")
	}
}

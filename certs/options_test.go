package certs

import (
	"strings"
	"testing"
	"time"
)

func TestOptions(t *testing.T) {
	t.Setenv(NamespaceEnv, "")
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Namespace != DefaultNamespace || o.policy().service != ServiceName ||
		o.CALifetime != DefaultCALifetime || o.CertLifetime != DefaultCertLifetime || o.PropagationDelay != DefaultPropagationDelay {
		t.Errorf("defaults: %+v", o)
	}
	t.Setenv(NamespaceEnv, "from-env")
	if o, _ := (Options{}).withDefaults(); o.Namespace != "from-env" {
		t.Errorf("namespace %q, want $%s", o.Namespace, NamespaceEnv)
	}
	if o, _ := (Options{Namespace: "set"}).withDefaults(); o.Namespace != "set" {
		t.Errorf("namespace %q, want the option", o.Namespace)
	}

	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"short but consistent", Options{CALifetime: 9 * time.Second, CertLifetime: 3 * time.Second, PropagationDelay: 500 * time.Millisecond}, ""},
		{"negative", Options{CALifetime: -time.Hour}, "positive"},
		{"certificate outlives its CA", Options{CALifetime: time.Hour, CertLifetime: 2 * time.Hour}, "exceeds the CA lifetime"},
		{"delay too long for the certificate", Options{CertLifetime: time.Hour, PropagationDelay: 11 * time.Minute}, "sixth"},
		{"empty extra host", Options{ExtraHosts: []string{""}}, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("New: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

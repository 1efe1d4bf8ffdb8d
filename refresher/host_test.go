package refresher

import (
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	tests := []struct {
		host    string
		want    Host
		wantErr string
	}{
		{host: "123456789012.dkr.ecr.us-west-2.amazonaws.com",
			want: Host{Name: "123456789012.dkr.ecr.us-west-2.amazonaws.com", RegistryID: "123456789012", Region: "us-west-2"}},
		{host: "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
			want: Host{Name: "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", RegistryID: "123456789012", Region: "us-east-1", FIPS: true}},
		{host: "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
			want: Host{Name: "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", RegistryID: "123456789012", Region: "cn-north-1"}},
		{host: "123456789012.dkr-ecr.us-west-2.on.aws",
			want: Host{Name: "123456789012.dkr-ecr.us-west-2.on.aws", RegistryID: "123456789012", Region: "us-west-2", DualStack: true}},
		{host: "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
			want: Host{Name: "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws", RegistryID: "123456789012", Region: "us-gov-west-1", FIPS: true, DualStack: true}},
		{host: "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
			want: Host{Name: "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", RegistryID: "123456789012", Region: "us-iso-east-1"}},
		{host: " 123456789012.DKR.ECR.US-WEST-2.AMAZONAWS.COM ",
			want: Host{Name: "123456789012.dkr.ecr.us-west-2.amazonaws.com", RegistryID: "123456789012", Region: "us-west-2"}},
		{host: "", wantErr: "is not an ECR registry host"},
		{host: "https://123456789012.dkr.ecr.us-west-2.amazonaws.com", wantErr: "is not an ECR registry host"},
		{host: "123456789012.dkr.ecr.us-west-2.amazonaws.com/repo", wantErr: "is not an ECR registry host"},
		{host: "12345678901.dkr.ecr.us-west-2.amazonaws.com", wantErr: "is not an ECR registry host"},
		{host: "123456789012.dkr.ecr.uswest2.amazonaws.com", wantErr: "is not an ECR registry host"},
		{host: "123456789012.dkr.ecr.us-west-2.example.com", wantErr: `"example.com" is not an AWS domain for ECR IPv4 endpoints`},
		{host: "123456789012.dkr.ecr.us-west-2.on.aws", wantErr: "not an AWS domain for ECR IPv4 endpoints"},
		{host: "123456789012.dkr-ecr.us-west-2.amazonaws.com", wantErr: "not an AWS domain for ECR dual-stack endpoints"},
		{host: "quay.io", wantErr: "expected ACCOUNT.dkr.ecr.REGION.amazonaws.com"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, err := ParseHost(tt.host)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseHost(%q) error = %v, want it to contain %q", tt.host, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHost(%q): %v", tt.host, err)
			}
			if got != tt.want {
				t.Errorf("ParseHost(%q) = %+v, want %+v", tt.host, got, tt.want)
			}
		})
	}
}

func TestDefaultHost(t *testing.T) {
	tests := map[string]string{
		"us-west-2":       "123456789012.dkr.ecr.us-west-2.amazonaws.com",
		"us-gov-west-1":   "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
		"cn-north-1":      "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
		"us-iso-east-1":   "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
		"us-isob-east-1":  "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
		"eu-isoe-west-1":  "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
		"us-isof-south-1": "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
		"eusc-de-east-1":  "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
	}
	for region, want := range tests {
		got := DefaultHost("123456789012", region)
		if got != want {
			t.Errorf("DefaultHost(%s) = %s, want %s", region, got, want)
		}
		if _, err := ParseHost(got); err != nil {
			t.Errorf("DefaultHost(%s) = %s does not parse: %v", region, got, err)
		}
	}
}

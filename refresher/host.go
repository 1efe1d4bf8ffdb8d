package refresher

import (
	"fmt"
	"regexp"
	"strings"
)

// Host is an ECR registry host name taken apart, for example
// 123456789012.dkr.ecr.us-west-2.amazonaws.com.
type Host struct {
	// Name is the host as written, lower-cased.
	Name string
	// RegistryID is the 12-digit AWS account ID that owns the registry.
	RegistryID string
	// Region is the AWS region of the registry.
	Region string
	// FIPS is set for FIPS endpoints (dkr.ecr-fips…).
	FIPS bool
	// DualStack is set for dual-stack (IPv4 and IPv6) endpoints (dkr-ecr…).
	DualStack bool
}

// hostPattern matches the registry host forms ECR documents:
//
//	ACCOUNT.dkr.ecr.REGION.SUFFIX        (IPv4)
//	ACCOUNT.dkr.ecr-fips.REGION.SUFFIX   (FIPS)
//	ACCOUNT.dkr-ecr.REGION.SUFFIX        (dual-stack)
//	ACCOUNT.dkr-ecr-fips.REGION.SUFFIX   (dual-stack FIPS)
var hostPattern = regexp.MustCompile(`^([0-9]{12})\.dkr([.-])ecr(-fips)?\.([a-z]{2,4}(?:-[a-z]+)+-[0-9]+)\.([a-z0-9.-]+)$`)

// hostSuffixes are the DNS suffixes of the AWS partitions that ECR serves,
// for IPv4 endpoints (false) and dual-stack ones (true).
var hostSuffixes = map[string]bool{
	"amazonaws.com":                false, // aws, aws-us-gov
	"amazonaws.com.cn":             false, // aws-cn
	"c2s.ic.gov":                   false, // aws-iso
	"sc2s.sgov.gov":                false, // aws-iso-b
	"cloud.adc-e.uk":               false, // aws-iso-e
	"csp.hci.ic.gov":               false, // aws-iso-f
	"amazonaws.eu":                 false, // aws-eusc
	"on.aws":                       true,  // aws, aws-us-gov
	"api.aws":                      true,
	"on.amazonwebservices.com.cn":  true, // aws-cn
	"api.amazonwebservices.com.cn": true,
	"api.aws.ic.gov":               true,
	"api.aws.scloud":               true,
	"api.cloud-aws.adc-e.uk":       true,
	"api.aws.hci.ic.gov":           true,
	"api.amazonwebservices.eu":     true,
}

// hostForm is the expected form, quoted in error messages.
const hostForm = "ACCOUNT.dkr.ecr.REGION.amazonaws.com, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com"

// ParseHost validates an ECR registry host name (no scheme, no path) and
// takes it apart. It accepts the IPv4, FIPS and dual-stack forms in every
// AWS partition. The error text names the expected form and can be shown
// to a user as it is.
func ParseHost(host string) (Host, error) {
	name := strings.ToLower(strings.TrimSpace(host))
	m := hostPattern.FindStringSubmatch(name)
	if m == nil {
		return Host{}, fmt.Errorf("%q is not an ECR registry host (expected %s)", host, hostForm)
	}
	dualStack := m[2] == "-"
	wantDualStack, known := hostSuffixes[m[5]]
	if !known || wantDualStack != dualStack {
		return Host{}, fmt.Errorf("%q: %q is not an AWS domain for ECR %s endpoints (expected %s)",
			host, m[5], map[bool]string{false: "IPv4", true: "dual-stack"}[dualStack], hostForm)
	}
	return Host{Name: name, RegistryID: m[1], Region: m[4], FIPS: m[3] != "", DualStack: dualStack}, nil
}

// DefaultHost returns the IPv4 registry host of registryID in region, with
// the DNS suffix of the region's partition.
func DefaultHost(registryID, region string) string {
	return fmt.Sprintf("%s.dkr.ecr.%s.%s", registryID, region, partitionSuffix(region))
}

// partitionSuffix returns the DNS suffix of the partition region belongs to.
func partitionSuffix(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "amazonaws.com.cn"
	case strings.HasPrefix(region, "us-iso-"):
		return "c2s.ic.gov"
	case strings.HasPrefix(region, "us-isob-"):
		return "sc2s.sgov.gov"
	case strings.HasPrefix(region, "eu-isoe-"):
		return "cloud.adc-e.uk"
	case strings.HasPrefix(region, "us-isof-"):
		return "csp.hci.ic.gov"
	case strings.HasPrefix(region, "eusc-"):
		return "amazonaws.eu"
	default:
		return "amazonaws.com"
	}
}

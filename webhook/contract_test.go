package webhook

import (
	"net"
	"path"
	"slices"
	"strconv"
	"testing"

	"github.com/ecr-token-refresh/ecr-token-refresh/refresher"
)

// TestSidecarContract checks the webhook against the sidecar's side of the
// contract: the config path, the health port, and the --registry,
// --interval and --role-arn values that refresher.FromSpecs accepts.
func TestSidecarContract(t *testing.T) {
	if got := path.Join(ConfigMountPath, configKey); got != refresher.DefaultConfigPath {
		t.Errorf("the ConfigMap's config is at %s, the sidecar reads %s by default", got, refresher.DefaultConfigPath)
	}
	_, port, err := net.SplitHostPort(refresher.DefaultHealthAddr)
	if err != nil || port != strconv.Itoa(HealthPort) {
		t.Errorf("probes use port %d, the sidecar listens on %s", HealthPort, refresher.DefaultHealthAddr)
	}

	pod := testPod(withRegistry(
		AnnotationRegistryPrefix+"fips", "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
		AnnotationRegistryPrefix+"china", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
		AnnotationRegistryPrefix+"dual", "123456789012.dkr-ecr.us-west-2.on.aws",
		AnnotationMountPath, "/var/run/ecr=passwords",
		AnnotationInterval, "45m",
		AnnotationRoleARN, "arn:aws-us-gov:iam::123456789012:role/path/ecr-reader",
		AnnotationNativeSidecar, "false",
	))
	s, err := parseSettings(pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{sidecarArgs(s), onceContainer(s, testImage, nil, nil).Args} {
		if args[0] != "sidecar" {
			t.Fatalf("args %q do not start with the sidecar command", args)
		}
		var specs []string
		var interval, roleARN string
		once := false
		for i := 1; i < len(args); i++ {
			switch args[i] {
			case "--registry":
				i++
				specs = append(specs, args[i])
			case "--interval":
				i++
				interval = args[i]
			case "--role-arn":
				i++
				roleARN = args[i]
			case "--once":
				once = true
			default:
				t.Fatalf("args %q: unexpected %q", args, args[i])
			}
		}
		cfg, err := refresher.FromSpecs(specs, interval, roleARN)
		if err != nil {
			t.Fatalf("the sidecar rejects %q: %v", args, err)
		}
		var files []string
		for _, r := range cfg.Registries {
			files = append(files, r.PasswordFile)
		}
		want := []string{"/var/run/ecr=passwords/china.pass", "/var/run/ecr=passwords/dual.pass", "/var/run/ecr=passwords/fips.pass", "/var/run/ecr=passwords/main.pass"}
		if !slices.Equal(files, want) || cfg.Interval.String() != "45m0s" || cfg.Registries[0].RoleARN != roleARN {
			t.Errorf("the sidecar reads files %q, interval %s, role %q; want files %q", files, cfg.Interval, cfg.Registries[0].RoleARN, want)
		}
		if once != (args[len(args)-1] == "--once") || once != slices.Contains(args, "--once") {
			t.Errorf("--once misplaced in %q", args)
		}
	}
}

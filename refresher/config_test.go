package refresher

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOriginalConfig(t *testing.T) {
	cfg, err := LoadFile("testdata/original.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Interval: 30 * time.Minute,
		FileMode: 0o444,
		Registries: []Registry{{
			RegistryID:   "123456789012",
			Region:       "us-west-2",
			Host:         "123456789012.dkr.ecr.us-west-2.amazonaws.com",
			PasswordFile: "/opt/passwords/my-registry.pass",
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("LoadFile = %+v, want %+v", cfg, want)
	}
}

func TestParseFullConfig(t *testing.T) {
	cfg, err := Parse([]byte(`
interval: 1h
fileMode: "0440"
dockerConfigFile: /opt/passwords/config.json
registries:
- registryId: 123456789012
  region: cn-north-1
  passwordFile: /opt/passwords/a.pass
  usernameFile: /opt/passwords/a.user
  roleArn: arn:aws-cn:iam::123456789012:role/ecr-reader
  externalId: spinnaker
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Interval:         time.Hour,
		FileMode:         0o440,
		DockerConfigFile: "/opt/passwords/config.json",
		Registries: []Registry{{
			RegistryID:   "123456789012",
			Region:       "cn-north-1",
			Host:         "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
			PasswordFile: "/opt/passwords/a.pass",
			UsernameFile: "/opt/passwords/a.user",
			RoleARN:      "arn:aws-cn:iam::123456789012:role/ecr-reader",
			ExternalID:   "spinnaker",
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse = %+v, want %+v", cfg, want)
	}
}

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse([]byte("registries:\n- {registryId: \"123456789012\", region: us-east-1, passwordFile: /p/x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interval != DefaultInterval || cfg.FileMode != DefaultFileMode || cfg.DockerConfigFile != "" {
		t.Errorf("defaults: interval %s, mode %o, dockerConfigFile %q", cfg.Interval, cfg.FileMode, cfg.DockerConfigFile)
	}
}

func TestParseErrors(t *testing.T) {
	const reg = "- registryId: \"123456789012\"\n  region: us-west-2\n  passwordFile: /opt/passwords/a.pass\n"
	tests := []struct {
		name string
		yaml string
		want []string // every one must appear in the error
	}{
		{"empty file", "", []string{"registries: required"}},
		{"comment only", "# nothing\n", []string{"registries: required"}},
		{"yaml syntax", "interval: 30m\nregistries: [\n", []string{"line"}},
		{"not a mapping", "- a\n- b\n", []string{"cannot unmarshal"}},
		{"two documents", "registries:\n" + reg + "---\ninterval: 1m\n", []string{"line 5", "second YAML document"}},
		{"unknown top key", "intervall: 30m\nregistries:\n" + reg, []string{"line 1", "intervall: unknown key", "known keys: interval"}},
		{"unknown registry key", "registries:\n" + reg + "- registryId: \"123456789012\"\n  regoin: us-west-2\n  passwordFile: /b\n",
			[]string{"line 6", "registries[1].regoin: unknown key"}},
		{"case typo", "registries:\n- registryID: \"123456789012\"\n", []string{"registries[0].registryID: unknown key (did you mean registryId?)"}},
		{"duplicate key", "interval: 1m\ninterval: 2m\nregistries:\n" + reg, []string{"line 2", "already defined"}},
		{"no registries", "interval: 30m\n", []string{"registries: required"}},
		{"empty registries", "registries: []\n", []string{"registries: required"}},
		{"registries not a list", "registries: foo\n", []string{"cannot unmarshal"}},
		{"missing registryId", "registries:\n- region: us-west-2\n  passwordFile: /a\n", []string{"registries[0].registryId: required"}},
		{"short registryId", "registries:\n- registryId: \"123456789\"\n  region: us-west-2\n  passwordFile: /a\n",
			[]string{`registries[0].registryId: "123456789" is not a 12-digit AWS account ID`}},
		{"missing region", "registries:\n" + reg + "- registryId: \"123456789012\"\n  passwordFile: /b\n", []string{"registries[1].region: required"}},
		{"bad region", "registries:\n- registryId: \"123456789012\"\n  region: oregon\n  passwordFile: /a\n", []string{`registries[0].region: "oregon" is not an AWS region`}},
		{"missing passwordFile", "registries:\n- registryId: \"123456789012\"\n  region: us-west-2\n", []string{"registries[0].passwordFile: required"}},
		{"relative passwordFile", "registries:\n- registryId: \"123456789012\"\n  region: us-west-2\n  passwordFile: a.pass\n", []string{"registries[0].passwordFile", "not an absolute path"}},
		{"directory passwordFile", "registries:\n- registryId: \"123456789012\"\n  region: us-west-2\n  passwordFile: /opt/passwords/\n", []string{"registries[0].passwordFile", "names a directory"}},
		{"bad interval", "interval: often\nregistries:\n" + reg, []string{`interval: "often" is not a duration`}},
		{"unitless interval", "interval: 30\nregistries:\n" + reg, []string{`interval: "30" is not a duration`}},
		{"interval too short", "interval: 1s\nregistries:\n" + reg, []string{"interval: 1s is out of range"}},
		{"interval too long", "interval: 12h\nregistries:\n" + reg, []string{"interval: 12h is out of range"}},
		{"bad fileMode", "fileMode: \"0777\"\nregistries:\n" + reg, []string{"fileMode:", "read and write bits"}},
		{"unreadable fileMode", "fileMode: \"0200\"\nregistries:\n" + reg, []string{"fileMode:", "lets nobody read"}},
		{"bad roleArn", "registries:\n" + reg + "  roleArn: ecr-reader\n", []string{"registries[0].roleArn", "not an IAM role ARN"}},
		{"externalId without role", "registries:\n" + reg + "  externalId: x\n", []string{"registries[0].externalId: only used with roleArn"}},
		{"relative dockerConfigFile", "dockerConfigFile: config.json\nregistries:\n" + reg, []string{"dockerConfigFile:", "not an absolute path"}},
		{"same file twice", "registries:\n" + reg + reg, []string{"registries[1].passwordFile: /opt/passwords/a.pass is also written by registries[0].passwordFile"}},
		{"all errors at once", "registries:\n- region: x\n- registryId: \"1\"\n",
			[]string{"registries[0].registryId: required", "registries[0].region", "registries[0].passwordFile: required", "registries[1].registryId", "registries[1].region: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error", cfg)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), path+" does not exist") || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("LoadFile(missing) error = %v, want it to name the file and the fix", err)
	}
}

func TestFromSpecs(t *testing.T) {
	cfg, err := FromSpecs([]string{
		"123456789012.dkr.ecr.us-west-2.amazonaws.com=/opt/passwords/a.pass",
		"210987654321.dkr.ecr-fips.us-east-1.amazonaws.com=/opt/passwords/b.pass",
	}, "10m", "arn:aws:iam::123456789012:role/r")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{Interval: 10 * time.Minute, FileMode: DefaultFileMode, Registries: []Registry{
		{RegistryID: "123456789012", Region: "us-west-2", Host: "123456789012.dkr.ecr.us-west-2.amazonaws.com",
			PasswordFile: "/opt/passwords/a.pass", RoleARN: "arn:aws:iam::123456789012:role/r"},
		{RegistryID: "210987654321", Region: "us-east-1", Host: "210987654321.dkr.ecr-fips.us-east-1.amazonaws.com", FIPS: true,
			PasswordFile: "/opt/passwords/b.pass", RoleARN: "arn:aws:iam::123456789012:role/r"},
	}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("FromSpecs = %+v, want %+v", cfg, want)
	}
}

func TestFromSpecsErrors(t *testing.T) {
	const good = "123456789012.dkr.ecr.us-west-2.amazonaws.com=/opt/passwords/a.pass"
	tests := []struct {
		name     string
		specs    []string
		interval string
		role     string
		want     string
	}{
		{"none", nil, "", "", "--registry: required"},
		{"no equals", []string{"123456789012.dkr.ecr.us-west-2.amazonaws.com"}, "", "", "--registry[0]: \"123456789012.dkr.ecr.us-west-2.amazonaws.com\" is not HOST=FILE"},
		{"bad host", []string{good, "quay.io=/a"}, "", "", "--registry[1]: \"quay.io\" is not an ECR registry host"},
		{"relative file", []string{"123456789012.dkr.ecr.us-west-2.amazonaws.com=a.pass"}, "", "", "--registry[0].passwordFile"},
		{"empty file", []string{"123456789012.dkr.ecr.us-west-2.amazonaws.com="}, "", "", "--registry[0].passwordFile: required"},
		{"bad interval", []string{good}, "soon", "", "--interval: \"soon\" is not a duration"},
		{"bad role", []string{good}, "", "role/x", "--role-arn: \"role/x\" is not an IAM role ARN"},
		{"same file", []string{good, good}, "", "", "is also written by"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromSpecs(tt.specs, tt.interval, tt.role)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("FromSpecs error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// FuzzParse checks that Parse never panics, and that what it accepts is
// valid: registries present, every file absolute, interval in range.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/original.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("registries:\n- {registryId: \"123456789012\", region: us-east-1, passwordFile: /p/x, roleArn: \"arn:aws:iam::123456789012:role/x\"}\nfileMode: \"0400\"\n"))
	f.Add([]byte("interval: 1h\nregistries: [{}]\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if len(cfg.Registries) == 0 {
			t.Fatal("accepted a config without registries")
		}
		if cfg.Interval < MinInterval || cfg.FileMode&0o444 == 0 || cfg.FileMode&^fs.FileMode(0o666) != 0 {
			t.Fatalf("accepted interval %s mode %o", cfg.Interval, cfg.FileMode)
		}
		for _, r := range cfg.Registries {
			if !registryIDPattern.MatchString(r.RegistryID) || !filepath.IsAbs(r.PasswordFile) || r.Host == "" {
				t.Fatalf("accepted registry %+v", r)
			}
		}
	})
}

func TestValidateRoleARN(t *testing.T) {
	for arn, valid := range map[string]bool{
		"arn:aws:iam::123456789012:role/ecr-reader":             true,
		"arn:aws-cn:iam::123456789012:role/path/to/Role_1+=,.@": true,
		"arn:aws-us-gov:iam::123456789012:role/r":               true,
		"arn:aws:iam::123456789012:role/":                       false,
		"arn:aws:iam::123456789012:user/bob":                    false,
		"arn:aws:iam::12345678901:role/r":                       false,
		"arn:aws:iam:us-east-1:123456789012:role/r":             false,
		"arn:aws:sts::123456789012:role/r":                      false,
		"arn:gcp:iam::123456789012:role/r":                      false,
		"arn:aws:iam::123456789012:role/r r":                    false,
		"arn:AWS:iam::123456789012:role/r":                      false,
		"":                                                      false,
	} {
		err := ValidateRoleARN(arn)
		if (err == nil) != valid {
			t.Errorf("ValidateRoleARN(%q) = %v, want valid %v", arn, err, valid)
		}
		if err != nil && !strings.Contains(err.Error(), "expected arn:aws:iam::123456789012:role/NAME") {
			t.Errorf("ValidateRoleARN(%q) error %q does not give the expected form", arn, err)
		}
	}
}

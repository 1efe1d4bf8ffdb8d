package refresher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultConfigPath is where the sidecar looks for its config file when
// neither --config nor --registry is given.
const DefaultConfigPath = "/opt/config/ecr-token-refresh/config.yaml"

// DefaultInterval is the refresh interval when the config names none.
const DefaultInterval = 30 * time.Minute

// DefaultFileMode is the mode of every file the sidecar writes unless the
// config sets fileMode. Read-only for everybody in the pod: Clouddriver runs
// as a different non-root user than the sidecar and the pod may set no
// fsGroup, so group or owner permissions alone would lock it out; nobody
// can rewrite the file in place (the sidecar replaces it by rename). Nobody
// outside the pod can reach it: an emptyDir lives under the kubelet's pod
// directory, which only root on the node can enter.
const DefaultFileMode fs.FileMode = 0o444

// MinInterval is the shortest refresh interval accepted; ECR tokens live 12
// hours and a tighter loop would only spend API quota.
const MinInterval = time.Minute

// Config is the sidecar's configuration: which registries to keep fresh,
// where to write their passwords, and how often.
type Config struct {
	// Interval is the longest time between two refreshes of a token.
	Interval time.Duration
	// FileMode is the permission of the written files.
	FileMode fs.FileMode
	// DockerConfigFile, if set, is a docker config.json with an auths entry
	// for every registry.
	DockerConfigFile string
	// Registries are the registries to keep fresh; never empty.
	Registries []Registry
}

// Registry is one registry whose password is kept in a file.
type Registry struct {
	// RegistryID is the 12-digit AWS account ID that owns the registry.
	RegistryID string
	// Region is the registry's AWS region.
	Region string
	// Host is the registry host used in the docker config.
	Host string
	// FIPS and DualStack select the ECR API endpoint variant.
	FIPS, DualStack bool
	// PasswordFile receives the password, exactly, without a newline.
	PasswordFile string
	// UsernameFile, if set, receives the user name (AWS).
	UsernameFile string
	// RoleARN, if set, is assumed (STS AssumeRole) for the ECR call.
	RoleARN string
	// ExternalID goes with RoleARN.
	ExternalID string
}

// String names the registry in logs, errors and metrics.
func (r Registry) String() string { return r.RegistryID + "/" + r.Region }

// fileConfig is the YAML form of Config. Its yaml tags are the keys the
// file may use; any other key is an error.
type fileConfig struct {
	Interval         string         `yaml:"interval"`
	FileMode         string         `yaml:"fileMode"`
	DockerConfigFile string         `yaml:"dockerConfigFile"`
	Registries       []fileRegistry `yaml:"registries"`
}

type fileRegistry struct {
	RegistryID   string `yaml:"registryId"`
	Region       string `yaml:"region"`
	PasswordFile string `yaml:"passwordFile"`
	UsernameFile string `yaml:"usernameFile"`
	RoleARN      string `yaml:"roleArn"`
	ExternalID   string `yaml:"externalId"`
}

var (
	topKeys      = yamlKeys(fileConfig{})
	registryKeys = yamlKeys(fileRegistry{})
)

// LoadFile reads and validates the config file at path.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist: mount one there or pass --config PATH or --registry HOST=FILE", path)
		}
		return nil, fmt.Errorf("config file: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes and validates a config file's content. Unknown keys are
// errors, so that a typo cannot silently drop a setting or a registry.
// Errors name the field (registries[1].region) and, where it helps, the
// YAML line.
func Parse(data []byte) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("registries: required: the file is empty")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("line %d: a second YAML document; the config is a single document", extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if err := checkKeys(root, "", topKeys); err != nil {
		return nil, err
	}
	if regs := mappingValue(root, "registries"); regs != nil && regs.Kind == yaml.SequenceNode {
		for i, r := range regs.Content {
			if err := checkKeys(r, fmt.Sprintf("registries[%d]", i), registryKeys); err != nil {
				return nil, err
			}
		}
	}
	var fc fileConfig
	if err := root.Decode(&fc); err != nil {
		return nil, err
	}
	return fc.config()
}

// config validates fc and turns it into a Config.
func (fc fileConfig) config() (*Config, error) {
	cfg := &Config{Interval: DefaultInterval, FileMode: DefaultFileMode, DockerConfigFile: fc.DockerConfigFile}
	var errs []error
	if fc.Interval != "" {
		d, err := ParseInterval(fc.Interval)
		if err != nil {
			errs = append(errs, fmt.Errorf("interval: %w", err))
		}
		cfg.Interval = d
	}
	if fc.FileMode != "" {
		m, err := parseFileMode(fc.FileMode)
		if err != nil {
			errs = append(errs, fmt.Errorf("fileMode: %w", err))
		}
		cfg.FileMode = m
	}
	if fc.DockerConfigFile != "" {
		if err := checkPath(fc.DockerConfigFile); err != nil {
			errs = append(errs, fmt.Errorf("dockerConfigFile: %w", err))
		}
	}
	if len(fc.Registries) == 0 {
		errs = append(errs, errors.New("registries: required: list at least one registry (registryId, region, passwordFile)"))
	}
	for i, fr := range fc.Registries {
		r := Registry{
			RegistryID:   fr.RegistryID,
			Region:       fr.Region,
			PasswordFile: fr.PasswordFile,
			UsernameFile: fr.UsernameFile,
			RoleARN:      fr.RoleARN,
			ExternalID:   fr.ExternalID,
		}
		if err := validateRegistryID(r.RegistryID); err != nil {
			errs = append(errs, fmt.Errorf("registries[%d].registryId: %w", i, err))
		}
		if err := validateRegion(r.Region); err != nil {
			errs = append(errs, fmt.Errorf("registries[%d].region: %w", i, err))
		}
		if r.RoleARN != "" {
			if err := ValidateRoleARN(r.RoleARN); err != nil {
				errs = append(errs, fmt.Errorf("registries[%d].roleArn: %w", i, err))
			}
		}
		if r.ExternalID != "" && r.RoleARN == "" {
			errs = append(errs, fmt.Errorf("registries[%d].externalId: only used with roleArn: set roleArn or remove externalId", i))
		}
		if r.RegistryID != "" && r.Region != "" {
			r.Host = DefaultHost(r.RegistryID, r.Region)
		}
		errs = append(errs, validateRegistry(fmt.Sprintf("registries[%d]", i), r)...)
		cfg.Registries = append(cfg.Registries, r)
	}
	errs = append(errs, checkDistinctFiles(cfg)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validateRegistry checks the files of a registry from the config file or
// from flags. name prefixes every error.
func validateRegistry(name string, r Registry) []error {
	var errs []error
	if r.PasswordFile == "" {
		errs = append(errs, fmt.Errorf("%s.passwordFile: required: the file Clouddriver reads, e.g. /opt/passwords/my-registry.pass", name))
	} else if err := checkPath(r.PasswordFile); err != nil {
		errs = append(errs, fmt.Errorf("%s.passwordFile: %w", name, err))
	}
	if r.UsernameFile != "" {
		if err := checkPath(r.UsernameFile); err != nil {
			errs = append(errs, fmt.Errorf("%s.usernameFile: %w", name, err))
		}
	}
	return errs
}

// ValidateRoleARN accepts an IAM role ARN in any partition,
// arn:PARTITION:iam::ACCOUNT:role/PATH/NAME. The webhook checks role-arn
// annotations with it, so that it accepts exactly what the sidecar does.
func ValidateRoleARN(arn string) error {
	if !roleARNPattern.MatchString(arn) {
		return fmt.Errorf("%q is not an IAM role ARN (expected arn:aws:iam::123456789012:role/NAME)", arn)
	}
	return nil
}

// checkDistinctFiles rejects two registries (or the docker config) that
// would write the same file.
func checkDistinctFiles(cfg *Config) []error {
	var errs []error
	seen := map[string]string{}
	claim := func(path, field string) {
		if path == "" {
			return
		}
		p := filepath.Clean(path)
		if prev, ok := seen[p]; ok {
			errs = append(errs, fmt.Errorf("%s: %s is also written by %s: give each file its own path", field, path, prev))
			return
		}
		seen[p] = field
	}
	claim(cfg.DockerConfigFile, "dockerConfigFile")
	for i, r := range cfg.Registries {
		claim(r.PasswordFile, fmt.Sprintf("registries[%d].passwordFile", i))
		claim(r.UsernameFile, fmt.Sprintf("registries[%d].usernameFile", i))
	}
	return errs
}

var (
	registryIDPattern = regexp.MustCompile(`^[0-9]{12}$`)
	regionPattern     = regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+)+-[0-9]+$`)
	roleARNPattern    = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
)

func validateRegistryID(id string) error {
	switch {
	case id == "":
		return errors.New("required: the 12-digit AWS account ID that owns the registry, quoted, e.g. \"123456789012\"")
	case !registryIDPattern.MatchString(id):
		return fmt.Errorf("%q is not a 12-digit AWS account ID (quote it so that leading zeros survive, e.g. \"012345678901\")", id)
	}
	return nil
}

func validateRegion(region string) error {
	switch {
	case region == "":
		return errors.New("required: the registry's AWS region, e.g. us-west-2")
	case !regionPattern.MatchString(region):
		return fmt.Errorf("%q is not an AWS region (expected e.g. us-west-2)", region)
	}
	return nil
}

// checkPath accepts absolute paths of regular files, not directories.
func checkPath(p string) error {
	switch {
	case !filepath.IsAbs(p):
		return fmt.Errorf("%q is not an absolute path (expected e.g. /opt/passwords/my-registry.pass)", p)
	case strings.HasSuffix(p, "/") || filepath.Base(p) == "." || filepath.Base(p) == "..":
		return fmt.Errorf("%q names a directory, not a file", p)
	}
	return nil
}

// ParseInterval parses a refresh interval such as 30m or 1h. Intervals
// shorter than MinInterval or longer than 6h (half an ECR token's
// lifetime) are rejected.
func ParseInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (expected e.g. 30m or 1h)", s)
	}
	if d < MinInterval || d > 6*time.Hour {
		return 0, fmt.Errorf("%s is out of range: use %s to 6h (tokens live 12h)", s, MinInterval)
	}
	return d, nil
}

// parseFileMode parses an octal file mode such as "0444". Only read and
// write bits are accepted.
func parseFileMode(s string) (fs.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m&^0o666 != 0 {
		return 0, fmt.Errorf("%q is not an octal file mode of read and write bits (expected e.g. \"0444\" or \"0440\", quoted)", s)
	}
	if m&0o444 == 0 {
		return 0, fmt.Errorf("%q lets nobody read the file (expected e.g. \"0444\")", s)
	}
	return fs.FileMode(m), nil
}

// checkKeys reports the first key of mapping node n that is not in known.
// A node that is not a mapping is left to the typed decoder's error.
func checkKeys(n *yaml.Node, path string, known []string) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			field := k.Value
			if path != "" {
				field = path + "." + k.Value
			}
			hint := ""
			for _, c := range known {
				if strings.EqualFold(c, k.Value) {
					hint = fmt.Sprintf(" (did you mean %s?)", c)
				}
			}
			return fmt.Errorf("line %d: %s: unknown key%s; known keys: %s", k.Line, field, hint, strings.Join(known, ", "))
		}
	}
	return nil
}

// mappingValue returns the value of key in mapping node n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// yamlKeys lists the yaml tag names of struct v's fields.
func yamlKeys(v any) []string {
	t := reflect.TypeOf(v)
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		keys = append(keys, strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0])
	}
	return keys
}

package refresher

import (
	"errors"
	"fmt"
	"strings"
)

// FromSpecs builds a Config from --registry HOST=FILE specs, for the
// sidecar run without a config file (the webhook configures it this way).
// interval may be empty (DefaultInterval); roleARN, if set, is assumed for
// every registry.
func FromSpecs(specs []string, interval, roleARN string) (*Config, error) {
	cfg := &Config{Interval: DefaultInterval, FileMode: DefaultFileMode}
	var errs []error
	if interval != "" {
		d, err := ParseInterval(interval)
		if err != nil {
			errs = append(errs, fmt.Errorf("--interval: %w", err))
		}
		cfg.Interval = d
	}
	if roleARN != "" {
		if err := ValidateRoleARN(roleARN); err != nil {
			errs = append(errs, fmt.Errorf("--role-arn: %w", err))
		}
	}
	for i, spec := range specs {
		name := fmt.Sprintf("--registry[%d]", i)
		hostPart, file, ok := strings.Cut(spec, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %q is not HOST=FILE (expected e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com=/opt/passwords/my-registry.pass)", name, spec))
			continue
		}
		host, err := ParseHost(hostPart)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		r := Registry{
			RegistryID:   host.RegistryID,
			Region:       host.Region,
			Host:         host.Name,
			FIPS:         host.FIPS,
			DualStack:    host.DualStack,
			PasswordFile: file,
			RoleARN:      roleARN,
		}
		errs = append(errs, validateRegistry(name, r)...)
		cfg.Registries = append(cfg.Registries, r)
	}
	if len(specs) == 0 {
		errs = append(errs, errors.New("--registry: required: at least one HOST=FILE"))
	}
	errs = append(errs, checkDistinctFiles(cfg)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

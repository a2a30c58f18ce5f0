package main

import (
	"fmt"
	"sort"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// quotaConfig is one set of quotas in the config file: [quotas] for every
// app, [quotas.apps.<app>] for one. A key left out takes the default
// (for an app: the [quotas] value).
type quotaConfig struct {
	Keys           *int64 `toml:"keys"`
	VersionsPerKey *int64 `toml:"versions_per_key"`
	StoreValues    *int64 `toml:"store_values"`
	StoreBytes     *int64 `toml:"store_bytes"`
}

// quotasConfig is the [quotas] table.
type quotasConfig struct {
	quotaConfig
	Apps map[string]quotaConfig `toml:"apps"`
}

// parse checks every value (1 to the core's maximum; 0 is refused, as it
// would silently mean "the default") and returns the core's Quotas.
func (qc quotasConfig) parse() (core.Quotas, error) {
	var out core.Quotas
	var err error
	if out.Default, err = qc.quotaConfig.parse("quotas"); err != nil {
		return core.Quotas{}, err
	}
	apps := make([]string, 0, len(qc.Apps))
	for app := range qc.Apps {
		apps = append(apps, app)
	}
	sort.Strings(apps) // the first bad one, always the same
	for _, app := range apps {
		if err := provider.CheckSegment("app ID", app); err != nil {
			return core.Quotas{}, fmt.Errorf("quotas.apps: %q is not an app ID ([a-z0-9][a-z0-9._-]*, at most 64 bytes)", app)
		}
		q, err := qc.Apps[app].parse("quotas.apps." + app)
		if err != nil {
			return core.Quotas{}, err
		}
		if out.Apps == nil {
			out.Apps = map[string]core.Quota{}
		}
		out.Apps[app] = q
	}
	if err := out.Check(); err != nil {
		return core.Quotas{}, fmt.Errorf("quotas: %w", err)
	}
	return out, nil
}

func (c quotaConfig) parse(table string) (core.Quota, error) {
	var q core.Quota
	fields := []struct {
		key   string
		v     *int64
		max   int64
		setTo func(int64)
	}{
		{"keys", c.Keys, core.MaxQuotaKeys, func(n int64) { q.Keys = int(n) }},
		{"versions_per_key", c.VersionsPerKey, core.MaxQuotaVersionsPerKey, func(n int64) { q.VersionsPerKey = int(n) }},
		{"store_values", c.StoreValues, core.MaxQuotaStoreValues, func(n int64) { q.StoreValues = int(n) }},
		{"store_bytes", c.StoreBytes, core.MaxQuotaStoreBytes, func(n int64) { q.StoreBytes = n }},
	}
	for _, f := range fields {
		if f.v == nil {
			continue
		}
		if *f.v < 1 || *f.v > f.max {
			return core.Quota{}, fmt.Errorf("%s.%s: %d is out of range (1 to %d)", table, f.key, *f.v, f.max)
		}
		f.setTo(*f.v)
	}
	return q, nil
}

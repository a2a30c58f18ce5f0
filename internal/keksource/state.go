package keksource

import (
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// The variables keystored sets in a plugin's environment about its state
// directory (docs/providers.md), so that a plugin that wraps keys under a
// KEK creates one only for a state without keys.
const (
	StateEnvPrefix = "KEYSTORED_STATE_"
	// EnvHoldsKeys is "0" for a state without keys, else "1" (always "1"
	// at a restart: keys may have been made since the launch).
	EnvHoldsKeys = StateEnvPrefix + "HOLDS_KEYS"
	// EnvStateKEK is the KEK fingerprint the state's MANIFEST records at
	// launch, or empty (always empty at a restart).
	EnvStateKEK = StateEnvPrefix + "KEK"
)

// State is what the daemon knows, and tells a plugin, of its state
// directory.
type State struct {
	HoldsKeys bool   // a key directory exists
	KEK       string // the fingerprint the MANIFEST records, or ""
}

// MayCreate reports whether a missing KEK may be created: only for a
// state that holds no keys and records no KEK. A KEK made for a state
// with keys would leave every key failing with "wrong KEK".
func (s State) MayCreate() bool { return !s.HoldsKeys && s.KEK == "" }

// Env returns s as the plugin's environment variables.
func (s State) Env() []string {
	holds := "0"
	if s.HoldsKeys {
		holds = "1"
	}
	return []string{EnvHoldsKeys + "=" + holds, EnvStateKEK + "=" + s.KEK}
}

// RestartEnv is the environment of a restarted plugin: the state holds
// keys, and no fingerprint (the launch's may be stale after a rotation).
func RestartEnv() []string { return []string{EnvHoldsKeys + "=1", EnvStateKEK + "="} }

// StateFromEnv reads the daemon's variables. EnvHoldsKeys unset means the
// state may hold keys: a KEK is then never created.
func StateFromEnv(getenv func(string) string) (State, error) {
	s := State{HoldsKeys: true, KEK: getenv(EnvStateKEK)}
	switch v := getenv(EnvHoldsKeys); v {
	case "0":
		s.HoldsKeys = false
	case "1", "":
	default:
		return State{}, fmt.Errorf("%s=%q: want 0 or 1", EnvHoldsKeys, v)
	}
	if s.KEK != "" {
		if err := provider.CheckKEKFingerprint(s.KEK); err != nil {
			return State{}, fmt.Errorf("%s: %w", EnvStateKEK, err)
		}
	}
	return s, nil
}

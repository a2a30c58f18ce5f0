package core

import (
	"context"
	"errors"

	"github.com/nexus-os/keystored/core/provider"
)

// StateInfo describes a state directory as its MANIFEST and layout
// record it, without a provider (see Inspect).
type StateInfo struct {
	// HoldsKeys is true when the layout root holds anything besides the
	// MANIFEST (a key directory): the state may hold keys, so a KEK for
	// it must never be made anew.
	HoldsKeys bool
	// HoldsAppKeys is true when the layout root holds an app's directory
	// other than the daemon's own (ReservedApp): keys callers made, whose
	// history an audit log must hold.
	HoldsAppKeys bool
	// Provider and Secure are the MANIFEST's; empty and false when there
	// is no MANIFEST yet.
	Provider string
	Secure   bool
	// KEK is the fingerprint of the KEK recorded in the MANIFEST (see
	// provider.Info.KEKs); empty when none is recorded.
	KEK string
}

// Inspect reads what st records about its state, before a provider is
// made for it: whether it holds keys and what its MANIFEST says. It never
// writes. A damaged MANIFEST is EIO, as in Open.
func Inspect(ctx context.Context, st Storage) (StateInfo, error) {
	if st == nil {
		return StateInfo{}, provider.Errorf(provider.EINVAL, "core.Inspect needs a Storage")
	}
	if err := provider.CheckContext(ctx); err != nil {
		return StateInfo{}, err
	}
	m, _, err := readManifest(st)
	if err != nil {
		return StateInfo{}, err
	}
	si := StateInfo{Provider: m.Provider, Secure: m.Secure, KEK: m.KEK}
	entries, err := st.ReadDir(layoutRoot)
	if err != nil && !errors.Is(err, provider.ErrNotFound) {
		return StateInfo{}, err
	}
	for _, e := range entries {
		if e.Name() != "MANIFEST" {
			si.HoldsKeys = true
			si.HoldsAppKeys = si.HoldsAppKeys || e.Name() != ReservedApp
		}
	}
	return si, nil
}

// CheckProvider reports whether a provider that announces info may open
// the state, with the checks and errors of Open: the MANIFEST's provider
// name and Secure flag (EPERM when they differ) and, when info and the
// MANIFEST both name KEKs, the recorded KEK among info.KEKs (EIO). A state
// without a MANIFEST admits any provider. The daemon calls it before it
// makes the provider (Info without KEKs), so that a state of another
// provider is refused as such, not as one whose KEK is missing.
func (s StateInfo) CheckProvider(info provider.Info) error {
	if s.Provider == "" {
		return nil
	}
	return checkProvider(manifestBody{Provider: s.Provider, Secure: s.Secure, KEK: s.KEK}, info)
}

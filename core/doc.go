// Package core is keystored's key store: identity and policy checks, the
// key lifecycle state machine, versions and metadata, bounds, storage and
// audit. It performs no cryptography on private material itself: key
// generation, signing and sealing are delegated to a provider.Provider.
//
// A Keystore is opened over a Storage (core/storage), a Provider, a Clock
// and an AuditSink. Every method takes the caller's identity; an app may
// use only keys under its own app ID, an operator may manage every app's
// keys. Every call, denied and failed ones too, yields exactly one audit
// event.
//
// The lifecycle is one table (lifecycle.go, docs/lifecycle.md); the
// on-disk layout and the sealed envelope are documented byte by byte in
// docs/storage.md.
package core

import "github.com/nexus-os/keystored/core/provider"

// Names of the provider contract, re-exported for callers of core.
type (
	KeyID     = provider.KeyID
	KeyRef    = provider.KeyRef
	Version   = provider.Version
	Algorithm = provider.Algorithm
	Use       = provider.Use
	Code      = provider.Code
)

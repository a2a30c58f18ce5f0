// Package provider is the contract between the keystore core and the
// providers that hold private key material.
//
// It is a small leaf package: value types (KeyID, KeyRef, Algorithm, Use,
// Handle), the Provider interface, the bounds every layer enforces, and the
// error vocabulary (Code and its sentinels). It imports only the standard
// library, so a provider author depends on nothing else of keystored.
//
// The invariants every Provider keeps:
//
//   - No method returns private key bytes. Generate returns a public key and
//     an opaque Handle; for software providers the handle is the private key
//     wrapped under a key-encryption key with the KeyRef as associated data,
//     for hardware providers it names an object inside the device.
//   - A handle is bound to its KeyRef (key ID, version, algorithm, use,
//     provider name): presented under any other KeyRef it fails.
//   - Errors wrap the sentinels of this package (ErrNotSupported for an
//     algorithm the provider lacks, ErrBadMessage for a failed Open, ...).
//   - Every method is safe for concurrent use and honours its context.
package provider

// Package softkey is the engine shared by keystored's in-process providers
// (providers/software and providers/testseed): key generation, wrapping of
// private material under a key-encryption key (KEK), a bounded cache of
// unwrapped keys, tombstones for destroyed handles, the Sign, SignDigest,
// MAC, Seal, Open and (HPKE) Decrypt operations with their bounds, and key
// import through one-time wrapping keys held in memory (package
// importkey).
//
// The two providers differ only in where randomness comes from (a Source):
// crypto/rand for the secure provider, seed-derived values for the insecure
// deterministic one.
//
// Handle format (all versions of it are documented in
// docs/software-provider.md):
//
//	"KSW1" | KEK ID (8) | nonce (24) | XChaCha20-Poly1305(KEK, nonce, material, aad)
//	material: SecretSize bytes, or for RSA a PKCS #1 DER of up to SecretSize
//	(an HPKE key's is the KEM's serialized private key, 32 bytes)
//	aad = "keystored/softkey/handle/v1" ‖ KeyRef.AppendBinary
//
// The engine never logs, never returns private material and prints as its
// provider name only.
package softkey

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/internal/importkey"
)

// Source is where an engine's randomness comes from. Each method fills out
// completely or returns an error; out is never retained.
type Source interface {
	// Material fills out with the private material of a new key for ref.
	Material(ref provider.KeyRef, out []byte) error
	// WrapNonce fills out with the nonce that wraps ref's material.
	WrapNonce(ref provider.KeyRef, out []byte) error
	// SealNonce fills out with the nonce for sealing plaintext with aad
	// under ref's key.
	SealNonce(ref provider.KeyRef, plaintext, aad, out []byte) error
	// ImportRandom fills out with randomness of an import: the material
	// or the handle name of a one-time wrapping key made for ref (the
	// wrap KeyRef of NewImportKey), or the nonce that wraps material
	// imported into ref. Every call's output must be independent of every
	// other's, even for one ref: a deterministic source counts its calls.
	ImportRandom(ref provider.KeyRef, out []byte) error
}

// Config configures an Engine.
type Config struct {
	// Info is what the engine announces. Algorithms must all be in
	// Registry; Name is the provider name every KeyRef must carry.
	Info provider.Info
	// Registry gives the algorithms' sizes and implementations.
	Registry *alg.Registry
	// KEK is the 32-byte key-encryption key. The engine keeps it only
	// inside its XChaCha20-Poly1305 instance; the caller still owns KEK
	// and may wipe it after New returns.
	KEK secret.Bytes
	// NextKEK, when set, is the pending KEK of a KEK rotation (see
	// AddKEK): new handles are wrapped under it, and handles under
	// either KEK unwrap. Owned by the caller like KEK.
	NextKEK secret.Bytes
	// Source supplies key material and nonces.
	Source Source
	// Hedged selects randomized ML-DSA signing.
	Hedged bool
	// AnnounceKEK makes Info report the KEK's fingerprint (KEKFingerprint)
	// in Info.KEKs, so that the core records it in the MANIFEST and
	// refuses a state made under another KEK. Info.KEKs given in Info is
	// ignored. The secure provider sets it; the testseed provider, whose
	// KEK follows from its seed, does not.
	AnnounceKEK bool
	// CacheSize bounds the cache of unwrapped keys; 0 means
	// DefaultCacheSize.
	CacheSize int
}

const (
	// KEKSize is the size of a KEK in bytes.
	KEKSize = chacha20poly1305.KeySize
	// DefaultCacheSize is the default number of unwrapped keys kept:
	// 2^17, so that the keys of a state of 10^5 keys all stay unwrapped
	// (an unwrapped Ed25519 key costs a few hundred bytes; see
	// docs/performance.md, "Scale").
	DefaultCacheSize = 1 << 17
	// MaxCacheSize is the largest CacheSize accepted.
	MaxCacheSize = 1 << 20
	// MaxTombstones bounds the set of destroyed handles remembered.
	MaxTombstones = 1 << 16
)

// Engine implements provider.Provider over a KEK and a Source. It is safe
// for concurrent use.
type Engine struct {
	info     provider.Info
	announce bool // Info reports the KEKs' fingerprints
	reg      *alg.Registry
	src      Source
	hedged   bool
	ring     *ring // the KEKs (kek.go)
	cache    *cache
	imports  *importkey.Table // one-time import wrapping keys (import.go)
}

// New checks cfg and returns an engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Info.Check(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil || cfg.Source == nil {
		return nil, provider.Errorf(provider.EINVAL, "softkey: registry and source are required")
	}
	if len(cfg.Info.Algorithms) == 0 {
		return nil, provider.Errorf(provider.EINVAL, "softkey: provider %s announces no algorithm", cfg.Info.Name)
	}
	for _, a := range cfg.Info.Algorithms {
		if _, err := cfg.Registry.Lookup(a); err != nil {
			return nil, err
		}
	}
	if cfg.KEK.Len() != KEKSize {
		return nil, provider.Errorf(provider.EINVAL, "KEK must be %d bytes", KEKSize)
	}
	size := cfg.CacheSize
	switch {
	case size == 0:
		size = DefaultCacheSize
	case size < 0 || size > MaxCacheSize:
		return nil, provider.Errorf(provider.EINVAL, "cache size must be from 1 to %d (0 for the default)", MaxCacheSize)
	}
	cur, err := newSlot(cfg.KEK)
	if err != nil {
		return nil, err
	}
	keys := &kekSet{slots: []*kekSlot{cur}}
	if !cfg.NextKEK.IsZero() {
		next, err := newSlot(cfg.NextKEK)
		if err != nil {
			return nil, err
		}
		if next.id == cur.id {
			return nil, provider.Errorf(provider.EINVAL, "the next KEK is the current KEK")
		}
		keys.slots = []*kekSlot{next, cur}
	}
	info := cfg.Info
	info.Algorithms = append([]provider.Algorithm(nil), cfg.Info.Algorithms...)
	info.KEKs = nil
	e := &Engine{
		info:     info,
		announce: cfg.AnnounceKEK,
		reg:      cfg.Registry,
		src:      cfg.Source,
		hedged:   cfg.Hedged,
		ring:     &ring{},
		cache:    newCache(size),
		imports:  importkey.New(cfg.Registry, cfg.Source.ImportRandom),
	}
	e.ring.set(keys)
	return e, nil
}

// KEKIDSize is the size of a KEK ID.
const KEKIDSize = 8

// kekIDLabel is the HKDF info string of the KEK ID.
const kekIDLabel = "keystored/softkey/kek-id/v1"

// KEKID returns the KEK's identifier: the first 8 bytes of
// HKDF-SHA256(secret=KEK, salt=empty, info="keystored/softkey/kek-id/v1").
// It is not secret; it lets a handle wrapped under another KEK fail with a
// clear error.
func KEKID(kek secret.Bytes) ([KEKIDSize]byte, error) {
	var id [KEKIDSize]byte
	if kek.Len() != KEKSize {
		return id, provider.Errorf(provider.EINVAL, "KEK must be %d bytes", KEKSize)
	}
	b, err := hkdf.Key(sha256.New, kek.Reveal(), nil, kekIDLabel, KEKIDSize)
	if err != nil {
		return id, provider.Errorf(provider.EIO, "KEK ID derivation failed: %w", err)
	}
	copy(id[:], b)
	return id, nil
}

// KEKFingerprint returns the KEK ID as the provider.Info.KEKs entry that
// names the KEK: 16 lowercase hex characters.
func KEKFingerprint(id [KEKIDSize]byte) string { return hex.EncodeToString(id[:]) }

// Info returns the provider description given to New, with the KEK's
// fingerprint in KEKs when the engine announces it.
func (e *Engine) Info(ctx context.Context) (provider.Info, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Info{}, err
	}
	info := e.info
	info.Algorithms = append([]provider.Algorithm(nil), e.info.Algorithms...)
	if e.announce {
		info.KEKs = e.ring.load().fingerprints()
	}
	return info, nil
}

// String returns "softkey(<provider name>)".
//
// String, GoString and Format have value receivers so that an Engine
// printed by value is redacted too: fmt prints unexported fields without
// calling their methods, and under a verb such as %s it dereferences
// nested pointers, so every struct on the way to key material must format
// itself.
func (e Engine) String() string { return "softkey(" + e.info.Name + ")" }

// GoString returns the same as String.
func (e Engine) GoString() string { return e.String() }

// Format prints the same as String under every verb, so no field (the
// keyed KEK ciphers, cached keys) is ever printed.
func (e Engine) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(e.String())) }

// kekCipher is the AEAD keyed with the KEK. It prints as "kek" only.
type kekCipher struct {
	cipher.AEAD
}

// String returns "kek".
func (kekCipher) String() string { return "kek" }

// GoString returns "kek".
func (kekCipher) GoString() string { return "kek" }

// Format prints "kek" under every verb.
func (kekCipher) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("kek")) }

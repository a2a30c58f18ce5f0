// Package testseed is INSECURE: a deterministic provider for reproducible
// tests, whose every key, KEK and nonce derives from a seed the caller
// supplies. Anyone who knows the seed knows every private key. It proves
// nothing about security; never use it for real keys.
//
// Guardrails: Info reports Secure=false and Deterministic=true (a keystore
// refuses to mix it with a secure provider); NewInsecure refuses to run
// outside a test binary unless given AllowOutsideTests(); the package and
// constructor names say INSECURE.
//
// With the same seed the provider returns byte-identical public keys,
// handles, signatures and sealed outputs, whatever the order in which keys
// are created, because each value derives from the seed and the full
// KeyRef (salt = "keystored/testseed/v1", HKDF-SHA256):
//
//	random           = HKDF(seed, salt, "key" ‖ ref, RandomSize)
//	private material = random, but for ECDSA (the first valid scalar of
//	                   random, H(random), H(H(random)), ...), RSA (an
//	                   INSECURE deterministic prime search keyed by random)
//	                   and HPKE (the KEM's DeriveKeyPair(random), RFC 9180,
//	                   serialized)
//	KEK              = HKDF(seed, salt, "kek", 32)
//	wrap nonce       = HKDF(seed, salt, "wrap-nonce" ‖ ref, 24)
//	seal nonce       = HMAC-SHA256(HKDF(seed, salt, "seal-nonce" ‖ ref, 32),
//	                     u32be(len(aad)) ‖ aad ‖ plaintext)[:NonceSize]
//	import random    = HKDF(seed, salt, "import" ‖ u64be(n) ‖ ref, len):
//	                   the n-th draw of the provider (from 1), for the
//	                   material (32) and handle name (16) of a one-time
//	                   import wrapping key, ref its wrap KeyRef, and the
//	                   wrap nonce (24) of a key imported into ref
//
// where ref is KeyRef.AppendBinary. Every signature is deterministic:
// ML-DSA's deterministic variant, ECDSA by RFC 6979, the RSA-PSS salt
// SHA-256(material ‖ digest), EdDSA and PKCS #1 v1.5 by design. Handles
// have the software provider's format (package softkey). The golden
// vectors in testdata/golden.json pin all of this; docs/testing.md gives
// the byte-exact description.
package testseed

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/internal/softkey"
)

// Name is the provider name, part of every KeyRef this provider serves.
const Name = "testseed"

// Version is the provider's version, as Info reports it.
const Version = "1"

// Seed bounds.
const (
	MinSeed = 8
	MaxSeed = 64
)

// Salt is the HKDF salt of every derivation.
const Salt = "keystored/testseed/v1"

// Option configures NewInsecure.
type Option func(*options)

type options struct {
	allowOutsideTests bool
	cacheSize         int
}

// AllowOutsideTests lets NewInsecure run outside a test binary (for
// example in a daemon started with --insecure-test-seed). The provider is
// exactly as INSECURE as inside a test.
func AllowOutsideTests() Option { return func(o *options) { o.allowOutsideTests = true } }

// WithCacheSize bounds the cache of unwrapped keys (0: the default 1024).
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// testseedProvider is the INSECURE provider: the shared engine with a
// seeded source. It prints as "softkey(testseed)" under every verb.
type testseedProvider struct {
	*softkey.Engine
}

// NewInsecure returns the INSECURE deterministic provider for seed (8 to
// 64 bytes; EINVAL otherwise). Outside a test binary it refuses (EPERM)
// unless AllowOutsideTests is given.
func NewInsecure(seed []byte, opts ...Option) (provider.Provider, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := guard(testing.Testing(), o); err != nil {
		return nil, err
	}
	if err := checkSeed(seed); err != nil {
		return nil, err
	}
	src := &seedSource{seed: secret.New(seed), imports: new(atomic.Uint64)}
	kek, err := src.kek()
	if err != nil {
		return nil, err
	}
	defer kek.Wipe()
	reg := alg.Default()
	e, err := softkey.New(softkey.Config{
		Info: provider.Info{
			Name:          Name,
			Version:       Version,
			Secure:        false,
			Deterministic: true,
			Algorithms:    reg.Names(),
		},
		Registry:  reg,
		KEK:       kek,
		Source:    src,
		Hedged:    false,
		CacheSize: o.cacheSize,
	})
	if err != nil {
		return nil, err
	}
	return &testseedProvider{Engine: e}, nil
}

// guard refuses to make the provider outside a test binary unless
// AllowOutsideTests was given.
func guard(inTest bool, o options) error {
	if inTest || o.allowOutsideTests {
		return nil
	}
	return provider.Errorf(provider.EPERM, "testseed: refusing to run outside a test binary: this provider is INSECURE (every key derives from the seed); pass testseed.AllowOutsideTests() to use it anyway")
}

func checkSeed(seed []byte) error {
	if len(seed) < MinSeed || len(seed) > MaxSeed {
		return provider.Errorf(provider.EINVAL, "testseed: seed must be %d to %d bytes, got %d", MinSeed, MaxSeed, len(seed))
	}
	return nil
}

// seedSource derives every key and nonce from the seed.
type seedSource struct {
	seed secret.Bytes
	// imports counts the ImportRandom calls (a pointer, so that the
	// value receivers below copy no atomic).
	imports *atomic.Uint64
}

// String returns "testseed-source". String, GoString and Format have value
// receivers so that a seedSource printed by value shows no seed.
func (seedSource) String() string { return "testseed-source" }

// GoString returns "testseed-source".
func (seedSource) GoString() string { return "testseed-source" }

// Format prints "testseed-source" under every verb.
func (seedSource) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("testseed-source")) }

// derive returns HKDF-SHA256(seed, Salt, label ‖ ref, n); ref is omitted
// when nil.
func (s *seedSource) derive(label string, ref *provider.KeyRef, n int) ([]byte, error) {
	info := []byte(label)
	if ref != nil {
		var err error
		if info, err = ref.AppendBinary(info); err != nil {
			return nil, err
		}
	}
	out, err := hkdf.Key(sha256.New, s.seed.Reveal(), []byte(Salt), string(info), n)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "testseed: derivation failed: %w", err)
	}
	return out, nil
}

// kek returns HKDF(seed, Salt, "kek", 32).
func (s *seedSource) kek() (secret.Bytes, error) {
	b, err := s.derive("kek", nil, softkey.KEKSize)
	if err != nil {
		return secret.Bytes{}, err
	}
	return secret.Own(b), nil
}

// Material fills out with HKDF(seed, Salt, "key" ‖ ref).
func (s *seedSource) Material(ref provider.KeyRef, out []byte) error {
	return s.fill("key", ref, out)
}

// WrapNonce fills out with HKDF(seed, Salt, "wrap-nonce" ‖ ref).
func (s *seedSource) WrapNonce(ref provider.KeyRef, out []byte) error {
	return s.fill("wrap-nonce", ref, out)
}

func (s *seedSource) fill(label string, ref provider.KeyRef, out []byte) error {
	b, err := s.derive(label, &ref, len(out))
	if err != nil {
		return err
	}
	copy(out, b)
	clear(b)
	return nil
}

// ImportRandom fills out with HKDF(seed, Salt, "import" ‖ u64be(n) ‖ ref),
// n counting the provider's calls from 1: the material and the handle
// name of each import wrapping key (one call each) and the wrap nonce of
// each imported key. The counter makes every output independent of every
// other (HKDF outputs of one info and different lengths share a prefix),
// and the sequence reproducible for the same calls in the same order.
func (s *seedSource) ImportRandom(ref provider.KeyRef, out []byte) error {
	n := s.imports.Add(1)
	return s.fill("import"+string(binary.BigEndian.AppendUint64(nil, n)), ref, out)
}

// SealNonce fills out with the first len(out) bytes of
// HMAC-SHA256(HKDF(seed, Salt, "seal-nonce" ‖ ref, 32),
// u32be(len(aad)) ‖ aad ‖ plaintext).
func (s *seedSource) SealNonce(ref provider.KeyRef, plaintext, aad, out []byte) error {
	if len(out) > sha256.Size {
		return provider.Errorf(provider.EINVAL, "testseed: nonce longer than %d bytes", sha256.Size)
	}
	k, err := s.derive("seal-nonce", &ref, 32)
	if err != nil {
		return err
	}
	defer clear(k)
	m := hmac.New(sha256.New, k)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(aad)))
	// hash.Hash.Write never fails.
	_, _ = m.Write(n[:])
	_, _ = m.Write(aad)
	_, _ = m.Write(plaintext)
	copy(out, m.Sum(nil))
	return nil
}

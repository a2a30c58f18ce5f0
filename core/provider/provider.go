package provider

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"strconv"
)

// Provider generates keys and performs every operation that needs private
// key material. The keystore core owns identity, policy, lifecycle, storage
// and audit; a Provider owns only cryptography.
//
// Every method takes the KeyRef the core holds for the key version, and
// (except Info and Generate) the Handle Generate returned for it. A provider
// must refuse a handle that was not made for that exact KeyRef.
//
// Errors wrap this package's sentinels: ErrInvalid for a malformed
// argument, ErrTooLarge over a bound, ErrNotSupported for an algorithm the
// provider does not announce, ErrPermission for a use the key's algorithm
// does not have, ErrBadMessage when Open fails to authenticate, ErrNotFound
// for a destroyed or unknown handle, ErrIO for a handle that is corrupted
// or was made by another provider or key, ErrUnavailable when the provider
// cannot be reached.
//
// Implementations are safe for concurrent use and honour ctx.
type Provider interface {
	// Info describes the provider. The core calls it once when it opens a
	// keystore; the result must not change while the provider runs.
	Info(ctx context.Context) (Info, error)

	// Generate makes a new key for ref (ref.Algorithm and ref.Use say
	// which) and returns its public key and handle. It never returns private
	// key bytes.
	Generate(ctx context.Context, ref KeyRef) (Generated, error)

	// Sign signs msg (at most MaxSignMessage bytes) with the key of a
	// sign-use ref and returns the plain algorithm signature.
	Sign(ctx context.Context, ref KeyRef, h Handle, msg []byte) ([]byte, error)

	// SignDigest signs digest, the caller's hash of a message, with the
	// key of a sign-use ref whose algorithm signs digests (ECDSA, RSA,
	// Ed25519ph), and returns the same signature Sign returns for that
	// message. hash must be the algorithm's own hash (core/alg
	// Spec.Hash) and digest exactly its size (EINVAL otherwise); an
	// algorithm that signs only whole messages (Ed25519, Ed448, ML-DSA)
	// is EPERM.
	SignDigest(ctx context.Context, ref KeyRef, h Handle, hash crypto.Hash, digest []byte) ([]byte, error)

	// MAC returns the tag of msg (at most MaxMACMessage bytes) under the
	// key of a mac-use ref: the full HMAC output. Verification is the
	// core's constant-time comparison with a tag MAC makes again.
	MAC(ctx context.Context, ref KeyRef, h Handle, msg []byte) ([]byte, error)

	// Seal encrypts plaintext (at most MaxSealPlaintext bytes) with the key
	// of a decrypt-use ref, authenticating aad (at most MaxProviderAAD
	// bytes), and returns nonce ‖ ciphertext ‖ tag. The provider chooses
	// the nonce; callers never supply one.
	Seal(ctx context.Context, ref KeyRef, h Handle, plaintext, aad []byte) ([]byte, error)

	// Open reverses Seal. On any authentication failure it returns an error
	// wrapping ErrBadMessage and no plaintext.
	Open(ctx context.Context, ref KeyRef, h Handle, sealed, aad []byte) ([]byte, error)

	// Decrypt opens an HPKE (RFC 9180) base-mode message that a sender
	// encrypted to the public key of an asymmetric-decrypt ref: enc is
	// the encapsulated key (at most MaxHPKEEnc bytes), ciphertext the
	// AEAD output (at most MaxHPKECiphertext), info and aad the sender's
	// (at most MaxHPKEInfo and MaxAAD bytes), passed to HPKE unchanged.
	// Any failure to decapsulate or authenticate wraps ErrBadMessage and
	// returns no plaintext.
	Decrypt(ctx context.Context, ref KeyRef, h Handle, enc, ciphertext, info, aad []byte) ([]byte, error)

	// NewImportKey makes a one-time import wrapping key: an HPKE key pair
	// of wrap.Algorithm (an asymmetric-decrypt algorithm; the provider
	// need not offer it for keys) whose private half exists only in the
	// provider's memory: never in the handle, never on disk. It returns
	// the wrapping public key and a handle naming the pair for Import.
	// The provider holds at most MaxImportKeys and forgets the oldest
	// past that; Destroy(wrap, h) forgets one. A provider that cannot
	// import returns ErrNotSupported with the reason.
	NewImportKey(ctx context.Context, wrap KeyRef) (Generated, error)

	// Import makes the key version ref from key material the caller
	// sealed with HPKE (base mode, info ImportInfo(ref.ID, ref.Algorithm),
	// empty aad) to the wrapping key wrap/wh from NewImportKey, and
	// returns what Generate returns for it. The material is raw bytes for
	// AEAD and MAC keys and PKCS #8 DER for the others (core/alg
	// Spec.ImportMaterial); material of another algorithm or size is
	// ErrInvalid, a wrapped form that does not open ErrBadMessage, an
	// algorithm the provider cannot import ErrNotSupported. The wrapping
	// key is spent by the call whatever its outcome: a second Import with
	// wh is ErrNotFound. The plaintext material never leaves the provider.
	Import(ctx context.Context, ref KeyRef, wrap KeyRef, wh Handle, enc, wrapped []byte) (Generated, error)

	// Destroy erases the key material behind h, where the provider holds
	// any (a hardware provider deletes the token objects; a software
	// provider forgets any cached copy). After Destroy returns, calls with
	// h fail with ErrNotFound for as long as the provider runs. Destroying
	// an already destroyed handle succeeds, so a destroy can be retried.
	Destroy(ctx context.Context, ref KeyRef, h Handle) error
}

// ImportInfo is the HPKE info an import's key material is sealed under:
// "keystored import v1", a zero byte, the key ID, a zero byte and the
// algorithm name. It binds the wrapped material to the key and algorithm it
// was wrapped for (docs/api.md, "Key import").
func ImportInfo(id KeyID, a Algorithm) []byte {
	s := id.String()
	b := make([]byte, 0, len(importInfoLabel)+2+len(s)+len(a))
	b = append(b, importInfoLabel...)
	b = append(b, 0)
	b = append(b, s...)
	b = append(b, 0)
	return append(b, a...)
}

const importInfoLabel = "keystored import v1"

// SealAppender is an optional capability of in-process providers: Seal
// that appends its output (nonce ‖ ciphertext ‖ tag) to dst, so the core
// can write the envelope header and the sealed data into one buffer. The
// core uses it, by type assertion, when a provider has it; it is never part
// of a wire protocol.
type SealAppender interface {
	SealAppend(ctx context.Context, dst []byte, ref KeyRef, h Handle, plaintext, aad []byte) ([]byte, error)
}

// Info describes a provider.
type Info struct {
	// Name identifies the provider; it is part of every KeyRef and is
	// recorded in the keystore's MANIFEST. A segment: [a-z0-9][a-z0-9._-]*.
	Name string
	// Version is the provider's own version, for people.
	Version string
	// Secure is false for providers that must never hold real keys (the
	// deterministic test provider). A keystore refuses to mix the two.
	Secure bool
	// Deterministic is true when the same inputs always give the same keys,
	// signatures and sealed bytes.
	Deterministic bool
	// Algorithms lists every algorithm the provider supports, and no other.
	Algorithms []Algorithm
	// KEKs lists the fingerprints of the key-encryption keys that wrap
	// this provider's handles, the one new handles are wrapped under
	// first: lowercase hex, at most MaxKEKs entries of at most
	// MaxKEKFingerprint characters, no duplicates. A fingerprint names a
	// KEK and reveals nothing of it (the software provider's is the
	// 16-hex-character KEK ID of docs/software-provider.md). Empty for
	// providers whose handles are not wrapped under a KEK (testseed,
	// pkcs11). The core records the first in the keystore's MANIFEST and
	// refuses a state whose recorded KEK is not in the list.
	KEKs []string
}

// Supports reports whether alg is among the announced algorithms.
func (i Info) Supports(alg Algorithm) bool { return slices.Contains(i.Algorithms, alg) }

// Check reports whether i is well formed and within bounds.
func (i Info) Check() error {
	if err := CheckSegment("provider name", i.Name); err != nil {
		return err
	}
	if len(i.Version) > MaxInfoString {
		return Errorf(EINVAL, "provider version longer than %d bytes", MaxInfoString)
	}
	if len(i.Algorithms) > MaxAlgorithms {
		return Errorf(EINVAL, "provider announces more than %d algorithms", MaxAlgorithms)
	}
	seen := make(map[Algorithm]bool, len(i.Algorithms))
	for _, a := range i.Algorithms {
		if a == "" || len(a) > MaxSegment {
			return Errorf(EINVAL, "provider announces an invalid algorithm name")
		}
		if seen[a] {
			return Errorf(EINVAL, "provider announces %q twice", string(a))
		}
		seen[a] = true
	}
	if len(i.KEKs) > MaxKEKs {
		return Errorf(EINVAL, "provider announces more than %d KEKs", MaxKEKs)
	}
	for n, k := range i.KEKs {
		if err := CheckKEKFingerprint(k); err != nil {
			return Errorf(EINVAL, "provider announces an invalid KEK fingerprint: %w", err)
		}
		if slices.Contains(i.KEKs[:n], k) {
			return Errorf(EINVAL, "provider announces KEK %s twice", k)
		}
	}
	return nil
}

// CheckKEKFingerprint reports whether s is a well-formed KEK fingerprint
// (see Info.KEKs): 1 to MaxKEKFingerprint lowercase hex characters. The
// error (EINVAL) does not repeat s.
func CheckKEKFingerprint(s string) error {
	if s == "" || len(s) > MaxKEKFingerprint {
		return Errorf(EINVAL, "a KEK fingerprint is 1 to %d lowercase hex characters", MaxKEKFingerprint)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return Errorf(EINVAL, "a KEK fingerprint is 1 to %d lowercase hex characters", MaxKEKFingerprint)
		}
	}
	return nil
}

// Generated is what Generate returns: a public key (empty for symmetric
// algorithms) and the opaque handle the core stores for the version.
type Generated struct {
	PublicKey []byte
	Handle    Handle
}

// Handle is a provider's opaque reference to a key version's material:
// for a software provider, the private key wrapped under its KEK with the
// KeyRef as associated data; for a hardware provider, the name of an object
// inside the device. It never holds private key bytes in the clear. At most
// MaxHandle bytes.
//
// A Handle prints as its length only.
type Handle []byte

// String returns "handle(N bytes)".
func (h Handle) String() string { return "handle(" + strconv.Itoa(len(h)) + " bytes)" }

// Format prints the same as String under every verb.
func (h Handle) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(h.String())) }

// Package alg is keystored's algorithm registry: for each algorithm name
// of the provider contract, its stable numeric ID, its one use, its sizes,
// its seal budget, public-key verification, and the private-key operations
// the in-process providers use.
//
// A Registry is a value (no init-time registration): Default returns a
// fresh one holding every built-in algorithm, NewRegistry builds one from a
// chosen set and refuses duplicates.
//
// Implementations: Ed25519 from the standard library; Ed448 and ML-DSA
// (FIPS 204) from github.com/cloudflare/circl; ChaCha20-Poly1305 and
// XChaCha20-Poly1305 from golang.org/x/crypto; AES-256-GCM from the
// standard library. Every size is checked before a library call that would
// panic on a wrong length.
package alg

import (
	"cmp"
	"crypto/cipher"
	"fmt"
	"slices"

	"github.com/nexus-os/keystored/core/provider"
)

// Spec describes one algorithm.
type Spec struct {
	// Name is the contract name, e.g. "ed25519".
	Name provider.Algorithm
	// ID is the stable one-byte code used in sealed envelopes and on the
	// wire. Never reused.
	ID uint8
	// Use is the algorithm's one use.
	Use provider.Use
	// SecretSize is the size of the private material a software provider
	// stores: the private seed of a signature algorithm, the key of an AEAD.
	SecretSize int
	// PublicKeySize and SignatureSize are 0 for AEADs.
	PublicKeySize int
	SignatureSize int
	// NonceSize and Overhead (tag size) are 0 for signature algorithms.
	NonceSize int
	Overhead  int
	// SealLimit is the most seals one key version may make with random
	// nonces before the core refuses and asks for a rotation; 0 for
	// signature algorithms.
	SealLimit uint64

	// Cost is the CPU time of one private-key operation (a signature of a
	// short message; a seal or open of an empty message) relative to an
	// Ed25519 signature, which is 1; GenerateCost is that of making a
	// key, and CostPerMiB that of each MiB of message, plaintext or
	// sealed data. The daemon's fair scheduler weighs provider work by
	// them (internal/fairsched). Measured with BenchmarkCost on the
	// reference machine; docs/performance.md has the figures.
	Cost, GenerateCost, CostPerMiB float64

	// sign
	verify    func(pub, msg, sig []byte) bool
	newSigner func(seed []byte, hedged bool) (signFunc, []byte, error)
	// decrypt
	newAEAD func(key []byte) (cipher.AEAD, error)
}

type signFunc func(msg []byte) ([]byte, error)

// Registry is a fixed set of algorithms. It is safe for concurrent use; it
// never changes after construction.
type Registry struct {
	byName map[provider.Algorithm]*Spec
	byID   map[uint8]*Spec
	names  []provider.Algorithm
}

// NewRegistry returns a registry of specs. It refuses a spec without a
// name, use or ID, a spec whose use has no implementation, and any name or
// ID given twice.
func NewRegistry(specs ...Spec) (*Registry, error) {
	r := &Registry{byName: map[provider.Algorithm]*Spec{}, byID: map[uint8]*Spec{}}
	for i := range specs {
		s := specs[i]
		switch {
		case s.Name == "" || s.ID == 0 || !s.Use.Valid():
			return nil, provider.Errorf(provider.EINVAL, "algorithm spec %d lacks a name, ID or use", i)
		case s.Use == provider.UseSign && (s.verify == nil || s.newSigner == nil || s.PublicKeySize <= 0 || s.SignatureSize <= 0):
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s has no signature implementation", string(s.Name))
		case s.Use == provider.UseDecrypt && (s.newAEAD == nil || s.NonceSize <= 0 || s.Overhead <= 0):
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s has no AEAD implementation", string(s.Name))
		}
		if _, dup := r.byName[s.Name]; dup {
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s registered twice", string(s.Name))
		}
		if _, dup := r.byID[s.ID]; dup {
			return nil, provider.Errorf(provider.EINVAL, "algorithm ID %d registered twice", int(s.ID))
		}
		r.byName[s.Name] = &s
		r.byID[s.ID] = &s
		r.names = append(r.names, s.Name)
	}
	slices.SortFunc(r.names, func(a, b provider.Algorithm) int { return cmp.Compare(r.byName[a].ID, r.byName[b].ID) })
	return r, nil
}

// Default returns a new registry holding every built-in algorithm.
func Default() *Registry {
	r, err := NewRegistry(Builtins()...)
	if err != nil {
		// Builtins is a fixed list checked by TestBuiltins; this cannot
		// happen, and an empty registry fails every lookup loudly.
		return &Registry{byName: map[provider.Algorithm]*Spec{}, byID: map[uint8]*Spec{}}
	}
	return r
}

// Lookup returns the spec of a, or an error wrapping ErrNotSupported.
func (r *Registry) Lookup(a provider.Algorithm) (*Spec, error) {
	if s, ok := r.byName[a]; ok {
		return s, nil
	}
	name := string(a)
	if len(name) > provider.MaxSegment {
		name = name[:provider.MaxSegment] + "..."
	}
	return nil, provider.Errorf(provider.ENOTSUP, "unknown algorithm %q", name)
}

// ByID returns the spec with the given envelope ID.
func (r *Registry) ByID(id uint8) (*Spec, bool) {
	s, ok := r.byID[id]
	return s, ok
}

// Names lists the registry's algorithms in ID order.
func (r *Registry) Names() []provider.Algorithm {
	return append([]provider.Algorithm(nil), r.names...)
}

// Verify reports whether sig is a valid signature of msg under the public
// key pub. Wrong sizes are invalid signatures, never panics.
func (s *Spec) Verify(pub, msg, sig []byte) bool {
	if s.verify == nil || len(pub) != s.PublicKeySize || len(sig) != s.SignatureSize {
		return false
	}
	return s.verify(pub, msg, sig)
}

// Signer is an unwrapped private signing key. It prints as its algorithm
// only; its material is unreachable except by signing.
type Signer struct {
	alg    provider.Algorithm
	sign   signFunc
	public []byte
}

// NewSigner derives the key pair from a private seed of SecretSize bytes.
// hedged selects randomized signing where the algorithm has it (ML-DSA);
// deterministic providers pass false.
func (s *Spec) NewSigner(seed []byte, hedged bool) (*Signer, error) {
	if s.Use != provider.UseSign || s.newSigner == nil {
		return nil, provider.Errorf(provider.EPERM, "%s is not a signature algorithm", string(s.Name))
	}
	if len(seed) != s.SecretSize {
		return nil, provider.Errorf(provider.EINVAL, "%s seed has the wrong size", string(s.Name))
	}
	f, pub, err := s.newSigner(seed, hedged)
	if err != nil {
		return nil, err
	}
	return &Signer{alg: s.Name, sign: f, public: pub}, nil
}

// Sign signs msg.
func (k *Signer) Sign(msg []byte) ([]byte, error) { return k.sign(msg) }

// PublicKey returns a copy of the public key.
func (k *Signer) PublicKey() []byte { return append([]byte(nil), k.public...) }

// String returns "signer(<alg>)".
func (k *Signer) String() string { return "signer(" + string(k.alg) + ")" }

// Format prints the same as String under every verb.
func (k *Signer) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// AEAD is an AEAD keyed with private material. It prints as its algorithm
// only.
type AEAD struct {
	alg  provider.Algorithm
	aead cipher.AEAD
}

// NewAEAD keys the algorithm's AEAD with key (SecretSize bytes).
func (s *Spec) NewAEAD(key []byte) (*AEAD, error) {
	if s.Use != provider.UseDecrypt || s.newAEAD == nil {
		return nil, provider.Errorf(provider.EPERM, "%s is not an AEAD algorithm", string(s.Name))
	}
	if len(key) != s.SecretSize {
		return nil, provider.Errorf(provider.EINVAL, "%s key has the wrong size", string(s.Name))
	}
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "%s key setup failed: %w", string(s.Name), err)
	}
	return &AEAD{alg: s.Name, aead: a}, nil
}

// NonceSize returns the nonce size in bytes.
func (a *AEAD) NonceSize() int { return a.aead.NonceSize() }

// Overhead returns the tag size in bytes.
func (a *AEAD) Overhead() int { return a.aead.Overhead() }

// Seal appends nonce ‖ ciphertext ‖ tag to dst. nonce must be NonceSize
// bytes.
func (a *AEAD) Seal(dst, nonce, plaintext, aad []byte) ([]byte, error) {
	if len(nonce) != a.aead.NonceSize() {
		return nil, provider.Errorf(provider.EINVAL, "nonce has the wrong size")
	}
	if len(plaintext) > provider.MaxSealPlaintext {
		return nil, provider.Errorf(provider.EMSGSIZE, "plaintext over %d bytes", provider.MaxSealPlaintext)
	}
	dst = append(dst, nonce...)
	return a.aead.Seal(dst, nonce, plaintext, aad), nil
}

// SealTo appends nonce ‖ ciphertext ‖ tag to dst without a separate nonce
// buffer: it reserves NonceSize bytes in dst, lets fill write the nonce
// there, then seals. fill's error is returned unchanged.
func (a *AEAD) SealTo(dst, plaintext, aad []byte, fill func(nonce []byte) error) ([]byte, error) {
	if len(plaintext) > provider.MaxSealPlaintext {
		return nil, provider.Errorf(provider.EMSGSIZE, "plaintext over %d bytes", provider.MaxSealPlaintext)
	}
	n := a.aead.NonceSize()
	start := len(dst)
	dst = slices.Grow(dst, n+len(plaintext)+a.aead.Overhead())
	dst = dst[:start+n]
	nonce := dst[start:]
	if err := fill(nonce); err != nil {
		return nil, err
	}
	return a.aead.Seal(dst, nonce, plaintext, aad), nil
}

// Open authenticates and decrypts nonce ‖ ciphertext ‖ tag, appending the
// plaintext to dst. Any failure is ErrBadMessage, with no output.
func (a *AEAD) Open(dst, sealed, aad []byte) ([]byte, error) {
	n := a.aead.NonceSize()
	if len(sealed) < n+a.aead.Overhead() {
		return nil, provider.Errorf(provider.EBADMSG, "message authentication failed")
	}
	out, err := a.aead.Open(dst, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, provider.Errorf(provider.EBADMSG, "message authentication failed")
	}
	return out, nil
}

// String returns "aead(<alg>)".
func (a *AEAD) String() string { return "aead(" + string(a.alg) + ")" }

// Format prints the same as String under every verb.
func (a *AEAD) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(a.String())) }

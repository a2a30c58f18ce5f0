// Package alg is keystored's algorithm registry: for each algorithm name
// of the provider contract, its stable numeric ID, its one use, its sizes,
// its seal budget, public-key verification, and the private-key operations
// the in-process providers use.
//
// A Registry is a value (no init-time registration): Default returns a
// fresh one holding every built-in algorithm, NewRegistry builds one from a
// chosen set and refuses duplicates.
//
// Implementations: Ed25519 and Ed25519ph, ECDSA, RSA, HMAC and AES-256-GCM
// from the standard library; Ed448 and ML-DSA (FIPS 204) from
// github.com/cloudflare/circl; ChaCha20-Poly1305 and XChaCha20-Poly1305
// from golang.org/x/crypto. Every size is checked before a library call
// that would panic on a wrong length.
package alg

import (
	"cmp"
	"crypto"
	"crypto/cipher"
	"crypto/subtle"
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
	// stores: the private seed of an EdDSA or ML-DSA key, the scalar of
	// an ECDSA key, the key of an AEAD or HMAC; for RSA (SecretVaries)
	// the largest PKCS #1 RSAPrivateKey DER.
	SecretSize int
	// RandomSize is how many bytes of fresh randomness NewMaterial takes
	// to make a key's material: SecretSize, or 32 for RSA.
	RandomSize int
	// PublicKeySize and SignatureSize are 0 for AEADs and MACs. For RSA
	// (PublicKeyVaries) PublicKeySize is the largest PKCS #1
	// RSAPublicKey DER; for ECDSA (SignatureVaries) SignatureSize is the
	// largest ASN.1 DER signature.
	PublicKeySize int
	SignatureSize int
	// The sizes that vary within their bound (see above).
	SecretVaries, PublicKeyVaries, SignatureVaries bool
	// Hash is the hash whose digests SignDigest signs; 0 for algorithms
	// that sign whole messages only (Ed25519, Ed448, ML-DSA).
	Hash crypto.Hash
	// MACSize is the size of a MAC key's tag; 0 for other uses.
	MACSize int
	// EncSize is the size of an HPKE algorithm's encapsulated key, and
	// KEMID, KDFID and AEADID its RFC 9180 suite; all 0 for other uses.
	EncSize              int
	KEMID, KDFID, AEADID uint16
	// NonceSize and Overhead (tag size) are 0 for signature algorithms;
	// an HPKE algorithm has the Overhead of its AEAD and no NonceSize.
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

	// key generation: nil when the material is the randomness itself
	newMaterial func(random []byte, deterministic bool) ([]byte, error)
	// sign: verify is nil for algorithms with a Hash, whose messages are
	// verified (and signed) as their digests
	verify       func(pub, msg, sig []byte) bool
	verifyDigest func(pub []byte, digest, sig []byte) bool // nil unless Hash is set
	newSigner    func(material []byte, hedged bool) (signFuncs, []byte, error)
	checkPublic  func(pub []byte) bool // nil: any PublicKeySize bytes
	// decrypt
	newAEAD func(key []byte) (cipher.AEAD, error)
	// mac
	newMAC func(key []byte) (macFunc, error)
	// import: the private material of a parsed PKCS #8 key (nil for
	// AEADs and MACs, imported raw, and for algorithms without import)
	importKey func(key any) ([]byte, error)
}

// signFuncs are the signing operations of one unwrapped key: sign a whole
// message (algorithms without a Hash) or a digest of that hash (the
// others, whose messages Signer.Sign hashes).
type signFuncs struct {
	sign       func(msg []byte) ([]byte, error)
	signDigest func(digest []byte) ([]byte, error)
}

type macFunc func(msg []byte) []byte

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
		case s.Use == provider.UseSign && (s.newSigner == nil || s.PublicKeySize <= 0 || s.SignatureSize <= 0):
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s has no signature implementation", string(s.Name))
		case s.Use == provider.UseSign && (s.Hash == 0) == (s.verify == nil) || s.Hash != 0 && s.verifyDigest == nil:
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s needs message verification without a hash, digest verification with one", string(s.Name))
		case s.Use == provider.UseDecrypt && (s.newAEAD == nil || s.NonceSize <= 0 || s.Overhead <= 0):
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s has no AEAD implementation", string(s.Name))
		case s.Use == provider.UseMAC && (s.newMAC == nil || s.MACSize <= 0 || s.MACSize > provider.MaxMAC):
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s has no MAC implementation", string(s.Name))
		case s.Use == provider.UseAsymmetricDecrypt && (s.KEMID == 0 || s.KDFID == 0 || s.AEADID == 0 || s.EncSize <= 0 || s.EncSize > provider.MaxHPKEEnc || s.PublicKeySize <= 0):
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s has no HPKE suite", string(s.Name))
		case s.SecretSize <= 0 || s.RandomSize < 0:
			return nil, provider.Errorf(provider.EINVAL, "algorithm %s has no secret size", string(s.Name))
		}
		if s.RandomSize == 0 {
			s.RandomSize = s.SecretSize
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

// sizeOK reports whether n is a valid size for a value of size size that
// varies within that bound when varies is set.
func sizeOK(n, size int, varies bool) bool {
	if varies {
		return n > 0 && n <= size
	}
	return n == size
}

// SecretSizeOK reports whether n bytes can be the private material of a
// key of this algorithm.
func (s *Spec) SecretSizeOK(n int) bool { return sizeOK(n, s.SecretSize, s.SecretVaries) }

// SignatureSizeOK reports whether n bytes can be a signature of this
// algorithm.
func (s *Spec) SignatureSizeOK(n int) bool {
	return s.SignatureSize > 0 && sizeOK(n, s.SignatureSize, s.SignatureVaries)
}

// PublicKeySizeOK reports whether n bytes can be a public key of this
// algorithm: 0 for AEADs and MACs.
func (s *Spec) PublicKeySizeOK(n int) bool {
	if s.PublicKeySize == 0 {
		return n == 0
	}
	return sizeOK(n, s.PublicKeySize, s.PublicKeyVaries)
}

// CheckPublicKey reports whether pub is a well-formed public key of this
// algorithm: its size, and for ECDSA and RSA that it parses (a point on
// the curve; a modulus of the algorithm's size and exponent 65537).
func (s *Spec) CheckPublicKey(pub []byte) bool {
	if s.PublicKeySize <= 0 || !sizeOK(len(pub), s.PublicKeySize, s.PublicKeyVaries) {
		return false
	}
	return s.checkPublic == nil || s.checkPublic(pub)
}

// NewMaterial makes the private material of a new key from RandomSize
// bytes of fresh randomness: the randomness itself for most algorithms, a
// valid ECDSA scalar (deterministically from the randomness), or an RSA
// key. A secure provider passes deterministic=false, and an RSA key then
// comes from crypto/rsa.GenerateKey and the operating system's random
// source (Go ignores any other source); a deterministic provider passes
// true, and the RSA primes are searched from a stream keyed by the
// randomness: reproducible, and fit for INSECURE test keys only. The
// caller clears the result.
func (s *Spec) NewMaterial(random []byte, deterministic bool) ([]byte, error) {
	if len(random) != s.RandomSize {
		return nil, provider.Errorf(provider.EINVAL, "%s key generation takes %d random bytes", string(s.Name), s.RandomSize)
	}
	if s.newMaterial == nil {
		return append([]byte(nil), random...), nil
	}
	m, err := s.newMaterial(random, deterministic)
	if err != nil {
		return nil, err
	}
	if !s.SecretSizeOK(len(m)) {
		clear(m)
		return nil, provider.Errorf(provider.EIO, "%s key generation made material of a wrong size", string(s.Name))
	}
	return m, nil
}

// Verify reports whether sig is a valid signature of msg under the public
// key pub. Wrong sizes are invalid signatures, never panics.
func (s *Spec) Verify(pub, msg, sig []byte) bool {
	if s.Use != provider.UseSign || !sizeOK(len(pub), s.PublicKeySize, s.PublicKeyVaries) || !s.SignatureSizeOK(len(sig)) {
		return false
	}
	if s.Hash != 0 {
		return s.verifyDigest(pub, digest(s.Hash, msg), sig)
	}
	return s.verify(pub, msg, sig)
}

// digest returns msg's hash under h.
func digest(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	_, _ = d.Write(msg) // hash.Hash.Write never fails
	return d.Sum(nil)
}

// CheckDigest checks a digest to be signed or verified with this
// algorithm: EPERM for an algorithm without a Hash, EINVAL for another
// hash or a digest of the wrong size.
func (s *Spec) CheckDigest(hash crypto.Hash, digest []byte) error {
	if s.Use != provider.UseSign || s.Hash == 0 {
		return provider.Errorf(provider.EPERM, "%s signs whole messages only, not digests", string(s.Name))
	}
	if err := provider.CheckDigest(hash, digest); err != nil {
		return err
	}
	if hash != s.Hash {
		want, _ := provider.HashName(s.Hash)
		got, _ := provider.HashName(hash)
		return provider.Errorf(provider.EINVAL, "%s signs %s digests, not %s", string(s.Name), want, got)
	}
	return nil
}

// VerifyDigest reports whether sig is a valid signature, under pub, of
// the message whose hash digest is. A hash or digest CheckDigest refuses,
// and wrong sizes, are invalid signatures, never panics.
func (s *Spec) VerifyDigest(pub []byte, hash crypto.Hash, digest, sig []byte) bool {
	if s.CheckDigest(hash, digest) != nil || s.verifyDigest == nil ||
		!sizeOK(len(pub), s.PublicKeySize, s.PublicKeyVaries) || !s.SignatureSizeOK(len(sig)) {
		return false
	}
	return s.verifyDigest(pub, digest, sig)
}

// Signer is an unwrapped private signing key. It prints as its algorithm
// only; its material is unreachable except by signing.
type Signer struct {
	spec   *Spec
	f      signFuncs
	public []byte
}

// NewSigner makes the key pair from its private material (SecretSize
// bytes, or a PKCS #1 DER key for RSA). hedged selects randomized signing
// where the algorithm has a choice (ML-DSA hedged, ECDSA with fresh
// randomness, RSA-PSS with a random salt); deterministic providers pass
// false and get FIPS 204 deterministic ML-DSA, RFC 6979 ECDSA and a PSS
// salt derived from the key and digest.
func (s *Spec) NewSigner(material []byte, hedged bool) (*Signer, error) {
	if s.Use != provider.UseSign || s.newSigner == nil {
		return nil, provider.Errorf(provider.EPERM, "%s is not a signature algorithm", string(s.Name))
	}
	if !s.SecretSizeOK(len(material)) {
		return nil, provider.Errorf(provider.EINVAL, "%s private material has the wrong size", string(s.Name))
	}
	f, pub, err := s.newSigner(material, hedged)
	if err != nil {
		return nil, err
	}
	return &Signer{spec: s, f: f, public: pub}, nil
}

// Sign signs msg: itself, or for an algorithm with a Hash its digest.
func (k *Signer) Sign(msg []byte) ([]byte, error) {
	if k.spec.Hash != 0 {
		return k.f.signDigest(digest(k.spec.Hash, msg))
	}
	return k.f.sign(msg)
}

// SignDigest signs the message whose hash digest is. It refuses what
// Spec.CheckDigest refuses.
func (k *Signer) SignDigest(hash crypto.Hash, digest []byte) ([]byte, error) {
	if err := k.spec.CheckDigest(hash, digest); err != nil {
		return nil, err
	}
	if k.f.signDigest == nil {
		return nil, provider.Errorf(provider.EPERM, "%s signs whole messages only, not digests", string(k.spec.Name))
	}
	return k.f.signDigest(digest)
}

// PublicKey returns a copy of the public key.
func (k *Signer) PublicKey() []byte { return append([]byte(nil), k.public...) }

// String returns "signer(<alg>)".
func (k *Signer) String() string { return "signer(" + string(k.spec.Name) + ")" }

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

// MAC is an HMAC keyed with private material. It prints as its algorithm
// only.
type MAC struct {
	alg  provider.Algorithm
	size int
	mac  macFunc
}

// NewMAC keys the algorithm's HMAC with key (SecretSize bytes).
func (s *Spec) NewMAC(key []byte) (*MAC, error) {
	if s.Use != provider.UseMAC || s.newMAC == nil {
		return nil, provider.Errorf(provider.EPERM, "%s is not a MAC algorithm", string(s.Name))
	}
	if len(key) != s.SecretSize {
		return nil, provider.Errorf(provider.EINVAL, "%s key has the wrong size", string(s.Name))
	}
	f, err := s.newMAC(key)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "%s key setup failed: %w", string(s.Name), err)
	}
	return &MAC{alg: s.Name, size: s.MACSize, mac: f}, nil
}

// Tag returns the full tag of msg (at most provider.MaxMACMessage bytes).
func (m *MAC) Tag(msg []byte) ([]byte, error) {
	if err := provider.CheckMAC(msg); err != nil {
		return nil, err
	}
	return m.mac(msg), nil
}

// Equal reports, in time independent of where they differ, whether two
// tags are equal. Tags of different lengths are unequal.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// String returns "mac(<alg>)".
func (m *MAC) String() string { return "mac(" + string(m.alg) + ")" }

// Format prints the same as String under every verb.
func (m *MAC) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(m.String())) }

package testseed

import (
	"crypto/ed25519"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// InsecureKnownSecrets returns the private key bytes the testseed provider
// with seed uses for ref: first the raw private material (the seed of a
// signature algorithm, the key of an AEAD), then, for signature
// algorithms, the expanded private key encodings (the 64-byte Ed25519
// private key, the 114-byte Ed448 private key, the packed ML-DSA private
// key). Leak tests search every output, log and file for them. INSECURE:
// for tests only.
func InsecureKnownSecrets(seed []byte, ref provider.KeyRef) ([][]byte, error) {
	if err := checkSeed(seed); err != nil {
		return nil, err
	}
	if err := ref.Check(); err != nil {
		return nil, err
	}
	spec, err := alg.Default().Lookup(ref.Algorithm)
	if err != nil {
		return nil, err
	}
	src := &seedSource{seed: secret.New(seed)}
	m, err := src.derive("key", &ref, spec.SecretSize)
	if err != nil {
		return nil, err
	}
	out := [][]byte{m}
	switch ref.Algorithm {
	case provider.Ed25519:
		out = append(out, ed25519.NewKeyFromSeed(m))
	case provider.Ed448:
		out = append(out, ed448.NewKeyFromSeed(m))
	case provider.MLDSA44:
		var s [mldsa44.SeedSize]byte
		copy(s[:], m)
		_, sk := mldsa44.NewKeyFromSeed(&s)
		out = append(out, sk.Bytes())
	case provider.MLDSA65:
		var s [mldsa65.SeedSize]byte
		copy(s[:], m)
		_, sk := mldsa65.NewKeyFromSeed(&s)
		out = append(out, sk.Bytes())
	case provider.MLDSA87:
		var s [mldsa87.SeedSize]byte
		copy(s[:], m)
		_, sk := mldsa87.NewKeyFromSeed(&s)
		out = append(out, sk.Bytes())
	}
	return out, nil
}

// InsecureKEK returns the KEK of the testseed provider with seed,
// HKDF-SHA256(seed, Salt, "kek", 32). INSECURE: for tests only.
func InsecureKEK(seed []byte) ([]byte, error) {
	if err := checkSeed(seed); err != nil {
		return nil, err
	}
	src := &seedSource{seed: secret.New(seed)}
	return src.derive("kek", nil, 32)
}

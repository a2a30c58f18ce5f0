package testseed

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// InsecureKnownSecrets returns the private key bytes the testseed provider
// with seed uses for ref. First comes the private material the handle
// wraps: the seed of an EdDSA or ML-DSA key, the scalar of an ECDSA key,
// the PKCS #1 RSAPrivateKey DER of an RSA key, the key of an AEAD or
// HMAC, the KEM's serialized private key of an HPKE key. Then the other
// encodings and values that each give the private key away:
//
//   - Ed25519, Ed25519ph: the 64-byte private key (seed ‖ public key);
//   - Ed448: the 114-byte private key; ML-DSA: the packed private key;
//   - ECDSA: the SEC 1 ECPrivateKey DER and the PKCS #8 DER (a base64 PEM
//     of either does not contain the scalar's base64);
//   - RSA: the 32-byte key of the prime search (HKDF output), the PKCS #8
//     DER, and the big-endian bytes of d, p, q, d mod (p-1) and
//     d mod (q-1);
//   - HPKE: the 32-byte HKDF output the KEM derives the key pair from.
//
// The ECDSA and RSA material is derived as the provider derives it
// (docs/testing.md), so for RSA this costs a key generation. Leak tests
// search every output, log and file for these. INSECURE: for tests only.
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
	random, err := src.derive("key", &ref, spec.RandomSize)
	if err != nil {
		return nil, err
	}
	m, err := spec.NewMaterial(random, true)
	if err != nil {
		return nil, err
	}
	out := [][]byte{m}
	switch ref.Algorithm {
	case provider.Ed25519, provider.Ed25519ph:
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
	case provider.ECDSAP256, provider.ECDSAP384:
		enc, err := ecdsaEncodings(ref.Algorithm, m)
		if err != nil {
			return nil, err
		}
		out = append(out, enc...)
		if !bytes.Equal(random, m) {
			// The scalar came from a hash of this, which gives it away.
			out = append(out, random)
		}
	case provider.HPKEX25519, provider.HPKEP256, provider.HPKEMLKEM768X25519:
		// The material is DeriveKeyPair(random): random gives it away.
		out = append(out, random)
	case provider.RSA2048PSS, provider.RSA3072PSS, provider.RSA4096PSS,
		provider.RSA2048PKCS1, provider.RSA3072PKCS1, provider.RSA4096PKCS1:
		k, err := x509.ParsePKCS1PrivateKey(m)
		if err != nil {
			return nil, provider.Errorf(provider.EIO, "testseed: RSA material does not parse: %w", err)
		}
		p8, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, provider.Errorf(provider.EIO, "testseed: PKCS #8 encoding failed: %w", err)
		}
		out = append(out, random, p8, k.D.Bytes(), k.Primes[0].Bytes(), k.Primes[1].Bytes(),
			k.Precomputed.Dp.Bytes(), k.Precomputed.Dq.Bytes())
	}
	return out, nil
}

// ecdsaEncodings returns the SEC 1 and PKCS #8 DER of the ECDSA key with
// scalar d.
func ecdsaEncodings(a provider.Algorithm, d []byte) ([][]byte, error) {
	curve := elliptic.P256()
	if a == provider.ECDSAP384 {
		curve = elliptic.P384()
	}
	k, err := ecdsa.ParseRawPrivateKey(curve, d)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "testseed: ECDSA scalar does not parse: %w", err)
	}
	sec1, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "testseed: SEC 1 encoding failed: %w", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "testseed: PKCS #8 encoding failed: %w", err)
	}
	return [][]byte{sec1, p8}, nil
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

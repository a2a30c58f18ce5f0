package alg

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"

	"github.com/cloudflare/circl/sign"
	circled25519 "github.com/cloudflare/circl/sign/ed25519"
	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/provider"
)

// Seal budgets. A 96-bit random nonce is safe for 2^32 seals under one key
// (NIST SP 800-38D; x/crypto's chacha20poly1305 doc); a 192-bit one for far
// more, capped at 2^48 (collision chance about 2^-97).
const (
	SealLimit96  = 1 << 32
	SealLimit192 = 1 << 48
)

// Builtins returns the specs of every built-in algorithm. IDs are stable
// and never reused: signatures from 1, AEADs from 16, MACs from 32, HPKE
// suites from 48.
//
// The costs (relative to an Ed25519 signature of a short message, about
// 17 µs on the reference machine) are BenchmarkCost's figures rounded:
// Ed448 sign 66 µs, ML-DSA-44/65/87 sign 135/219/275 µs (hedged; ML-DSA's
// rejection sampling makes one signature vary), key generation 15 µs
// (Ed25519), 65 µs (Ed448), 91/160/170 µs (ML-DSA); a 64 KiB message adds
// 183 µs to an Ed25519 signature, 298 µs to Ed448's, about 150 µs to
// ML-DSA's (SHAKE256); the AEADs seal 1 MiB in 420 µs (XChaCha20),
// 440 µs (ChaCha20), 180 µs (AES-256-GCM with AES-NI), under 1 µs of
// fixed cost per call. Issue 11's algorithms: ECDSA P-256 sign 32 µs and
// key generation 28 µs, P-384 193 µs and 224 µs; RSA sign 0.84, 2.5 and
// 5.3 ms (2048, 3072, 4096 bits), key generation 50 ms, 150 ms and
// 0.4 to 1.6 s (it varies with the prime search); Ed25519ph as Ed25519;
// HMAC-SHA-256 0.75 µs for a short message and 610 µs per MiB,
// HMAC-SHA-384/512 1.6 µs and 1.5 ms per MiB; SHA-256 of a message to
// sign 610 µs per MiB, SHA-384 1.5 ms.
func Builtins() []Spec {
	specs := []Spec{
		{
			Name: provider.Ed25519, ID: 1, Use: provider.UseSign,
			SecretSize: ed25519.SeedSize, PublicKeySize: ed25519.PublicKeySize, SignatureSize: ed25519.SignatureSize,
			Cost: 1, GenerateCost: 1, CostPerMiB: 170,
			importKey: importEd25519(provider.Ed25519),
			verify:    func(pub, msg, sig []byte) bool { return ed25519.Verify(pub, msg, sig) },
			// circl's Ed25519 rather than crypto/ed25519's for signing (the
			// same RFC 8032 signatures): crypto/ed25519 keeps each private
			// key's expanded form in a cache keyed by a weak pointer to the
			// key's bytes and makes that weak pointer again on every Sign;
			// the runtime finds it by walking the specials list of the key's
			// memory span, so with 10^5 keys in use signing on random keys
			// spent 15 % of the daemon's CPU in runtime.getWeakHandle
			// (docs/performance.md, "Scale"), and the cache cost memory per
			// key. circl hashes the seed on each call instead (under 1 µs).
			newSigner: func(seed []byte, _ bool) (signFuncs, []byte, error) {
				k := circled25519.NewKeyFromSeed(seed)
				return signFuncs{sign: func(msg []byte) ([]byte, error) { return circled25519.Sign(k, msg), nil }},
					append([]byte(nil), k[circled25519.SeedSize:]...), nil
			},
		},
		{
			Name: provider.Ed448, ID: 2, Use: provider.UseSign,
			SecretSize: ed448.SeedSize, PublicKeySize: ed448.PublicKeySize, SignatureSize: ed448.SignatureSize,
			Cost: 4, GenerateCost: 4, CostPerMiB: 280,
			verify: func(pub, msg, sig []byte) bool { return ed448.Verify(ed448.PublicKey(pub), msg, sig, "") },
			newSigner: func(seed []byte, _ bool) (signFuncs, []byte, error) {
				k := ed448.NewKeyFromSeed(seed)
				pub, ok := k.Public().(ed448.PublicKey)
				if !ok {
					return signFuncs{}, nil, provider.Errorf(provider.EIO, "ed448 public key has an unexpected type")
				}
				return signFuncs{sign: func(msg []byte) ([]byte, error) { return ed448.Sign(k, msg, ""), nil }},
					append([]byte(nil), pub...), nil
			},
		},
		mldsaSpec(provider.MLDSA44, 3, mldsa44.Scheme(), mldsa44.NewKeyFromSeed, mldsa44.SignTo, 8, 5.5),
		mldsaSpec(provider.MLDSA65, 4, mldsa65.Scheme(), mldsa65.NewKeyFromSeed, mldsa65.SignTo, 13, 9.5),
		mldsaSpec(provider.MLDSA87, 5, mldsa87.Scheme(), mldsa87.NewKeyFromSeed, mldsa87.SignTo, 16, 10),
		ecdsaSpec(provider.ECDSAP256, 6, elliptic.P256(), crypto.SHA256, 32, 72, 2, 2, 36),
		ecdsaSpec(provider.ECDSAP384, 7, elliptic.P384(), crypto.SHA384, 48, 104, 11, 13, 90),
		rsaSpec(provider.RSA2048PSS, 8, 2048, true, 50, 3000),
		rsaSpec(provider.RSA3072PSS, 9, 3072, true, 150, 9000),
		rsaSpec(provider.RSA4096PSS, 10, 4096, true, 310, 50000),
		rsaSpec(provider.RSA2048PKCS1, 11, 2048, false, 50, 3000),
		rsaSpec(provider.RSA3072PKCS1, 12, 3072, false, 150, 9000),
		rsaSpec(provider.RSA4096PKCS1, 13, 4096, false, 310, 50000),
		ed25519phSpec(),
		{
			Name: provider.XChaCha20Poly1305, ID: 16, Use: provider.UseDecrypt,
			SecretSize: chacha20poly1305.KeySize, NonceSize: chacha20poly1305.NonceSizeX, Overhead: chacha20poly1305.Overhead,
			SealLimit: SealLimit192,
			Cost:      0.02, GenerateCost: 0.05, CostPerMiB: 25,
			newAEAD: chacha20poly1305.NewX,
		},
		{
			Name: provider.ChaCha20Poly1305, ID: 17, Use: provider.UseDecrypt,
			SecretSize: chacha20poly1305.KeySize, NonceSize: chacha20poly1305.NonceSize, Overhead: chacha20poly1305.Overhead,
			SealLimit: SealLimit96,
			Cost:      0.02, GenerateCost: 0.05, CostPerMiB: 26,
			newAEAD: chacha20poly1305.New,
		},
		{
			Name: provider.AES256GCM, ID: 18, Use: provider.UseDecrypt,
			SecretSize: 32, NonceSize: 12, Overhead: 16,
			SealLimit: SealLimit96,
			Cost:      0.02, GenerateCost: 0.05, CostPerMiB: 11,
			newAEAD: func(key []byte) (cipher.AEAD, error) {
				b, err := aes.NewCipher(key)
				if err != nil {
					return nil, err
				}
				return cipher.NewGCM(b)
			},
		},
		hmacSpec(provider.HMACSHA256, 32, sha256.New, 0.05, 36),
		hmacSpec(provider.HMACSHA384, 33, sha512.New384, 0.1, 90),
		hmacSpec(provider.HMACSHA512, 34, sha512.New, 0.1, 90),
		hpkeSpec(provider.HPKEX25519, 48, KEMX25519HKDFSHA256, KDFHKDFSHA256, AEADChaCha20Poly1305, 32, 32, 3, 3,
			importDHKEM(provider.HPKEX25519, ecdh.X25519(), "X25519")),
		hpkeSpec(provider.HPKEP256, 49, KEMP256HKDFSHA256, KDFHKDFSHA256, AEADAES128GCM, 65, 65, 4, 4,
			importDHKEM(provider.HPKEP256, ecdh.P256(), "P-256")),
		hpkeSpec(provider.HPKEMLKEM768X25519, 50, KEMMLKEM768X25519, KDFHKDFSHA256, AEADAES256GCM, 1216, 1120, 6, 6, nil),
	}
	for i := range specs {
		if specs[i].RandomSize == 0 {
			specs[i].RandomSize = specs[i].SecretSize
		}
	}
	return specs
}

// mldsaSpec is the spec of one ML-DSA parameter set (FIPS 204) from its
// circl package: sizes, public-key decoding and verification come from the
// package's sign.Scheme. Key derivation and signing use the package's own
// NewKeyFromSeed and SignTo, because the Scheme signs deterministically
// only (its Sign and crypto.Signer ignore randomness) and the software
// provider signs hedged; NewKeyFromSeed takes an array this function can
// clear.
func mldsaSpec[PK sign.PublicKey, SK sign.PrivateKey](name provider.Algorithm, id uint8, s sign.Scheme,
	newKey func(seed *[32]byte) (PK, SK), signTo func(sk SK, msg, ctx []byte, randomized bool, sig []byte) error,
	cost, generateCost float64) Spec {
	return Spec{
		Name: name, ID: id, Use: provider.UseSign,
		SecretSize: s.SeedSize(), PublicKeySize: s.PublicKeySize(), SignatureSize: s.SignatureSize(),
		Cost: cost, GenerateCost: generateCost, CostPerMiB: 150,
		verify: func(pub, msg, sig []byte) bool {
			pk, err := s.UnmarshalBinaryPublicKey(pub)
			return err == nil && s.Verify(pk, msg, sig, nil)
		},
		newSigner: func(seed []byte, hedged bool) (signFuncs, []byte, error) {
			var sd [32]byte
			copy(sd[:], seed)
			pk, sk := newKey(&sd)
			clear(sd[:])
			pub, err := pk.MarshalBinary()
			if err != nil {
				return signFuncs{}, nil, provider.Errorf(provider.EIO, "%s public key encoding failed: %w", string(name), err)
			}
			return signFuncs{sign: func(msg []byte) ([]byte, error) {
				sig := make([]byte, s.SignatureSize())
				if err := signTo(sk, msg, nil, hedged, sig); err != nil {
					return nil, provider.Errorf(provider.EIO, "%s sign failed: %w", string(name), err)
				}
				return sig, nil
			}}, pub, nil
		},
	}
}

package alg

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"

	"github.com/nexus-os/keystored/core/provider"
)

// maxScalarTries bounds NewMaterial's search for a valid ECDSA scalar. A
// candidate is out of range with probability about 2^-32 (P-256) or
// 2^-190 (P-384), so the bound is never reached by honest randomness.
const maxScalarTries = 64

// ecdsaSpec is the spec of ECDSA on curve over hash. The private material
// is the scalar (size bytes, big-endian), the public key the SEC 1
// uncompressed point, the signature ASN.1 DER (at most maxSig bytes).
// A hedged signer signs with fresh randomness (crypto/ecdsa.SignASN1); an
// unhedged one deterministically (RFC 6979).
func ecdsaSpec(name provider.Algorithm, id uint8, curve elliptic.Curve, hash crypto.Hash, size, maxSig int, cost, generateCost, costPerMiB float64) Spec {
	pubSize := 1 + 2*size
	parsePub := func(pub []byte) (*ecdsa.PublicKey, bool) {
		if len(pub) != pubSize {
			return nil, false
		}
		k, err := ecdsa.ParseUncompressedPublicKey(curve, pub)
		return k, err == nil
	}
	verifyDigest := func(pub, digest, sig []byte) bool {
		k, ok := parsePub(pub)
		return ok && ecdsa.VerifyASN1(k, digest, sig)
	}
	return Spec{
		Name: name, ID: id, Use: provider.UseSign,
		SecretSize: size, PublicKeySize: pubSize, SignatureSize: maxSig, SignatureVaries: true,
		Hash: hash,
		Cost: cost, GenerateCost: generateCost, CostPerMiB: costPerMiB,
		checkPublic: func(pub []byte) bool { _, ok := parsePub(pub); return ok },
		importKey:   importECDSA(name, curve.Params().Name),
		newMaterial: func(random []byte, _ bool) ([]byte, error) {
			// The first candidate in range of hash^i(random), i = 0, 1, ...:
			// uniform over the valid scalars, and reproducible for a
			// deterministic provider.
			c := append([]byte(nil), random...)
			for range maxScalarTries {
				if k, err := ecdsa.ParseRawPrivateKey(curve, c); err == nil && k != nil {
					return c, nil
				}
				h := hash.New()
				_, _ = h.Write(c) // hash.Hash.Write never fails
				clear(c)
				c = h.Sum(c[:0])[:size]
			}
			clear(c)
			return nil, provider.Errorf(provider.EIO, "%s key generation found no valid scalar", string(name))
		},
		verifyDigest: verifyDigest,
		newSigner: func(material []byte, hedged bool) (signFuncs, []byte, error) {
			k, err := ecdsa.ParseRawPrivateKey(curve, material)
			if err != nil {
				return signFuncs{}, nil, provider.Errorf(provider.EIO, "%s private key does not parse", string(name))
			}
			pub, err := k.PublicKey.Bytes()
			if err != nil {
				return signFuncs{}, nil, provider.Errorf(provider.EIO, "%s public key encoding failed", string(name))
			}
			var random io.Reader // nil: RFC 6979
			if hedged {
				random = rand.Reader
			}
			signDigest := func(digest []byte) ([]byte, error) {
				sig, err := k.Sign(random, digest, hash)
				if err != nil {
					return nil, provider.Errorf(provider.EIO, "%s sign failed: %w", string(name), err)
				}
				return sig, nil
			}
			return signFuncs{
				signDigest: signDigest,
			}, pub, nil
		},
	}
}

package alg

import (
	"crypto"
	"crypto/ed25519"

	"github.com/nexus-os/keystored/core/provider"
)

// ed25519phSpec is Ed25519ph (RFC 8032 section 5.1, empty context): the
// signature of a SHA-512 digest, so a caller can sign a message of any
// size by sending its digest. The key pair is an Ed25519 one; an
// Ed25519ph signature never verifies as pure Ed25519 (the two are domain
// separated), which is why it is its own algorithm, chosen at create.
func ed25519phSpec() Spec {
	opts := &ed25519.Options{Hash: crypto.SHA512}
	verifyDigest := func(pub, digest, sig []byte) bool {
		return len(pub) == ed25519.PublicKeySize && ed25519.VerifyWithOptions(pub, digest, sig, opts) == nil
	}
	return Spec{
		Name: provider.Ed25519ph, ID: 14, Use: provider.UseSign,
		SecretSize: ed25519.SeedSize, PublicKeySize: ed25519.PublicKeySize, SignatureSize: ed25519.SignatureSize,
		Hash: crypto.SHA512,
		Cost: 1, GenerateCost: 1, CostPerMiB: 100,
		importKey:    importEd25519(provider.Ed25519ph),
		verifyDigest: verifyDigest,
		newSigner: func(seed []byte, _ bool) (signFuncs, []byte, error) {
			k := ed25519.NewKeyFromSeed(seed)
			signDigest := func(digest []byte) ([]byte, error) {
				sig, err := k.Sign(nil, digest, opts)
				if err != nil {
					return nil, provider.Errorf(provider.EIO, "ed25519ph sign failed: %w", err)
				}
				return sig, nil
			}
			return signFuncs{
				signDigest: signDigest,
			}, append([]byte(nil), k[32:]...), nil
		},
	}
}

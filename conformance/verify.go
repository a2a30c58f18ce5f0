package conformance

import (
	"crypto/ed25519"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"

	"github.com/nexus-os/keystored/core/provider"
)

// independentVerifiers check signatures with implementations called
// directly, not through core/alg, so a registry bug cannot hide a provider
// bug. Each checks sizes first: wrong sizes are invalid signatures, never
// panics.
var independentVerifiers = map[provider.Algorithm]func(pub, msg, sig []byte) bool{
	provider.Ed25519: func(pub, msg, sig []byte) bool {
		return len(pub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize &&
			ed25519.Verify(ed25519.PublicKey(pub), msg, sig)
	},
	provider.Ed448: func(pub, msg, sig []byte) bool {
		return len(pub) == ed448.PublicKeySize && len(sig) == ed448.SignatureSize &&
			ed448.Verify(ed448.PublicKey(pub), msg, sig, "")
	},
	provider.MLDSA44: func(pub, msg, sig []byte) bool {
		var pk mldsa44.PublicKey
		return len(pub) == mldsa44.PublicKeySize && len(sig) == mldsa44.SignatureSize &&
			pk.UnmarshalBinary(pub) == nil && mldsa44.Verify(&pk, msg, nil, sig)
	},
	provider.MLDSA65: func(pub, msg, sig []byte) bool {
		var pk mldsa65.PublicKey
		return len(pub) == mldsa65.PublicKeySize && len(sig) == mldsa65.SignatureSize &&
			pk.UnmarshalBinary(pub) == nil && mldsa65.Verify(&pk, msg, nil, sig)
	},
	provider.MLDSA87: func(pub, msg, sig []byte) bool {
		var pk mldsa87.PublicKey
		return len(pub) == mldsa87.PublicKeySize && len(sig) == mldsa87.SignatureSize &&
			pk.UnmarshalBinary(pub) == nil && mldsa87.Verify(&pk, msg, nil, sig)
	},
}

// verifier returns the independent verifier of a, or a skip when the
// suite has none (an algorithm newer than the suite).
func verifier(a provider.Algorithm) (func(pub, msg, sig []byte) bool, error) {
	v, ok := independentVerifiers[a]
	if !ok {
		return nil, skipf("the suite has no independent verifier for %q", a)
	}
	return v, nil
}

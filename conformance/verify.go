package conformance

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"hash"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/provider"
)

// The verifiers below call the implementations directly (crypto/ed25519,
// crypto/ecdsa, crypto/rsa, crypto/hmac, circl), never through core/alg,
// so that a registry bug cannot hide a provider bug. Each checks sizes and
// encodings first: wrong sizes are invalid signatures, never panics.

// digestVerifier verifies a signature over the caller's digest of a
// message under the algorithm's one hash.
type digestVerifier struct {
	hash   crypto.Hash
	verify func(pub, digest, sig []byte) bool
}

// digestVerifiers are the independent digest verifiers of the algorithms
// that sign digests (ECDSA, RSA, Ed25519ph).
var digestVerifiers = map[provider.Algorithm]digestVerifier{
	provider.ECDSAP256:    {crypto.SHA256, ecdsaVerifier(elliptic.P256(), 32)},
	provider.ECDSAP384:    {crypto.SHA384, ecdsaVerifier(elliptic.P384(), 48)},
	provider.RSA2048PSS:   {crypto.SHA256, rsaVerifier(2048, true)},
	provider.RSA3072PSS:   {crypto.SHA256, rsaVerifier(3072, true)},
	provider.RSA4096PSS:   {crypto.SHA256, rsaVerifier(4096, true)},
	provider.RSA2048PKCS1: {crypto.SHA256, rsaVerifier(2048, false)},
	provider.RSA3072PKCS1: {crypto.SHA256, rsaVerifier(3072, false)},
	provider.RSA4096PKCS1: {crypto.SHA256, rsaVerifier(4096, false)},
	provider.Ed25519ph: {crypto.SHA512, func(pub, digest, sig []byte) bool {
		return len(pub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize && len(digest) == sha512.Size &&
			ed25519.VerifyWithOptions(ed25519.PublicKey(pub), digest, sig, &ed25519.Options{Hash: crypto.SHA512}) == nil
	}},
}

// ecdsaVerifier verifies an ASN.1 DER ECDSA signature under a SEC 1
// uncompressed point of curve (coordinates of size bytes).
func ecdsaVerifier(curve elliptic.Curve, size int) func(pub, digest, sig []byte) bool {
	return func(pub, digest, sig []byte) bool {
		if len(pub) != 1+2*size || len(sig) == 0 || len(sig) > 2*size+8 {
			return false
		}
		k, err := ecdsa.ParseUncompressedPublicKey(curve, pub)
		return err == nil && ecdsa.VerifyASN1(k, digest, sig)
	}
}

// rsaPublicKey parses a PKCS #1 RSAPublicKey DER of a bits-bit modulus
// and exponent 65537, the only ones keystored makes.
func rsaPublicKey(pub []byte, bits int) (*rsa.PublicKey, bool) {
	k, err := x509.ParsePKCS1PublicKey(pub)
	if err != nil || k.N.BitLen() != bits || k.E != 65537 {
		return nil, false
	}
	return k, true
}

// rsaVerifier verifies an RSASSA-PSS (SHA-256, MGF1-SHA-256, salt of
// exactly 32 bytes) or RSASSA-PKCS1-v1_5 (SHA-256) signature of modulus
// size under a PKCS #1 public key of bits bits.
func rsaVerifier(bits int, pss bool) func(pub, digest, sig []byte) bool {
	return func(pub, digest, sig []byte) bool {
		k, ok := rsaPublicKey(pub, bits)
		if !ok || len(sig) != bits/8 || len(digest) != sha256.Size {
			return false
		}
		if pss {
			return rsa.VerifyPSS(k, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256}) == nil
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	}
}

// independentVerifiers verify a signature of a whole message: the pure
// schemes directly, the digest schemes over the message's hash.
var independentVerifiers = func() map[provider.Algorithm]func(pub, msg, sig []byte) bool {
	m := map[provider.Algorithm]func(pub, msg, sig []byte) bool{
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
	for a, d := range digestVerifiers {
		m[a] = func(pub, msg, sig []byte) bool { return d.verify(pub, digestOf(d.hash, msg), sig) }
	}
	return m
}()

// digestOf returns the hash of msg under h (SHA-256, SHA-384 or SHA-512).
func digestOf(h crypto.Hash, msg []byte) []byte {
	var f hash.Hash
	switch h {
	case crypto.SHA256:
		f = sha256.New()
	case crypto.SHA384:
		f = sha512.New384()
	case crypto.SHA512:
		f = sha512.New()
	default:
		return nil
	}
	_, _ = f.Write(msg) // hash.Hash.Write never fails
	return f.Sum(nil)
}

// independentPublicKey reports whether pub parses as a public key of a
// with an implementation called directly: a point on the curve (ECDSA), a
// modulus of the algorithm's size with exponent 65537 (RSA), the size
// (EdDSA, ML-DSA). ok is false when the suite has no parser for a.
func independentPublicKey(a provider.Algorithm, pub []byte) (valid, ok bool) {
	switch a {
	case provider.ECDSAP256, provider.ECDSAP384:
		curve := elliptic.P256()
		if a == provider.ECDSAP384 {
			curve = elliptic.P384()
		}
		_, err := ecdsa.ParseUncompressedPublicKey(curve, pub)
		return err == nil, true
	case provider.RSA2048PSS, provider.RSA2048PKCS1:
		_, v := rsaPublicKey(pub, 2048)
		return v, true
	case provider.RSA3072PSS, provider.RSA3072PKCS1:
		_, v := rsaPublicKey(pub, 3072)
		return v, true
	case provider.RSA4096PSS, provider.RSA4096PKCS1:
		_, v := rsaPublicKey(pub, 4096)
		return v, true
	case provider.Ed25519, provider.Ed25519ph:
		return len(pub) == ed25519.PublicKeySize, true
	case provider.Ed448:
		return len(pub) == ed448.PublicKeySize, true
	case provider.MLDSA44:
		var pk mldsa44.PublicKey
		return len(pub) == mldsa44.PublicKeySize && pk.UnmarshalBinary(pub) == nil, true
	case provider.MLDSA65:
		var pk mldsa65.PublicKey
		return len(pub) == mldsa65.PublicKeySize && pk.UnmarshalBinary(pub) == nil, true
	case provider.MLDSA87:
		var pk mldsa87.PublicKey
		return len(pub) == mldsa87.PublicKeySize && pk.UnmarshalBinary(pub) == nil, true
	}
	return false, false
}

// deterministicSchemes sign the same message with the same key to the
// same bytes whatever the provider: EdDSA (RFC 8032) and RSASSA-PKCS1-v1_5
// have no randomness to choose.
var deterministicSchemes = map[provider.Algorithm]bool{
	provider.Ed25519: true, provider.Ed448: true, provider.Ed25519ph: true,
	provider.RSA2048PKCS1: true, provider.RSA3072PKCS1: true, provider.RSA4096PKCS1: true,
}

// macHashes are the hashes of the HMAC algorithms, for the independent
// tag computation (crypto/hmac).
var macHashes = map[provider.Algorithm]func() hash.Hash{
	provider.HMACSHA256: sha256.New,
	provider.HMACSHA384: sha512.New384,
	provider.HMACSHA512: sha512.New,
}

// independentTag returns HMAC(key, msg) for a MAC algorithm, computed
// with crypto/hmac, or nil when the suite does not know a.
func independentTag(a provider.Algorithm, key, msg []byte) []byte {
	h, ok := macHashes[a]
	if !ok {
		return nil
	}
	m := hmac.New(h, key)
	_, _ = m.Write(msg) // hash.Hash.Write never fails
	return m.Sum(nil)
}

// independentAEAD returns the AEAD of a keyed with key, from x/crypto or
// crypto/aes directly; ok is false when the suite does not know a or the
// key does not fit.
func independentAEAD(a provider.Algorithm, key []byte) (aead cipher.AEAD, ok bool) {
	var err error
	switch a {
	case provider.XChaCha20Poly1305:
		aead, err = chacha20poly1305.NewX(key)
	case provider.ChaCha20Poly1305:
		aead, err = chacha20poly1305.New(key)
	case provider.AES256GCM:
		if len(key) != 32 {
			return nil, false
		}
		var b cipher.Block
		if b, err = aes.NewCipher(key); err == nil {
			aead, err = cipher.NewGCM(b)
		}
	default:
		return nil, false
	}
	return aead, err == nil
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

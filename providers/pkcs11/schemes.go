package pkcs11

import (
	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// family is how the token makes and uses the keys of a group of
// algorithms.
type family uint8

const (
	_          family = iota
	famEdwards        // CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA
	famEC             // CKM_EC_KEY_PAIR_GEN, CKM_ECDSA over a host-side digest
	famRSA            // CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS_PSS or CKM_RSA_PKCS over a host-side digest
	famAES            // CKM_AES_KEY_GEN, CKM_AES_GCM
	famHMAC           // CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA*_HMAC
)

// scheme is what the provider needs to know of one algorithm to make and
// use its keys in a token.
type scheme struct {
	fam family
	// curve is CKA_EC_PARAMS (Edwards and EC); size is the public key size
	// of an Edwards key, the coordinate (and scalar) size of an EC key,
	// the key and tag size of an HMAC key.
	curve []byte
	size  int
	// eddsa is the CKM_EDDSA parameter: none for pure Ed25519,
	// CK_EDDSA_PARAMS for Ed448 (which PKCS#11 3.0 requires) and
	// Ed25519ph (phFlag set).
	eddsa []byte
	// bits is an RSA modulus size; pss selects RSASSA-PSS, else
	// RSASSA-PKCS1-v1_5.
	bits int
	pss  bool
	// mac is the HMAC mechanism.
	mac uint
}

// schemeOf returns the scheme of a, and false for an algorithm the
// provider cannot offer with any token (ML-DSA, ChaCha20-Poly1305).
func schemeOf(a provider.Algorithm) (scheme, bool) {
	switch a {
	case provider.Ed25519:
		return scheme{fam: famEdwards, curve: ed25519Params, size: 32}, true
	case provider.Ed25519ph:
		return scheme{fam: famEdwards, curve: ed25519Params, size: 32, eddsa: eddsaParams(true)}, true
	case provider.Ed448:
		return scheme{fam: famEdwards, curve: ed448Params, size: 57, eddsa: eddsaParams(false)}, true
	case provider.ECDSAP256:
		return scheme{fam: famEC, curve: p256Params, size: 32}, true
	case provider.ECDSAP384:
		return scheme{fam: famEC, curve: p384Params, size: 48}, true
	case provider.RSA2048PSS:
		return scheme{fam: famRSA, bits: 2048, pss: true}, true
	case provider.RSA3072PSS:
		return scheme{fam: famRSA, bits: 3072, pss: true}, true
	case provider.RSA4096PSS:
		return scheme{fam: famRSA, bits: 4096, pss: true}, true
	case provider.RSA2048PKCS1:
		return scheme{fam: famRSA, bits: 2048}, true
	case provider.RSA3072PKCS1:
		return scheme{fam: famRSA, bits: 3072}, true
	case provider.RSA4096PKCS1:
		return scheme{fam: famRSA, bits: 4096}, true
	case provider.AES256GCM:
		return scheme{fam: famAES}, true
	case provider.HMACSHA256:
		return scheme{fam: famHMAC, mac: p11.CKM_SHA256_HMAC, size: 32}, true
	case provider.HMACSHA384:
		return scheme{fam: famHMAC, mac: p11.CKM_SHA384_HMAC, size: 48}, true
	case provider.HMACSHA512:
		return scheme{fam: famHMAC, mac: p11.CKM_SHA512_HMAC, size: 64}, true
	}
	return scheme{}, false
}

// pair reports whether the scheme's keys are key pairs.
func (s scheme) pair() bool { return s.fam == famEdwards || s.fam == famEC || s.fam == famRSA }

// slow reports whether generating a key of the scheme takes long enough
// (RSA: up to seconds on SoftHSM2 for 4096 bits) to be made outside the
// objects lock (see stage).
func (s scheme) slow() bool { return s.fam == famRSA }

// class is the class of the object operations use: the private key of a
// pair, else the secret key.
func (s scheme) class() uint {
	if s.pair() {
		return p11.CKO_PRIVATE_KEY
	}
	return p11.CKO_SECRET_KEY
}

package keyfmt

import (
	"cmp"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"slices"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// JWK is a public JSON Web Key (RFC 7517) of one key version: an OKP key
// (RFC 8037: crv and x), an EC key (RFC 7518 section 6.2: crv, x and y) or
// an RSA key (n and e). Use is "sig" for a signing key, "enc" for an HPKE
// key (whose Alg is empty: no JOSE HPKE algorithm is registered yet).
// Kid is the key's RFC 7638
// SHA-256 thumbprint (Thumbprint): it names the key material, so a
// verifier can recompute it, it differs between versions, and a
// published key set does not show the key's keystored name.
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// JWKS is a JSON Web Key Set (RFC 7517 section 5).
type JWKS struct {
	Keys []JWK `json:"keys"`
}

var b64 = base64.RawURLEncoding

// NewJWK returns the JWK of pub: OKP Ed25519 or Ed448 with alg "EdDSA", EC
// P-256 "ES256" or P-384 "ES384", RSA "PS256" (a PSS key) or "RS256" (a
// PKCS #1 v1.5 key). JWS signatures (RFC 7515) are ECDSA's r‖s: convert
// keystored's DER with client.ECDSASignatureRaw. An HPKE key's JWK is OKP
// X25519 or EC P-256 with use "enc" and no alg; the hybrid has none
// (ErrNotSupported).
func NewJWK(pub client.PublicKey) (JWK, error) {
	var j JWK
	use := "sig"
	switch pub.Algorithm {
	case client.Ed25519:
		j = JWK{Kty: "OKP", Alg: "EdDSA", Crv: "Ed25519"}
	case client.Ed448:
		j = JWK{Kty: "OKP", Alg: "EdDSA", Crv: "Ed448"}
	case client.ECDSAP256:
		j = JWK{Kty: "EC", Alg: "ES256", Crv: "P-256"}
	case client.ECDSAP384:
		j = JWK{Kty: "EC", Alg: "ES384", Crv: "P-384"}
	case client.RSA2048PSS, client.RSA3072PSS, client.RSA4096PSS:
		j = JWK{Kty: "RSA", Alg: "PS256"}
	case client.RSA2048PKCS1, client.RSA3072PKCS1, client.RSA4096PKCS1:
		j = JWK{Kty: "RSA", Alg: "RS256"}
	case client.HPKEX25519:
		j, use = JWK{Kty: "OKP", Crv: "X25519"}, "enc"
	case client.HPKEP256:
		j, use = JWK{Kty: "EC", Crv: "P-256"}, "enc"
	case client.HPKEMLKEM768X25519:
		return JWK{}, notSupported(pub, "the jwk format", rawOnly)
	case client.Ed25519ph:
		return JWK{}, notSupported(pub, "the jwk format", "JOSE's EdDSA is pure Ed25519 and it has no Ed25519ph algorithm; use an ed25519 key")
	default:
		return JWK{}, notSupported(pub, "the jwk format", "JOSE has no registered algorithm for it")
	}
	k, err := pub.CryptoPublicKey()
	if err != nil {
		return JWK{}, err
	}
	j.Use = use
	switch k := k.(type) {
	case *ecdh.PublicKey: // an HPKE key
		if k.Curve() == ecdh.P256() { // the SEC 1 uncompressed point
			j.X, j.Y = b64.EncodeToString(pub.Raw[1:33]), b64.EncodeToString(pub.Raw[33:])
		} else {
			j.X = b64.EncodeToString(pub.Raw)
		}
	case *ecdsa.PublicKey:
		// RFC 7518 6.2.1.2: each coordinate is the full size of the curve.
		n := (k.Curve.Params().BitSize + 7) / 8
		j.X, j.Y = b64.EncodeToString(pub.Raw[1:1+n]), b64.EncodeToString(pub.Raw[1+n:])
	case *rsa.PublicKey:
		j.N, j.E = b64.EncodeToString(k.N.Bytes()), b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())
	default: // OKP: the raw key
		j.X = b64.EncodeToString(pub.Raw)
	}
	j.Kid = thumbprint(j)
	return j, nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint of pub: the base64url
// (unpadded) SHA-256 of its required members in lexicographic order. It
// is the Kid of pub's JWK.
func Thumbprint(pub client.PublicKey) (string, error) {
	j, err := NewJWK(pub)
	if err != nil {
		return "", err
	}
	return j.Kid, nil
}

// thumbprint computes the RFC 7638 thumbprint of j's key members. Every
// value is a fixed name or base64url, so none needs JSON escaping.
func thumbprint(j JWK) string {
	var members string
	switch j.Kty {
	case "OKP": // RFC 8037 section 2
		members = `{"crv":"` + j.Crv + `","kty":"OKP","x":"` + j.X + `"}`
	case "EC":
		members = `{"crv":"` + j.Crv + `","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	default: // RSA
		members = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	}
	sum := sha256.Sum256([]byte(members))
	return b64.EncodeToString(sum[:])
}

// NewJWKS returns the key set of key's active versions, the primary one
// first, then the retired ones, newest first: what a verifier of tokens
// signed before and after a rotate needs. Versions below the key's
// MinDecryptionVersion are left out (the daemon no longer verifies with
// them either), as are revoked and destroyed ones. An HPKE key's set is
// the same (senders encrypt to the first, the primary version). A key
// that is not active gives an error wrapping client.ErrKeyRevoked; a key
// without a public key (decrypt, mac) client.ErrPermission; an algorithm
// without a JWK client.ErrNotSupported.
func NewJWKS(info client.KeyInfo) (JWKS, error) {
	if !slices.Contains(info.Uses, "sign") && !slices.Contains(info.Uses, "asymmetric-decrypt") {
		return JWKS{}, &provider.Error{Code: provider.EPERM, Op: "pubkey", Key: info.ID, Msg: "not a signing or asymmetric-decrypt key (" + string(info.Algorithm) + "): it has no public key"}
	}
	suite, _ := client.HPKESuiteOf(info.Algorithm) // zero for a signing key
	if info.State != client.KeyActive {
		return JWKS{}, &provider.Error{Code: provider.EKEYREVOKED, Op: "pubkey", Key: info.ID, Msg: "the key is " + info.State.String() + ": no version verifies"}
	}
	versions := slices.Clone(info.Versions)
	slices.SortFunc(versions, func(a, b client.KeyVersion) int { return cmp.Compare(b.Version, a.Version) })
	set := JWKS{Keys: []JWK{}}
	for _, v := range versions {
		if v.State != client.VersionPrimary && v.State != client.VersionRetired || v.Version < info.Policy.MinDecryptionVersion {
			continue
		}
		j, err := NewJWK(client.PublicKey{Key: info.ID, Version: v.Version, Algorithm: info.Algorithm, Raw: v.PublicKey, Suite: suite})
		if err != nil {
			return JWKS{}, err
		}
		set.Keys = append(set.Keys, j)
	}
	if len(set.Keys) == 0 {
		return JWKS{}, protocolError(info.ID, "an active key without a primary version")
	}
	return set, nil
}

func protocolError(key, what string) error {
	return &provider.Error{Code: provider.EIO, Op: "pubkey", Key: key, Msg: "keystored protocol error: " + what}
}

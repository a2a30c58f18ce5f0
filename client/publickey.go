package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"strconv"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"

	"github.com/nexus-os/keystored/core/provider"
)

// scheme is how a signing algorithm signs, as the client needs to know it:
// what Signer accepts and what Public returns. The daemon is the authority
// on the algorithms; this table only decodes what it sends.
type scheme uint8

const (
	schemeEd25519   scheme = iota + 1 // pure Ed25519: whole messages
	schemeEd25519ph                   // Ed25519ph: SHA-512 digests (or messages hashed in the daemon)
	schemeEd448                       // pure Ed448: whole messages
	schemeMLDSA                       // ML-DSA: whole messages
	schemeECDSA                       // ECDSA: digests of hash
	schemePSS                         // RSASSA-PSS: SHA-256 digests, salt 32
	schemePKCS1                       // RSASSA-PKCS1-v1_5: SHA-256 digests
)

// sigAlgorithm describes one signing algorithm.
type sigAlgorithm struct {
	scheme scheme
	// hash is the hash of the digests the algorithm signs (0: whole
	// messages only).
	hash crypto.Hash
	// curve of an ECDSA key; bits of an RSA modulus.
	curve elliptic.Curve
	bits  int
}

var sigAlgorithms = map[Algorithm]sigAlgorithm{
	Ed25519:      {scheme: schemeEd25519},
	Ed448:        {scheme: schemeEd448},
	MLDSA44:      {scheme: schemeMLDSA},
	MLDSA65:      {scheme: schemeMLDSA},
	MLDSA87:      {scheme: schemeMLDSA},
	ECDSAP256:    {scheme: schemeECDSA, hash: crypto.SHA256, curve: elliptic.P256()},
	ECDSAP384:    {scheme: schemeECDSA, hash: crypto.SHA384, curve: elliptic.P384()},
	RSA2048PSS:   {scheme: schemePSS, hash: crypto.SHA256, bits: 2048},
	RSA3072PSS:   {scheme: schemePSS, hash: crypto.SHA256, bits: 3072},
	RSA4096PSS:   {scheme: schemePSS, hash: crypto.SHA256, bits: 4096},
	RSA2048PKCS1: {scheme: schemePKCS1, hash: crypto.SHA256, bits: 2048},
	RSA3072PKCS1: {scheme: schemePKCS1, hash: crypto.SHA256, bits: 3072},
	RSA4096PKCS1: {scheme: schemePKCS1, hash: crypto.SHA256, bits: 4096},
	Ed25519ph:    {scheme: schemeEd25519ph, hash: crypto.SHA512},
}

// PSSSaltLength is the salt length of keystored's RSASSA-PSS signatures:
// the size of their SHA-256 hash.
const PSSSaltLength = 32

// DigestHash returns the hash whose digests keys of alg sign (SignDigest,
// Signer with a crypto.Hash): SHA-256 for ecdsa-p256-sha256 and every
// RSA algorithm, SHA-384 for ecdsa-p384-sha384, SHA-512 for ed25519ph;
// and 0 for algorithms that sign whole messages only (ed25519, ed448,
// ML-DSA) or do not sign.
func DigestHash(alg Algorithm) crypto.Hash { return sigAlgorithms[alg].hash }

// CryptoPublicKey decodes the raw public key into the type the Go
// ecosystem uses for it: ed25519.PublicKey (ed25519 and ed25519ph),
// *ecdsa.PublicKey, *rsa.PublicKey, circl's ed448.PublicKey and
// *mldsa44/65/87.PublicKey, and *ecdh.PublicKey for the DHKEM HPKE keys
// (X25519, P-256). A raw key that is not a valid key of its algorithm
// gives an error wrapping ErrIO; an algorithm the client does not know,
// or the hybrid HPKE key (whose only Go type is crypto/hpke's:
// HPKEPublicKey), ErrNotSupported.
func (p PublicKey) CryptoPublicKey() (crypto.PublicKey, error) {
	if _, isHPKE := hpkeSuites[p.Algorithm]; isHPKE {
		if !checkSuite(p.Algorithm, p.Suite) {
			return nil, &provider.Error{Code: provider.EIO, Op: "public-key", Key: p.Ref(), Msg: "keystored protocol error: " + string(p.Algorithm) + " with HPKE suite " + p.Suite.String()}
		}
		return p.hpkeCryptoPublicKey()
	}
	a, ok := sigAlgorithms[p.Algorithm]
	if !ok {
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "public-key", Key: p.Ref(), Msg: "no public key type for " + string(p.Algorithm)}
	}
	bad := func(why string) (crypto.PublicKey, error) {
		return nil, &provider.Error{Code: provider.EIO, Op: "public-key", Key: p.Ref(), Msg: "keystored protocol error: " + string(p.Algorithm) + " public key " + why}
	}
	raw := p.Raw
	switch a.scheme {
	case schemeEd25519, schemeEd25519ph:
		if len(raw) != ed25519.PublicKeySize {
			return bad("of " + strconv.Itoa(len(raw)) + " bytes")
		}
		return ed25519.PublicKey(append([]byte(nil), raw...)), nil
	case schemeEd448:
		if len(raw) != ed448.PublicKeySize {
			return bad("of " + strconv.Itoa(len(raw)) + " bytes")
		}
		return ed448.PublicKey(append([]byte(nil), raw...)), nil
	case schemeMLDSA:
		var pk interface{ UnmarshalBinary([]byte) error }
		switch p.Algorithm {
		case MLDSA44:
			pk = new(mldsa44.PublicKey)
		case MLDSA65:
			pk = new(mldsa65.PublicKey)
		default:
			pk = new(mldsa87.PublicKey)
		}
		if err := pk.UnmarshalBinary(raw); err != nil {
			return bad("of " + strconv.Itoa(len(raw)) + " bytes")
		}
		return pk, nil
	case schemeECDSA:
		pk, err := ecdsa.ParseUncompressedPublicKey(a.curve, raw)
		if err != nil {
			return bad("is not an uncompressed point on " + a.curve.Params().Name)
		}
		return pk, nil
	default: // RSA
		pk, err := x509.ParsePKCS1PublicKey(raw)
		if err != nil {
			return bad("is not a PKCS #1 RSAPublicKey")
		}
		if pk.N.BitLen() != a.bits {
			return bad("has a " + strconv.Itoa(pk.N.BitLen()) + "-bit modulus")
		}
		return pk, nil
	}
}

// TLSSignatureSchemes returns the TLS signature schemes a key of alg can
// make, for tls.Certificate.SupportedSignatureAlgorithms: crypto/tls
// otherwise offers a TLS 1.2 peer every ECDSA hash for any curve, and
// every RSA scheme for any RSA key, and a keystored key makes one.
//
//	ecdsa-p256-sha256   ECDSAWithP256AndSHA256
//	ecdsa-p384-sha384   ECDSAWithP384AndSHA384
//	rsa-*-pss-sha256    PSSWithSHA256 (TLS 1.2 and 1.3)
//	rsa-*-pkcs1-sha256  PKCS1WithSHA256 (TLS 1.2 only: TLS 1.3 signs with PSS)
//	ed25519             Ed25519
//
// The others have no TLS scheme in crypto/tls: nil.
func TLSSignatureSchemes(alg Algorithm) []tls.SignatureScheme {
	switch alg {
	case ECDSAP256:
		return []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}
	case ECDSAP384:
		return []tls.SignatureScheme{tls.ECDSAWithP384AndSHA384}
	case Ed25519:
		return []tls.SignatureScheme{tls.Ed25519}
	}
	switch sigAlgorithms[alg].scheme {
	case schemePSS:
		return []tls.SignatureScheme{tls.PSSWithSHA256}
	case schemePKCS1:
		return []tls.SignatureScheme{tls.PKCS1WithSHA256}
	}
	return nil
}

// ecdsaSize returns the size in bytes of r and s for an ECDSA algorithm.
func ecdsaSize(alg Algorithm) (int, error) {
	a := sigAlgorithms[alg]
	if a.scheme != schemeECDSA {
		return 0, provider.Errorf(provider.EINVAL, "%s is not an ECDSA algorithm", string(alg))
	}
	return (a.curve.Params().BitSize + 7) / 8, nil
}

// ecdsaSig is the ASN.1 Ecdsa-Sig-Value.
type ecdsaSig struct {
	R, S *big.Int
}

// ECDSASignatureRaw converts an ECDSA signature of alg from the ASN.1 DER
// keystored returns (what X.509, TLS, OpenSSL and WebAuthn assertions use)
// to the fixed-size r‖s form of JOSE (RFC 7518 section 3.4) and COSE
// (RFC 9053 section 2.1): r and s big-endian, each padded to the curve's
// size (64 bytes for P-256, 96 for P-384). A malformed signature (trailing
// bytes, r or s not in 1 .. 2^size-1) gives ErrBadMessage; a non-ECDSA
// algorithm ErrInvalid.
func ECDSASignatureRaw(alg Algorithm, der []byte) ([]byte, error) {
	n, err := ecdsaSize(alg)
	if err != nil {
		return nil, err
	}
	var sig ecdsaSig
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || !fits(sig.R, n) || !fits(sig.S, n) {
		return nil, provider.Errorf(provider.EBADMSG, "not an ASN.1 DER %s signature", string(alg))
	}
	out := make([]byte, 2*n)
	sig.R.FillBytes(out[:n])
	sig.S.FillBytes(out[n:])
	return out, nil
}

// ECDSASignatureDER converts an r‖s ECDSA signature of alg (JOSE, COSE)
// to ASN.1 DER, what Verify and the rest of keystored take. raw must be
// exactly twice the curve's size with r and s not 0 (ErrBadMessage
// otherwise).
func ECDSASignatureDER(alg Algorithm, raw []byte) ([]byte, error) {
	n, err := ecdsaSize(alg)
	if err != nil {
		return nil, err
	}
	if len(raw) != 2*n {
		return nil, provider.Errorf(provider.EBADMSG, "an r‖s %s signature is %d bytes, not %d", string(alg), 2*n, len(raw))
	}
	sig := ecdsaSig{R: new(big.Int).SetBytes(raw[:n]), S: new(big.Int).SetBytes(raw[n:])}
	if sig.R.Sign() == 0 || sig.S.Sign() == 0 {
		return nil, provider.Errorf(provider.EBADMSG, "an r‖s %s signature with r or s zero", string(alg))
	}
	der, err := asn1.Marshal(sig)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding a %s signature: %w", string(alg), err)
	}
	return der, nil
}

// fits reports whether x is in 1 .. 2^(8n)-1.
func fits(x *big.Int, n int) bool {
	return x != nil && x.Sign() > 0 && x.BitLen() <= 8*n
}

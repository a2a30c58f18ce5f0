package pkcs11

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"math/big"

	"github.com/nexus-os/keystored/core/provider"
)

// ecPoint returns the n-byte public key held in a CKA_EC_POINT value: an
// Edwards public key (32 bytes for Ed25519, 57 for Ed448) or a SEC 1
// uncompressed point (65 bytes for P-256, 97 for P-384). PKCS#11
// specifies the DER encoding of an OCTET STRING wrapping the bytes
// (04 len ‖ key; every size here has a one-byte length), which SoftHSM2
// returns; some tokens return the bytes bare, which is accepted too.
// Anything else is refused (EIO); the parser reads only within v's
// bounds. The caller checks the point itself (alg.Spec.CheckPublicKey).
func ecPoint(v []byte, n int) ([]byte, error) {
	switch {
	case len(v) == n:
		return append([]byte(nil), v...), nil
	case len(v) == 2+n && v[0] == 0x04 && int(v[1]) == n:
		return append([]byte(nil), v[2:]...), nil
	}
	return nil, provider.Errorf(provider.EIO, "token returned a %d-byte CKA_EC_POINT that is not a %d-byte public key", len(v), n)
}

// ecdsaSignature is the ASN.1 form of an ECDSA signature (RFC 5480,
// SEC 1 appendix C.8): ECDSA-Sig-Value.
type ecdsaSignature struct {
	R, S *big.Int
}

// ecdsaDER turns the signature CKM_ECDSA returns, r ‖ s of size bytes
// each (big-endian), into its ASN.1 DER encoding. A result of another
// length, or an r or s of zero, is refused (EIO).
func ecdsaDER(raw []byte, size int) ([]byte, error) {
	if len(raw) != 2*size {
		return nil, provider.Errorf(provider.EIO, "token returned a %d-byte ECDSA signature, not %d", len(raw), 2*size)
	}
	r := new(big.Int).SetBytes(raw[:size])
	s := new(big.Int).SetBytes(raw[size:])
	if r.Sign() == 0 || s.Sign() == 0 {
		return nil, provider.Errorf(provider.EIO, "token returned an ECDSA signature with a zero component")
	}
	der, err := asn1.Marshal(ecdsaSignature{R: r, S: s})
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding an ECDSA signature: %w", err)
	}
	return der, nil
}

// rsaPublicKey returns the PKCS#1 RSAPublicKey DER of the key whose
// CKA_MODULUS and CKA_PUBLIC_EXPONENT (big-endian) are modulus and
// exponent. The modulus must have bits bits and the exponent be 65537
// (EIO otherwise).
func rsaPublicKey(modulus, exponent []byte, bits int) ([]byte, error) {
	n := new(big.Int).SetBytes(modulus)
	if n.BitLen() != bits {
		return nil, provider.Errorf(provider.EIO, "token returned a %d-bit RSA modulus, not %d", n.BitLen(), bits)
	}
	e := new(big.Int).SetBytes(exponent)
	if !e.IsInt64() || e.Int64() != 65537 {
		return nil, provider.Errorf(provider.EIO, "token returned an RSA public exponent other than 65537")
	}
	return x509.MarshalPKCS1PublicKey(&rsa.PublicKey{N: n, E: 65537}), nil
}

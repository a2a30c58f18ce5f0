// Package keyfmt writes the public keys of keystored signing and
// asymmetric-decrypt (HPKE) keys in the formats other tools read:
// SubjectPublicKeyInfo (DER and PEM, for OpenSSL and X.509), OpenSSH
// authorized_keys lines, JSON Web Keys and key sets (JOSE) with RFC 7638
// thumbprints as key IDs, and for HPKE keys the raw key with its RFC 9180
// suite (HPKEKey, what any RFC 9180 sender needs).
//
// It works on client.PublicKey (Client.PublicKey, or a KeyVersion of
// Client.Get) and client.KeyInfo, and sends nothing to the daemon. It is a
// package of its own so that programs that only sign through package
// client do not link golang.org/x/crypto/ssh; keystorectl pubkey and the
// ssh agent use it.
//
// Which algorithm has which format:
//
//	algorithm            PEM  ssh                   JWK (kty, crv, alg)
//	ed25519              yes  ssh-ed25519           OKP Ed25519 EdDSA
//	ed25519ph            yes  -                     -
//	ed448                yes  -                     OKP Ed448 EdDSA
//	ecdsa-p256-sha256    yes  ecdsa-sha2-nistp256   EC P-256 ES256
//	ecdsa-p384-sha384    yes  ecdsa-sha2-nistp384   EC P-384 ES384
//	rsa-*-pss-sha256     yes  -                     RSA PS256
//	rsa-*-pkcs1-sha256   yes  ssh-rsa               RSA RS256
//	ml-dsa-44/65/87      yes  -                     -
//	hpke-x25519-*        yes  -                     OKP X25519 (use enc)
//	hpke-p256-*          yes  -                     EC P-256 (use enc)
//	hpke-mlkem768x25519  -    -                     -
//
// Every HPKE key also has HPKEKey (raw key and suite). An HPKE key's PEM
// and JWK carry the key only: the sender must also know the suite (the
// key's algorithm, or HPKEKey's IDs). Their JWK has no "alg": JOSE's HPKE
// algorithms (draft-ietf-jose-hpke-encrypt) are not registered yet. The
// hybrid MLKEM768-X25519 key has no standard SubjectPublicKeyInfo or JWK
// yet: its raw bytes (HPKEKey) are its only form.
//
// A key is offered only in a format whose verifiers check its signatures:
// an ed25519ph signature is not a pure Ed25519 one (ssh-ed25519, JOSE
// EdDSA), ssh's RSA signatures are PKCS #1 v1.5, and JOSE has no
// registered ML-DSA algorithm yet. Other cases give an error wrapping
// client.ErrNotSupported.
package keyfmt

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// Object identifiers of the SubjectPublicKeyInfo algorithms that
// crypto/x509 does not know: RFC 8410's Ed448 (1.3.101.113) and the NIST /
// IETF LAMPS ML-DSA profile (ML-DSA-44/65/87 2.16.840.1.101.3.4.3.17/18/19),
// all without parameters; the BIT STRING holds the raw public key.
var spkiOIDs = map[client.Algorithm]asn1.ObjectIdentifier{
	client.Ed448:   {1, 3, 101, 113},
	client.MLDSA44: {2, 16, 840, 1, 101, 3, 4, 3, 17},
	client.MLDSA65: {2, 16, 840, 1, 101, 3, 4, 3, 18},
	client.MLDSA87: {2, 16, 840, 1, 101, 3, 4, 3, 19},
}

// spki is the ASN.1 SubjectPublicKeyInfo.
type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// SPKI returns the DER SubjectPublicKeyInfo of pub: as crypto/x509 writes
// it for Ed25519 (ed25519ph keys are Ed25519 keys: RFC 8410's OID),
// ECDSA (id-ecPublicKey with the named curve) and RSA (rsaEncryption, for
// PSS keys too, as OpenSSL and X.509 certificates use); with RFC 8410's
// OID for Ed448 and the ML-DSA OIDs of FIPS 204's profile.
//
// HPKE keys: X25519 as RFC 8410's id-X25519, P-256 as id-ecPublicKey
// with the named curve; the hybrid has none (ErrNotSupported).
func SPKI(pub client.PublicKey) ([]byte, error) {
	if pub.Algorithm == client.HPKEMLKEM768X25519 {
		return nil, notSupported(pub, "a SubjectPublicKeyInfo (PEM)", rawOnly)
	}
	k, err := pub.CryptoPublicKey()
	if err != nil {
		return nil, err
	}
	if oid, ok := spkiOIDs[pub.Algorithm]; ok {
		der, err := asn1.Marshal(spki{
			Algorithm: pkix.AlgorithmIdentifier{Algorithm: oid},
			PublicKey: asn1.BitString{Bytes: pub.Raw, BitLength: 8 * len(pub.Raw)},
		})
		if err != nil {
			return nil, provider.Errorf(provider.EIO, "encoding the public key of %s: %w", pub.Ref(), err)
		}
		return der, nil
	}
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding the public key of %s: %w", pub.Ref(), err)
	}
	return der, nil
}

// PEM returns the SubjectPublicKeyInfo as a "PUBLIC KEY" PEM block, what
// openssl pkey -pubin reads.
func PEM(pub client.PublicKey) ([]byte, error) {
	der, err := SPKI(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// SSHPublicKey returns pub as an ssh public key: ssh-ed25519,
// ecdsa-sha2-nistp256/384 or ssh-rsa (for rsa-*-pkcs1-sha256 keys, which
// sign "rsa-sha2-256").
func SSHPublicKey(pub client.PublicKey) (ssh.PublicKey, error) {
	switch pub.Algorithm {
	case client.Ed25519, client.ECDSAP256, client.ECDSAP384, client.RSA2048PKCS1, client.RSA3072PKCS1, client.RSA4096PKCS1:
	default:
		why := "OpenSSH has no key type for it"
		switch pub.Algorithm {
		case client.Ed25519ph:
			why = "ssh-ed25519 signatures are pure Ed25519; use an ed25519 key"
		case client.RSA2048PSS, client.RSA3072PSS, client.RSA4096PSS:
			why = "ssh's RSA signatures are PKCS #1 v1.5; use an rsa-*-pkcs1-sha256 key"
		}
		return nil, notSupported(pub, "the ssh format", why)
	}
	k, err := pub.CryptoPublicKey()
	if err != nil {
		return nil, err
	}
	sk, err := ssh.NewPublicKey(k)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding the public key of %s: %w", pub.Ref(), err)
	}
	return sk, nil
}

// AuthorizedKey returns an authorized_keys line for pub with KEY@N as its
// comment, ending in a newline: "ssh-ed25519 AAAA... app/ssh/laptop@1".
func AuthorizedKey(pub client.PublicKey) ([]byte, error) {
	sk, err := SSHPublicKey(pub)
	if err != nil {
		return nil, err
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(sk)), "\n")
	return []byte(line + " " + pub.Ref() + "\n"), nil
}

// rawOnly says why the hybrid HPKE key has one form.
const rawOnly = "MLKEM768-X25519 has no standard SubjectPublicKeyInfo or JWK yet; export it raw, or as the hpke JSON with its suite (HPKEKey)"

// notSupported is the error for a format an algorithm does not have.
func notSupported(pub client.PublicKey, format, why string) error {
	return &provider.Error{Code: provider.ENOTSUP, Op: "pubkey", Key: pub.Ref(), Msg: format + " is not offered for " + string(pub.Algorithm) + " keys: " + why}
}

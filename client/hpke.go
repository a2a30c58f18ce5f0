package client

import (
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"
	"strconv"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// HPKESuite is an RFC 9180 cipher suite: the KEM, KDF and AEAD
// identifiers of the IANA HPKE registry. The zero HPKESuite is no suite
// (a key that is not an HPKE key).
type HPKESuite struct {
	KEM, KDF, AEAD uint16
}

// The HPKE identifiers of keystored's suites (RFC 9180 section 7;
// MLKEM768-X25519, also called X-Wing, from draft-ietf-hpke-pq).
const (
	KEMP256HKDFSHA256    uint16 = 0x0010
	KEMX25519HKDFSHA256  uint16 = 0x0020
	KEMMLKEM768X25519    uint16 = 0x647a
	KDFHKDFSHA256        uint16 = 0x0001
	AEADAES128GCM        uint16 = 0x0001
	AEADAES256GCM        uint16 = 0x0002
	AEADChaCha20Poly1305 uint16 = 0x0003
)

// hpkeSuites are the suites of the HPKE algorithms.
var hpkeSuites = map[Algorithm]HPKESuite{
	HPKEX25519:         {KEMX25519HKDFSHA256, KDFHKDFSHA256, AEADChaCha20Poly1305},
	HPKEP256:           {KEMP256HKDFSHA256, KDFHKDFSHA256, AEADAES128GCM},
	HPKEMLKEM768X25519: {KEMMLKEM768X25519, KDFHKDFSHA256, AEADAES256GCM},
}

// HPKESuiteOf returns the suite of an HPKE algorithm, and false for any
// other algorithm.
func HPKESuiteOf(alg Algorithm) (HPKESuite, bool) {
	s, ok := hpkeSuites[alg]
	return s, ok
}

// IsZero reports whether s is the zero suite.
func (s HPKESuite) IsZero() bool { return s == HPKESuite{} }

// EncSize returns the size of the KEM's encapsulated key (enc): 32 bytes
// for DHKEM(X25519), 65 for DHKEM(P-256), 1120 for MLKEM768-X25519; 0 for
// a KEM the client does not know.
func (s HPKESuite) EncSize() int {
	switch s.KEM {
	case KEMX25519HKDFSHA256:
		return 32
	case KEMP256HKDFSHA256:
		return 65
	case KEMMLKEM768X25519:
		return 1120
	}
	return 0
}

// String returns the identifiers as "KEM 0x0020, KDF 0x0001, AEAD 0x0003".
func (s HPKESuite) String() string {
	return fmt.Sprintf("KEM %#04x, KDF %#04x, AEAD %#04x", s.KEM, s.KDF, s.AEAD)
}

// parts returns Go's crypto/hpke KEM, KDF and AEAD of the suite, or
// ErrNotSupported for an identifier crypto/hpke does not have.
func (s HPKESuite) parts() (hpke.KEM, hpke.KDF, hpke.AEAD, error) {
	kem, err := hpke.NewKEM(s.KEM)
	if err != nil {
		return nil, nil, nil, provider.Errorf(provider.ENOTSUP, "HPKE suite %v: unknown KEM", s)
	}
	kdf, err := hpke.NewKDF(s.KDF)
	if err != nil {
		return nil, nil, nil, provider.Errorf(provider.ENOTSUP, "HPKE suite %v: unknown KDF", s)
	}
	aead, err := hpke.NewAEAD(s.AEAD)
	if err != nil {
		return nil, nil, nil, provider.Errorf(provider.ENOTSUP, "HPKE suite %v: unknown AEAD", s)
	}
	return kem, kdf, aead, nil
}

// checkSuite checks a suite a daemon sent for alg: an HPKE algorithm the
// client knows must come with its own suite; any other algorithm with
// none, unless the client does not know it.
func checkSuite(alg Algorithm, got HPKESuite) bool {
	want, known := hpkeSuites[alg]
	switch {
	case known:
		return got == want
	case alg == "":
		return false
	}
	// An algorithm this client does not know (a newer daemon's) may carry
	// a suite, but a whole one; a known algorithm of another use none.
	complete := got.KEM != 0 && got.KDF != 0 && got.AEAD != 0
	return got.IsZero() || complete && AlgorithmUse(alg) == 0
}

// HPKEPublicKey returns the public key as Go's crypto/hpke decodes it,
// with its suite's KEM. A key without a suite (not an asymmetric-decrypt
// key) gives an error wrapping ErrPermission; a suite crypto/hpke does
// not have ErrNotSupported; a raw key that does not decode ErrIO.
func (p PublicKey) HPKEPublicKey() (hpke.PublicKey, error) {
	if p.Suite.IsZero() {
		return nil, &provider.Error{Code: provider.EPERM, Op: "hpke-seal", Key: p.Ref(), Msg: string(p.Algorithm) + " is not an HPKE key"}
	}
	kem, _, _, err := p.Suite.parts()
	if err != nil {
		return nil, err
	}
	pk, err := kem.NewPublicKey(p.Raw)
	if err != nil {
		return nil, &provider.Error{Code: provider.EIO, Op: "hpke-seal", Key: p.Ref(), Msg: "keystored protocol error: " + string(p.Algorithm) + " public key of " + strconv.Itoa(len(p.Raw)) + " bytes does not decode"}
	}
	return pk, nil
}

// hpkeCryptoPublicKey is CryptoPublicKey of an HPKE key: the DHKEM
// suites' *ecdh.PublicKey (X25519 or P-256), which crypto/x509 encodes as
// SubjectPublicKeyInfo; the hybrid has no such type (ErrNotSupported:
// use HPKEPublicKey or Raw).
func (p PublicKey) hpkeCryptoPublicKey() (any, error) {
	var curve ecdh.Curve
	switch p.Suite.KEM {
	case KEMX25519HKDFSHA256:
		curve = ecdh.X25519()
	case KEMP256HKDFSHA256:
		curve = ecdh.P256()
	default:
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "public-key", Key: p.Ref(), Msg: string(p.Algorithm) + " has no public key type besides crypto/hpke's (HPKEPublicKey) and the raw bytes"}
	}
	k, err := curve.NewPublicKey(p.Raw)
	if err != nil {
		return nil, &provider.Error{Code: provider.EIO, Op: "public-key", Key: p.Ref(), Msg: "keystored protocol error: " + string(p.Algorithm) + " public key of " + strconv.Itoa(len(p.Raw)) + " bytes does not decode"}
	}
	return k, nil
}

// hpkeTagSize is the tag of every HPKE AEAD keystored has.
const hpkeTagSize = 16

// MaxHPKEPlaintext is the largest plaintext HPKESeal encrypts: the
// daemon's bound on a Decrypt ciphertext less the AEAD's 16-byte tag.
const MaxHPKEPlaintext = provider.MaxHPKECiphertext - hpkeTagSize

// HPKESeal encrypts plaintext (at most MaxHPKEPlaintext bytes) to pub, the
// public key of a version of an asymmetric-decrypt key (PublicKey), in
// HPKE base mode (RFC 9180) with Go's crypto/hpke: info (at most 4 KiB)
// and aad (at most 64 KiB) must be given again to Decrypt. It returns the
// encapsulated key enc and the ciphertext; keystorectl hpke-encrypt
// writes them as enc ‖ ciphertext. Nothing is sent to the daemon: any
// sender holding the public key can do the same with any RFC 9180
// implementation. Inputs over a bound give ErrTooLarge; a key that is not
// an HPKE key ErrPermission.
func HPKESeal(pub PublicKey, info, aad, plaintext []byte) (enc, ciphertext []byte, err error) {
	switch {
	case len(info) > provider.MaxHPKEInfo:
		return nil, nil, provider.Errorf(provider.EMSGSIZE, "HPKE info over %d bytes", provider.MaxHPKEInfo)
	case len(aad) > provider.MaxAAD:
		return nil, nil, provider.Errorf(provider.EMSGSIZE, "AAD over %d bytes", provider.MaxAAD)
	case len(plaintext) > MaxHPKEPlaintext:
		return nil, nil, provider.Errorf(provider.EMSGSIZE, "HPKE plaintext over %d bytes (the daemon decrypts at most that)", MaxHPKEPlaintext)
	}
	pk, err := pub.HPKEPublicKey()
	if err != nil {
		return nil, nil, err
	}
	return hpkeSeal(pk, pub.Suite, info, aad, plaintext)
}

// hpkeSeal seals one base-mode message to pk.
func hpkeSeal(pk hpke.PublicKey, suite HPKESuite, info, aad, plaintext []byte) (enc, ciphertext []byte, err error) {
	_, kdf, aead, err := suite.parts()
	if err != nil {
		return nil, nil, err
	}
	enc, s, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		return nil, nil, provider.Errorf(provider.EIO, "HPKE encapsulation failed: %v", err)
	}
	ciphertext, err = s.Seal(aad, plaintext)
	if err != nil {
		return nil, nil, provider.Errorf(provider.EIO, "HPKE seal failed: %v", err)
	}
	return enc, ciphertext, nil
}

// HPKEMessage is an HPKE (RFC 9180) base-mode message a sender encrypted
// to the public key of a version of an asymmetric-decrypt key: the
// encapsulated key, the AEAD ciphertext (plaintext and 16-byte tag), and
// the sender's info and aad, exactly as the sender used them.
type HPKEMessage struct {
	Enc, Ciphertext, Info, AAD []byte
}

// Decrypted is a plaintext Decrypt opened and the key version that opened
// it.
type Decrypted struct {
	// Key is the full key ID.
	Key       string
	Version   uint32
	Plaintext []byte
}

// Decrypt opens msg inside the daemon with version of key, an
// asymmetric-decrypt key: the version whose public key the sender
// encrypted to (0 means the primary version; retired versions decrypt
// too). A message that does not open (tampered enc, ciphertext, info or
// aad, another key's message) gives an error wrapping ErrBadMessage and no
// plaintext; a revoked version ErrKeyRevoked; a key of another use
// ErrPermission.
func (c *Client) Decrypt(ctx context.Context, key string, version uint32, msg HPKEMessage) (Decrypted, error) {
	resp, _, err := call(ctx, c, c.keys.Decrypt, &keystorev1.DecryptRequest{
		Key: key, Version: int64(version), Enc: msg.Enc, Ciphertext: msg.Ciphertext, Info: msg.Info, Aad: msg.AAD,
	})
	if err != nil {
		return Decrypted{}, err
	}
	switch {
	case resp.GetVersion() == 0:
		clear(resp.GetPlaintext())
		return Decrypted{}, protocolError("decrypt", key, "version 0")
	case version != 0 && resp.GetVersion() != version:
		clear(resp.GetPlaintext())
		return Decrypted{}, protocolError("decrypt", key, "decrypted with version "+strconv.FormatUint(uint64(resp.GetVersion()), 10)+", not the one asked for")
	case len(resp.GetPlaintext()) != len(msg.Ciphertext)-hpkeTagSize:
		clear(resp.GetPlaintext())
		return Decrypted{}, protocolError("decrypt", key, "a plaintext of another size than the ciphertext's")
	}
	pt := resp.GetPlaintext()
	if pt == nil {
		pt = []byte{}
	}
	return Decrypted{Key: resp.GetKey(), Version: resp.GetVersion(), Plaintext: pt}, nil
}

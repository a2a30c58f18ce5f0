package alg

import (
	"crypto/hpke"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// HPKE suite identifiers (RFC 9180 section 7; MLKEM768-X25519 from
// draft-ietf-hpke-pq, also called X-Wing).
const (
	KEMP256HKDFSHA256    uint16 = 0x0010
	KEMX25519HKDFSHA256  uint16 = 0x0020
	KEMMLKEM768X25519    uint16 = 0x647a
	KDFHKDFSHA256        uint16 = 0x0001
	AEADAES128GCM        uint16 = 0x0001
	AEADAES256GCM        uint16 = 0x0002
	AEADChaCha20Poly1305 uint16 = 0x0003
)

// hpkeSpec is the spec of one HPKE suite (base mode) from Go's crypto/hpke.
// The private material is the KEM's serialized private key
// (SerializePrivateKey of RFC 9180: 32 bytes for each suite here, the
// X-Wing seed for the hybrid); a new key is DeriveKeyPair of 32 random
// bytes, so a deterministic provider gets reproducible keys.
func hpkeSpec(name provider.Algorithm, id uint8, kemID, kdfID, aeadID uint16, pubSize, encSize int, cost, generateCost float64, importKey func(any) ([]byte, error)) Spec {
	return Spec{
		Name: name, ID: id, Use: provider.UseAsymmetricDecrypt,
		SecretSize: 32, RandomSize: 32, PublicKeySize: pubSize, EncSize: encSize,
		KEMID: kemID, KDFID: kdfID, AEADID: aeadID,
		// the AEAD's tag: 16 bytes for each suite here
		Overhead: 16,
		Cost:     cost, GenerateCost: generateCost, CostPerMiB: 11,
		importKey: importKey,
		newMaterial: func(random []byte, _ bool) ([]byte, error) {
			kem, err := hpke.NewKEM(kemID)
			if err != nil {
				return nil, provider.Errorf(provider.EIO, "%s: %v", string(name), err)
			}
			k, err := kem.DeriveKeyPair(random)
			if err != nil {
				return nil, provider.Errorf(provider.EIO, "%s key derivation failed", string(name))
			}
			return k.Bytes()
		},
		checkPublic: func(pub []byte) bool {
			kem, err := hpke.NewKEM(kemID)
			if err != nil {
				return false
			}
			_, err = kem.NewPublicKey(pub)
			return err == nil
		},
	}
}

// Suite returns the algorithm's HPKE KEM, KDF and AEAD.
func (s *Spec) Suite() (hpke.KEM, hpke.KDF, hpke.AEAD, error) {
	if s.Use != provider.UseAsymmetricDecrypt || s.KEMID == 0 {
		return nil, nil, nil, provider.Errorf(provider.EPERM, "%s is not an HPKE algorithm", string(s.Name))
	}
	kem, err := hpke.NewKEM(s.KEMID)
	if err != nil {
		return nil, nil, nil, provider.Errorf(provider.EIO, "%s: %v", string(s.Name), err)
	}
	kdf, err := hpke.NewKDF(s.KDFID)
	if err != nil {
		return nil, nil, nil, provider.Errorf(provider.EIO, "%s: %v", string(s.Name), err)
	}
	aead, err := hpke.NewAEAD(s.AEADID)
	if err != nil {
		return nil, nil, nil, provider.Errorf(provider.EIO, "%s: %v", string(s.Name), err)
	}
	return kem, kdf, aead, nil
}

// CheckHPKE bounds and sizes one Decrypt input of this algorithm before
// any work: EMSGSIZE over a bound, EBADMSG for an enc of the wrong size or
// a ciphertext shorter than the AEAD's tag (both are malformed messages).
func (s *Spec) CheckHPKE(enc, ciphertext, info, aad []byte) error {
	if s.Use != provider.UseAsymmetricDecrypt {
		return provider.Errorf(provider.EPERM, "%s is not an HPKE algorithm", string(s.Name))
	}
	if err := provider.CheckDecrypt(enc, ciphertext, info, aad); err != nil {
		return err
	}
	switch {
	case len(enc) != s.EncSize:
		return provider.Errorf(provider.EBADMSG, "%s enc is %d bytes, not %d", string(s.Name), len(enc), s.EncSize)
	case len(ciphertext) < s.Overhead:
		return provider.Errorf(provider.EBADMSG, "HPKE ciphertext shorter than its tag")
	}
	return nil
}

// Decrypter is an unwrapped HPKE private key. It prints as its algorithm
// only; its material is unreachable except by decrypting.
type Decrypter struct {
	spec   *Spec
	priv   hpke.PrivateKey
	kdf    hpke.KDF
	aead   hpke.AEAD
	public []byte
}

// NewDecrypter makes the HPKE key pair from its private material
// (SecretSize bytes, as NewMaterial made it).
func (s *Spec) NewDecrypter(material []byte) (*Decrypter, error) {
	kem, kdf, aead, err := s.Suite()
	if err != nil {
		return nil, err
	}
	if len(material) != s.SecretSize {
		return nil, provider.Errorf(provider.EINVAL, "%s private material has the wrong size", string(s.Name))
	}
	priv, err := kem.NewPrivateKey(material)
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "%s private material is not a valid key", string(s.Name))
	}
	return &Decrypter{spec: s, priv: priv, kdf: kdf, aead: aead, public: priv.PublicKey().Bytes()}, nil
}

// Decrypt opens one base-mode HPKE message: the encapsulated key enc and
// the AEAD ciphertext, with the sender's info and aad. It refuses what
// CheckHPKE refuses; every failure to decapsulate or authenticate is
// ErrBadMessage, with no output.
func (d *Decrypter) Decrypt(enc, ciphertext, info, aad []byte) ([]byte, error) {
	if err := d.spec.CheckHPKE(enc, ciphertext, info, aad); err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(enc, d.priv, d.kdf, d.aead, info)
	if err != nil {
		return nil, provider.Errorf(provider.EBADMSG, "HPKE decapsulation failed")
	}
	pt, err := r.Open(aad, ciphertext)
	if err != nil {
		return nil, provider.Errorf(provider.EBADMSG, "message authentication failed")
	}
	return pt, nil
}

// PublicKey returns a copy of the serialized public key.
func (d *Decrypter) PublicKey() []byte { return append([]byte(nil), d.public...) }

// String returns "decrypter(<alg>)".
func (d *Decrypter) String() string { return "decrypter(" + string(d.spec.Name) + ")" }

// Format prints the same as String under every verb.
func (d *Decrypter) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) }

package keyfmt

import "github.com/nexus-os/keystored/client"

// HPKEKey is keystored's JSON form of an HPKE public key (keystorectl
// pubkey --format hpke): what an RFC 9180 sender needs, for every HPKE
// algorithm including the hybrid one, which has no other standard form.
//
//	{"key":"web/inbox/orders","version":1,
//	 "algorithm":"hpke-x25519-sha256-chacha20poly1305",
//	 "kem_id":32,"kdf_id":1,"aead_id":3,"public_key":"<base64>"}
//
// kem_id, kdf_id and aead_id are the RFC 9180 identifiers (IANA HPKE
// registry), as numbers; public_key is the KEM's SerializePublicKey in
// standard base64 with padding (RFC 4648 section 4). Senders use base
// mode and must agree on info and aad with the recipient.
type HPKEKey struct {
	Key       string `json:"key"`
	Version   uint32 `json:"version"`
	Algorithm string `json:"algorithm"`
	KEMID     uint16 `json:"kem_id"`
	KDFID     uint16 `json:"kdf_id"`
	AEADID    uint16 `json:"aead_id"`
	PublicKey []byte `json:"public_key"`
}

// NewHPKEKey returns the HPKEKey of pub, the public key of an
// asymmetric-decrypt key version; another key gives an error wrapping
// client.ErrNotSupported, a raw key that does not decode with its suite
// client.ErrIO.
func NewHPKEKey(pub client.PublicKey) (HPKEKey, error) {
	if pub.Suite.IsZero() {
		return HPKEKey{}, notSupported(pub, "the hpke format", "it is not an HPKE (asymmetric-decrypt) key")
	}
	if _, err := pub.HPKEPublicKey(); err != nil {
		return HPKEKey{}, err
	}
	return HPKEKey{
		Key: pub.Key, Version: pub.Version, Algorithm: string(pub.Algorithm),
		KEMID: pub.Suite.KEM, KDFID: pub.Suite.KDF, AEADID: pub.Suite.AEAD,
		PublicKey: append([]byte(nil), pub.Raw...),
	}, nil
}

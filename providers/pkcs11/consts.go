package pkcs11

// PKCS#11 3.0 values that github.com/miekg/pkcs11 v1.1.2 lacks
// (PKCS#11 Specification Version 3.0, sections 6.3 and 2.3.5).
const (
	// ckkECEdwards is CKK_EC_EDWARDS, the key type of Ed25519 and Ed448
	// keys.
	ckkECEdwards = 0x00000040
	// ckmECEdwardsKeyPairGen is CKM_EC_EDWARDS_KEY_PAIR_GEN.
	ckmECEdwardsKeyPairGen = 0x00001055
	// ckmEdDSA is CKM_EDDSA; without parameters it is pure Ed25519 for an
	// Ed25519 key.
	ckmEdDSA = 0x00001057
)

// ed25519Params is CKA_EC_PARAMS for Ed25519: the DER encoding of the
// object identifier 1.3.101.112 (id-Ed25519, RFC 8410). PKCS#11 3.0 also
// allows the printable string "edwards25519", which SoftHSM 2.6.1 accepts
// too; the OID is the form most tokens know.
var ed25519Params = []byte{0x06, 0x03, 0x2B, 0x65, 0x70}

const (
	// idPrefix starts the hash input of a CKA_ID.
	idPrefix = "keystored/pkcs11/id/v1"
	// idSize is the length of a CKA_ID.
	idSize = 20
	// handleMagic starts every handle.
	handleMagic = "KSP1"
	// handleSize is the length of a handle: the magic and a CKA_ID.
	handleSize = len(handleMagic) + idSize

	// gcmIVSize and gcmTagSize are the AES-GCM IV and tag sizes, in bytes.
	gcmIVSize  = 12
	gcmTagSize = 16
	// ed25519PublicKeySize and ed25519SignatureSize are Ed25519's sizes.
	ed25519PublicKeySize = 32
	ed25519SignatureSize = 64
	// aesKeySize is the AES-256 key size, in bytes.
	aesKeySize = 32
)

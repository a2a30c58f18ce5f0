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
	// Ed25519 key; with CK_EDDSA_PARAMS (eddsaParams) it is Ed448 or,
	// with the prehash flag, Ed25519ph.
	ckmEdDSA = 0x00001057
)

// CKA_EC_PARAMS values: the DER encoding of each curve's object
// identifier. PKCS#11 3.0 also allows the printable string "edwards25519"
// for Ed25519 (SoftHSM2 2.6.1 accepts both); the OID is the form most
// tokens know.
var (
	// ed25519Params is id-Ed25519, 1.3.101.112 (RFC 8410).
	ed25519Params = []byte{0x06, 0x03, 0x2B, 0x65, 0x70}
	// ed448Params is id-Ed448, 1.3.101.113 (RFC 8410).
	ed448Params = []byte{0x06, 0x03, 0x2B, 0x65, 0x71}
	// p256Params is prime256v1 (secp256r1), 1.2.840.10045.3.1.7 (RFC 5480).
	p256Params = []byte{0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}
	// p384Params is secp384r1, 1.3.132.0.34 (RFC 5480).
	p384Params = []byte{0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22}
)

// sha256DigestInfo is the DER prefix of the DigestInfo of a SHA-256
// digest (RFC 8017, section 9.2, note 1): CKM_RSA_PKCS signs
// sha256DigestInfo ‖ digest as RSASSA-PKCS1-v1_5 with SHA-256.
var sha256DigestInfo = []byte{
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
}

// rsaExponent is CKA_PUBLIC_EXPONENT of every RSA key: 65537, big-endian.
var rsaExponent = []byte{0x01, 0x00, 0x01}

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
	// aesKeySize is the AES-256 key size, in bytes.
	aesKeySize = 32
	// pssSaltSize is the RSASSA-PSS salt length: SHA-256's size.
	pssSaltSize = 32
)

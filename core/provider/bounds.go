package provider

// Bounds: one place for every size limit in keystored. Every layer (core,
// providers, plugin wire protocol, daemon API) checks its inputs against
// these before doing any work; over a bound the result is EMSGSIZE (payloads)
// or EINVAL (identifiers).
const (
	// MaxSegment is the longest app ID, purpose or name segment, in bytes.
	MaxSegment = 64
	// MaxKeyIDLen is the longest key ID: three segments and two slashes.
	MaxKeyIDLen = 3*MaxSegment + 2
	// MaxProviderName is the longest provider name.
	MaxProviderName = MaxSegment

	// MaxSignMessage is the largest message Sign and Verify accept.
	MaxSignMessage = 64 << 10
	// MaxMACMessage is the largest message MAC and VerifyMAC accept.
	MaxMACMessage = 1 << 20
	// MaxDigest is the largest digest SignDigest accepts (SHA-512's).
	MaxDigest = 64
	// MaxMAC is the largest tag a provider may return (HMAC-SHA-512's).
	MaxMAC = 64
	// MaxSealPlaintext is the largest plaintext Seal accepts.
	MaxSealPlaintext = 1 << 20
	// MaxAAD is the largest caller AAD Seal and Open accept.
	MaxAAD = 64 << 10
	// MaxSealOverhead bounds what a provider may add to a plaintext
	// (nonce and tag) and what the core adds (envelope header).
	MaxSealOverhead = 256
	// MaxSealed is the largest sealed blob Open accepts.
	MaxSealed = MaxSealPlaintext + MaxSealOverhead
	// MaxProviderAAD is the largest AAD the core passes to a provider: the
	// caller's AAD plus the envelope header and the key ID, length-prefixed.
	MaxProviderAAD = MaxAAD + 1024

	// MaxHPKEEnc is the largest HPKE encapsulated key Decrypt accepts
	// (MLKEM768-X25519's is 1,120 bytes).
	MaxHPKEEnc = 2 << 10
	// MaxHPKEInfo is the largest HPKE info Decrypt accepts.
	MaxHPKEInfo = 4 << 10
	// MaxHPKECiphertext is the largest HPKE ciphertext (plaintext and tag)
	// Decrypt accepts.
	MaxHPKECiphertext = MaxSealPlaintext + MaxSealOverhead
	// MaxImportMaterial is the largest key material Import accepts once
	// unwrapped (an RSA-4096 PKCS #8 DER is about 2,400 bytes), and
	// MaxImportWrapped the largest wrapped form (material and tag).
	MaxImportMaterial = 8 << 10
	MaxImportWrapped  = MaxImportMaterial + MaxSealOverhead
	// MaxImportKeys is the most one-time import wrapping keys a provider
	// holds at once; past it NewImportKey forgets the oldest.
	MaxImportKeys = 1024

	// MaxHandle is the largest provider handle.
	MaxHandle = 4 << 10
	// MaxPublicKey is the largest public key a provider may return.
	MaxPublicKey = 4 << 10
	// MaxSignature is the largest signature a provider may return.
	MaxSignature = 8 << 10

	// MaxAlgorithms is the most algorithms a provider may announce.
	MaxAlgorithms = 64
	// MaxInfoString bounds Info's name and version strings.
	MaxInfoString = 128
	// MaxKEKs is the most KEK fingerprints a provider may announce.
	MaxKEKs = 4
	// MaxKEKFingerprint bounds the length of a KEK fingerprint (hex
	// characters).
	MaxKEKFingerprint = 64
)

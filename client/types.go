package client

import (
	"crypto"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// Algorithm names a key algorithm ("ed25519", "xchacha20-poly1305", ...).
type Algorithm = provider.Algorithm

// The algorithms keystored knows. Which ones a daemon offers depends on
// its provider (ENOTSUP otherwise).
// docs/api.md describes each; DigestHash gives the hash a signing
// algorithm's digests are made with.
const (
	Ed25519           = provider.Ed25519           // sign: pure Ed25519 (RFC 8032)
	Ed448             = provider.Ed448             // sign: pure Ed448
	MLDSA44           = provider.MLDSA44           // sign: FIPS 204
	MLDSA65           = provider.MLDSA65           // sign: FIPS 204
	MLDSA87           = provider.MLDSA87           // sign: FIPS 204
	ECDSAP256         = provider.ECDSAP256         // sign: ecdsa-p256-sha256, ASN.1 DER signatures
	ECDSAP384         = provider.ECDSAP384         // sign: ecdsa-p384-sha384, ASN.1 DER signatures
	RSA2048PSS        = provider.RSA2048PSS        // sign: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
	RSA3072PSS        = provider.RSA3072PSS        // sign: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
	RSA4096PSS        = provider.RSA4096PSS        // sign: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
	RSA2048PKCS1      = provider.RSA2048PKCS1      // sign: RSASSA-PKCS1-v1_5, SHA-256
	RSA3072PKCS1      = provider.RSA3072PKCS1      // sign: RSASSA-PKCS1-v1_5, SHA-256
	RSA4096PKCS1      = provider.RSA4096PKCS1      // sign: RSASSA-PKCS1-v1_5, SHA-256
	Ed25519ph         = provider.Ed25519ph         // sign: Ed25519ph (RFC 8032 SHA-512 prehash)
	XChaCha20Poly1305 = provider.XChaCha20Poly1305 // decrypt (the daemon's default)
	ChaCha20Poly1305  = provider.ChaCha20Poly1305  // decrypt
	AES256GCM         = provider.AES256GCM         // decrypt
	HMACSHA256        = provider.HMACSHA256        // mac: 32-byte tags
	HMACSHA384        = provider.HMACSHA384        // mac: 48-byte tags
	HMACSHA512        = provider.HMACSHA512        // mac: 64-byte tags

	// asymmetric-decrypt: HPKE (RFC 9180) base mode. Senders encrypt to
	// the public key (HPKESeal, or any RFC 9180 implementation); the
	// daemon decrypts (Decrypt).
	HPKEX25519         = provider.HPKEX25519         // DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
	HPKEP256           = provider.HPKEP256           // DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM
	HPKEMLKEM768X25519 = provider.HPKEMLKEM768X25519 // MLKEM768-X25519 (X-Wing, post-quantum hybrid), HKDF-SHA256, AES-256-GCM
)

// Algorithms lists every algorithm above, signing ones first, in the order
// of docs/api.md.
func Algorithms() []Algorithm {
	return []Algorithm{
		Ed25519, Ed448, MLDSA44, MLDSA65, MLDSA87,
		ECDSAP256, ECDSAP384,
		RSA2048PSS, RSA3072PSS, RSA4096PSS, RSA2048PKCS1, RSA3072PKCS1, RSA4096PKCS1,
		Ed25519ph,
		XChaCha20Poly1305, ChaCha20Poly1305, AES256GCM,
		HMACSHA256, HMACSHA384, HMACSHA512,
		HPKEX25519, HPKEP256, HPKEMLKEM768X25519,
	}
}

// AlgorithmUse returns the use of an algorithm of Algorithms, and 0 for a
// name the client does not know.
func AlgorithmUse(alg Algorithm) Use {
	switch alg {
	case XChaCha20Poly1305, ChaCha20Poly1305, AES256GCM:
		return UseDecrypt
	case HMACSHA256, HMACSHA384, HMACSHA512:
		return UseMAC
	case HPKEX25519, HPKEP256, HPKEMLKEM768X25519:
		return UseAsymmetricDecrypt
	}
	if _, ok := sigAlgorithms[alg]; ok {
		return UseSign
	}
	return 0
}

// Use is what a key may do: sign, decrypt, mac or asymmetric-decrypt.
// Each algorithm has one. The zero Use is unset.
type Use = provider.Use

// The uses.
const (
	UseSign              = provider.UseSign              // Sign, Verify (and Signer)
	UseDecrypt           = provider.UseDecrypt           // Seal, Unseal, Rewrap, GenerateDataKey
	UseMAC               = provider.UseMAC               // MAC, VerifyMAC
	UseAsymmetricDecrypt = provider.UseAsymmetricDecrypt // Decrypt (HPKE); senders encrypt to PublicKey
)

// Origin is where a key's or a version's material came from: generated
// by the daemon's provider, or imported (Import, ImportKey).
type Origin string

// The origins.
const (
	OriginGenerated Origin = "generated"
	OriginImported  Origin = "imported"
)

// originOf reads a wire origin: empty (a daemon older than API v1.4,
// which imports nothing) is generated.
func originOf(s string) Origin {
	if s == "" {
		return OriginGenerated
	}
	if len(s) > provider.MaxSegment {
		s = s[:provider.MaxSegment]
	}
	return Origin(s)
}

// KeyState is the state of a key. The zero KeyState is invalid (a daemon
// that sent no state).
type KeyState uint8

// The key states.
const (
	KeyActive    KeyState = iota + 1 // usable
	KeyRevoked                       // no operation works any more; may be destroyed
	KeyDestroyed                     // material erased; the ID is never reused
)

var keyStateNames = [...]string{"unspecified", "active", "revoked", "destroyed"}

// String returns "active", "revoked", "destroyed" or "unspecified".
func (s KeyState) String() string {
	if int(s) < len(keyStateNames) {
		return keyStateNames[s]
	}
	return "unknown(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (s KeyState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// VersionState is the state of one version of a key. The zero value is
// invalid.
type VersionState uint8

// The version states.
const (
	VersionPrimary   VersionState = iota + 1 // signs and seals; exactly one per active key
	VersionRetired                           // verifies and unseals only
	VersionRevoked                           // unusable
	VersionDestroyed                         // material erased
)

var versionStateNames = [...]string{"unspecified", "primary", "retired", "revoked", "destroyed"}

// String returns "primary", "retired", "revoked", "destroyed" or
// "unspecified".
func (s VersionState) String() string {
	if int(s) < len(versionStateNames) {
		return versionStateNames[s]
	}
	return "unknown(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (s VersionState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Policy holds a key's policy knobs.
type Policy struct {
	// MinDecryptionVersion: verify, unseal and rewrap refuse older
	// versions. 0 allows all.
	MinDecryptionVersion uint32
	// RotationPeriod: 0 (off), or at least a minute: the daemon rotates
	// the key when its primary version is this old.
	RotationPeriod time.Duration
}

// KeyVersion describes one version of a key. Times are zero when unset.
type KeyVersion struct {
	Version   uint32
	State     VersionState
	PublicKey []byte // empty for decrypt keys
	Created   time.Time
	Retired   time.Time
	Revoked   time.Time
	Destroyed time.Time
	// Seals is how many seals the version has counted against its seal
	// budget, SealLimit that budget (both 0 for sign keys). The count is
	// at least the seals made (refused and failed seals count; after a
	// daemon restart it resumes from a reservation up to 65,536 above).
	// At SealLimit the version seals no more: rotate the key.
	Seals, SealLimit uint64
	// Origin is where the version's material came from (an imported
	// key's versions are imported, except one made by RotateWith's
	// Generate and those after it).
	Origin Origin
}

// SealsLeft returns how many more seals the version may make (0 for a
// sign key).
func (v KeyVersion) SealsLeft() uint64 {
	if v.Seals >= v.SealLimit {
		return 0
	}
	return v.SealLimit - v.Seals
}

// KeyInfo is a key's metadata. It never holds private material.
type KeyInfo struct {
	// ID is the full key ID, "<app>/<purpose>/<name>".
	ID        string
	Algorithm Algorithm
	// Uses is ["sign"], ["decrypt"], ["mac"] or ["asymmetric-decrypt"].
	Uses           []string
	State          KeyState
	CurrentVersion uint32
	Versions       []KeyVersion
	Policy         Policy
	// Provider names the provider holding the key ("software", ...).
	Provider string
	// Insecure is true for keys of the INSECURE test provider (from the
	// key's metadata or the response header): they are not secret.
	Insecure  bool
	Created   time.Time
	Revoked   time.Time
	Destroyed time.Time
	// RotationDue is when the key is due for automatic rotation (its
	// primary version's creation plus the rotation period); zero for a
	// key without a rotation period and for a revoked or destroyed key.
	// RotationOverdue is true when that time had passed by the daemon's
	// clock when it answered: the key rotates on its next sign or seal,
	// or at the daemon's next sweep.
	RotationDue     time.Time
	RotationOverdue bool
	// Origin is OriginImported for a key whose versions come from
	// Import: Rotate refuses it (ErrPermission) unless RotateWith
	// switches it to generated material.
	Origin Origin
}

// Version returns the metadata of version v, and false if the key has no
// such version.
func (k KeyInfo) Version(v uint32) (KeyVersion, bool) {
	for _, kv := range k.Versions {
		if kv.Version == v {
			return kv, true
		}
	}
	return KeyVersion{}, false
}

// CreateOptions are the options of Create.
type CreateOptions struct {
	// Algorithm of the key; empty means the provider's default for Use
	// (its first algorithm of that use in docs/api.md's order).
	Algorithm Algorithm
	// Use, when set, must be Algorithm's use (ErrInvalid otherwise).
	// Without an Algorithm it picks the default; unset means decrypt
	// (xchacha20-poly1305 on the software provider).
	Use Use
	// Policy of the key; the zero Policy is the default.
	Policy Policy
}

// ListOptions select a page of keys.
type ListOptions struct {
	// App: empty means the caller's app (every app for an operator).
	App string
	// PageSize: 0 means the daemon's default (100); at most 1000.
	PageSize int
	// PageToken: empty for the first page, else KeyPage.NextPageToken.
	PageToken string
}

// UnreadableKey is a key whose files in the daemon are corrupted; other
// keys are unaffected. Err wraps ErrIO (or the code the daemon gave).
type UnreadableKey struct {
	ID  string
	Err error
}

// KeyPage is one page of a key listing.
type KeyPage struct {
	Keys []KeyInfo
	// NextPageToken is empty on the last page.
	NextPageToken string
	Unreadable    []UnreadableKey
}

// SweepOptions bound one Sweep call.
type SweepOptions struct {
	// PageToken: empty to start at the first key, else
	// SweepResult.NextPageToken.
	PageToken string
	// Limit is the most keys the call examines: 0 means the daemon's
	// default (1000); at most 1000.
	Limit int
}

// SweepResult is what one Sweep call did.
type SweepResult struct {
	// Examined counts the keys looked at, in any state.
	Examined int
	// Rotated and Failed are in key ID order.
	Rotated []RotatedKey
	Failed  []SweepFailure
	// NextPageToken resumes the sweep; empty when it reached the last key.
	NextPageToken string
}

// RotatedKey is a key a sweep rotated.
type RotatedKey struct {
	// Key is the full key ID.
	Key string
	// Version is the new primary version.
	Version uint32
}

// SweepFailure is a key a sweep could not rotate (ErrQuota at its
// versions quota, ...) or read (ErrIO). Err has the daemon's code.
type SweepFailure struct {
	Key string
	Err error
}

// Usage is what an app holds against its quotas (docs/operations.md,
// Quotas).
type Usage struct {
	App string
	// Keys counts the app's keys in any state: revoked keys and destroyed
	// tombstones count, since key IDs are never reused.
	Keys, KeysLimit int64
	// VersionsPerKeyLimit is the most versions one key may have.
	VersionsPerKeyLimit int64
	// StoreValues and StoreBytes are the app's Store values and the sum
	// of their lengths.
	StoreValues, StoreValuesLimit int64
	StoreBytes, StoreBytesLimit   int64
}

// PublicKey is the public key of one version of a signing or
// asymmetric-decrypt key.
type PublicKey struct {
	// Key is the full key ID.
	Key       string
	Version   uint32
	Algorithm Algorithm
	// Raw is the raw public key: 32 bytes for ed25519 and ed25519ph, 57
	// for ed448, the FIPS 204 encoding for ML-DSA, the SEC 1 uncompressed
	// point for ECDSA (65 or 97 bytes), the PKCS #1 RSAPublicKey DER for
	// RSA; for HPKE the KEM's SerializePublicKey (32 bytes for X25519,
	// the 65-byte SEC 1 point for P-256, 1216 bytes for MLKEM768-X25519).
	// CryptoPublicKey decodes it; package client/keyfmt encodes it as
	// PEM, OpenSSH, JWK.
	Raw []byte
	// Suite is the RFC 9180 suite of an HPKE key (zero for other keys):
	// what HPKESeal and any RFC 9180 implementation need with Raw.
	Suite HPKESuite
}

// Ref returns "<key>@<version>".
func (p PublicKey) Ref() string { return p.Key + "@" + strconv.FormatUint(uint64(p.Version), 10) }

// Signature is a signature and the key version that made it.
type Signature struct {
	// Key is the full key ID.
	Key     string
	Version uint32
	// Signature is the plain algorithm signature, which any standard
	// implementation verifies: Ed25519/Ed448/ML-DSA as specified, ECDSA
	// as ASN.1 DER (ECDSASignatureRaw converts it to JOSE's r‖s), RSA as
	// the modulus-sized integer.
	Signature []byte
}

// SignInput is what SignWith and VerifyWith sign or verify: a message,
// or the caller's digest of one.
type SignInput struct {
	// Message is the message itself (at most 64 KiB); nil when Hash is
	// set.
	Message []byte
	// Hash and Digest: the caller's hash of the message, for ECDSA, RSA
	// and ed25519ph keys. Hash must be the algorithm's own (DigestHash),
	// Digest exactly its size. The signature is the one Sign would make
	// over the message.
	Hash   crypto.Hash
	Digest []byte
}

// MACTag is an HMAC tag and the key version that made it.
type MACTag struct {
	// Key is the full key ID.
	Key     string
	Version uint32
	// Tag is the full HMAC output (32, 48 or 64 bytes; never truncated).
	Tag []byte
}

// Sealed is a sealed envelope and the key version that sealed it. Data
// records its version, so Unseal picks the right one by itself.
type Sealed struct {
	Data    []byte
	Version uint32
}

// Unsealed is an unsealed plaintext and the key version that opened it.
type Unsealed struct {
	Plaintext []byte
	Version   uint32
}

// ParseKeyRef splits "KEY" or "KEY@N" into the key and the version (0
// when none is given). N is a decimal from 1 to 4294967295 without sign or
// leading zeros. The key part is not checked here: the daemon is the
// authority on names.
func ParseKeyRef(ref string) (key string, version uint32, err error) {
	i := strings.LastIndexByte(ref, '@')
	if i < 0 {
		return ref, 0, nil
	}
	v, err := parseVersion(ref[i+1:])
	if err != nil {
		return "", 0, err
	}
	if i == 0 {
		return "", 0, provider.Errorf(provider.EINVAL, "key reference %q has no key before @", ref)
	}
	return ref[:i], v, nil
}

// parseVersion parses a decimal version from 1 to 4294967295, without
// sign or leading zeros.
func parseVersion(s string) (uint32, error) {
	bad := func() (uint32, error) {
		if len(s) > 10 {
			return 0, provider.Errorf(provider.EINVAL, "version must be a number from 1 to %d", uint32(math.MaxUint32))
		}
		return 0, provider.Errorf(provider.EINVAL, "version %q must be a number from 1 to %d", s, uint32(math.MaxUint32))
	}
	if s == "" || len(s) > 10 || s[0] == '0' {
		return bad()
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return bad()
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return bad()
	}
	return uint32(n), nil
}

// keyInfo converts the wire metadata.
func keyInfo(m *keystorev1.KeyMetadata, insecureHeader bool) KeyInfo {
	k := KeyInfo{
		ID:             m.GetId(),
		Algorithm:      Algorithm(m.GetAlgorithm()),
		Uses:           append([]string(nil), m.GetUses()...),
		State:          KeyState(m.GetState()),
		CurrentVersion: m.GetCurrentVersion(),
		Provider:       m.GetProvider(),
		Insecure:       m.GetInsecure() || insecureHeader,
		Created:        timeOf(m.GetCreated()),
		Revoked:        timeOf(m.GetRevoked()),
		Destroyed:      timeOf(m.GetDestroyed()),
		Policy:         policyOf(m.GetPolicy()),
		RotationDue:    timeOf(m.GetRotationDue()),
		Origin:         originOf(m.GetOrigin()),
	}
	k.RotationOverdue = m.GetRotationOverdue() && !k.RotationDue.IsZero()
	if k.State > KeyDestroyed {
		k.State = 0
	}
	for _, v := range m.GetVersions() {
		kv := KeyVersion{
			Version:   v.GetVersion(),
			State:     VersionState(v.GetState()),
			PublicKey: v.GetPublicKey(),
			Created:   timeOf(v.GetCreated()),
			Retired:   timeOf(v.GetRetired()),
			Revoked:   timeOf(v.GetRevoked()),
			Destroyed: timeOf(v.GetDestroyed()),
			Seals:     v.GetSeals(),
			SealLimit: v.GetSealLimit(),
			Origin:    originOf(v.GetOrigin()),
		}
		if kv.State > VersionDestroyed {
			kv.State = 0
		}
		k.Versions = append(k.Versions, kv)
	}
	return k
}

func policyOf(p *keystorev1.KeyPolicy) Policy {
	return Policy{
		MinDecryptionVersion: p.GetMinDecryptionVersion(),
		RotationPeriod:       time.Duration(p.GetRotationPeriodSeconds()) * time.Second,
	}
}

func policyProto(p Policy) *keystorev1.KeyPolicy {
	return &keystorev1.KeyPolicy{
		MinDecryptionVersion:  p.MinDecryptionVersion,
		RotationPeriodSeconds: int64(p.RotationPeriod / time.Second),
	}
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

package core

import (
	"crypto"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// Caller is who asks. App is the caller's app ID (a key ID segment); an
// Operator may manage every app's keys. The core never takes a caller's
// identity from a request: the transport establishes it (the daemon uses
// the kernel's peer credentials) and passes it here.
type Caller struct {
	App      string
	Operator bool
	// UID and PID are recorded in audit events when the transport knows
	// them; the core does not interpret them.
	UID, PID int64
	// system marks the keystore's own caller (AuditSigner), the only one
	// that may change keys of ReservedApp.
	system bool
}

// String returns "app" or "operator:app".
func (c Caller) String() string {
	if c.Operator {
		return "operator:" + c.App
	}
	return c.App
}

// KeyState is the state of a key as a whole. The zero value is invalid.
type KeyState uint8

// Key states.
const (
	_              KeyState = iota
	StateActive             // usable; exactly one primary version
	StateRevoked            // every version revoked; irreversible
	StateDestroyed          // material erased; metadata kept as a tombstone
)

var keyStateNames = [...]string{StateActive: "active", StateRevoked: "revoked", StateDestroyed: "destroyed"}

// String returns "active", "revoked" or "destroyed".
func (s KeyState) String() string {
	if s > 0 && int(s) < len(keyStateNames) {
		return keyStateNames[s]
	}
	return "invalid-state(" + strconv.Itoa(int(s)) + ")"
}

// Valid reports whether s is a defined state.
func (s KeyState) Valid() bool { return s >= StateActive && s <= StateDestroyed }

func parseKeyState(v string) (KeyState, bool) {
	i, ok := parseName(keyStateNames[:], v)
	return KeyState(i), ok
}

// parseName returns the index of v among an enum's names, whose zero
// value (index 0, "") is invalid.
func parseName(names []string, v string) (int, bool) {
	if i := slices.Index(names, v); i > 0 {
		return i, true
	}
	return 0, false
}

// VersionState is the state of one key version. The zero value is invalid.
type VersionState uint8

// Version states.
const (
	_                VersionState = iota
	VersionPrimary                // signs and seals; exactly one per active key
	VersionRetired                // verifies and unseals only
	VersionRevoked                // unusable; irreversible
	VersionDestroyed              // material erased
)

var versionStateNames = [...]string{VersionPrimary: "primary", VersionRetired: "retired", VersionRevoked: "revoked", VersionDestroyed: "destroyed"}

// String returns "primary", "retired", "revoked" or "destroyed".
func (s VersionState) String() string {
	if s > 0 && int(s) < len(versionStateNames) {
		return versionStateNames[s]
	}
	return "invalid-version-state(" + strconv.Itoa(int(s)) + ")"
}

// Valid reports whether s is a defined version state.
func (s VersionState) Valid() bool { return s >= VersionPrimary && s <= VersionDestroyed }

func parseVersionState(v string) (VersionState, bool) {
	i, ok := parseName(versionStateNames[:], v)
	return VersionState(i), ok
}

// Policy is a key's usage policy.
type Policy struct {
	// MinDecryptionVersion: Unseal and Verify refuse versions below it
	// (EPERM). 0 or 1 allow every version.
	MinDecryptionVersion Version
	// RotationPeriod: when positive, a key whose primary version is older
	// than the period is rotated on its next Sign or Seal, or by Sweep.
	RotationPeriod time.Duration
}

// Bounds of policy values.
const (
	MinRotationPeriod = time.Minute
	MaxRotationPeriod = 100 * 365 * 24 * time.Hour
)

// VersionInfo describes one key version.
type VersionInfo struct {
	Version   Version
	State     VersionState
	PublicKey []byte // empty for AEAD keys
	Created   time.Time
	Retired   time.Time // when a rotation replaced it as primary; zero if never
	Revoked   time.Time // zero if not revoked
	Destroyed time.Time // zero if not destroyed
	// Seals is how many seals the version has counted against its seal
	// budget, SealLimit that budget (both 0 for sign keys, which have
	// none). The count is at least the seals made: it counts refused and
	// failed seals too, and after a restart it resumes from the durable
	// reservation, which may be up to 65,536 above the seals made before
	// (docs/lifecycle.md). At SealLimit the version seals no more (EPERM).
	Seals, SealLimit uint64
	// Origin is where the version's material came from.
	Origin Origin
}

// Metadata describes a key. It never holds private material.
type Metadata struct {
	ID        KeyID
	Algorithm Algorithm
	Use       Use
	State     KeyState
	// Current is the primary version of an active key, and the last
	// version of a revoked or destroyed one.
	Current  Version
	Versions []VersionInfo // ordered by version, from 1
	Policy   Policy
	Provider string
	Insecure bool // made by a provider that announces Secure == false
	// Origin is OriginImported for a key whose new versions come from
	// Import (Rotate refuses it unless it switches to generated).
	Origin    Origin
	Created   time.Time
	Revoked   time.Time
	Destroyed time.Time
	// Generation counts the key's lifecycle changes: 1 after its create,
	// +1 with every rotation, revocation, destroy, policy change or
	// import; 0 for a key last changed before generations were recorded.
	// The audit log records it with each change (Config.Generations).
	Generation uint64
}

// App returns the key's app ID.
func (m *Metadata) App() string { return m.ID.App() }

// Version returns the info of version v.
func (m *Metadata) Version(v Version) (VersionInfo, bool) {
	if v == 0 || int(v) > len(m.Versions) {
		return VersionInfo{}, false
	}
	return m.Versions[v-1], true
}

// RotationDue returns when the key is due for automatic rotation: its
// primary version's creation time plus its rotation period. ok is false
// for a key without a rotation period, for a revoked or destroyed key, and
// for an imported key (which never rotates by itself).
func (m *Metadata) RotationDue() (due time.Time, ok bool) {
	if m.State != StateActive || m.Policy.RotationPeriod <= 0 || m.Origin == OriginImported {
		return time.Time{}, false
	}
	p, ok := m.Version(m.Current)
	if !ok {
		return time.Time{}, false
	}
	return p.Created.Add(m.Policy.RotationPeriod), true
}

func (m *Metadata) clone() Metadata {
	c := *m
	c.Versions = make([]VersionInfo, len(m.Versions))
	for i, v := range m.Versions {
		v.PublicKey = append([]byte(nil), v.PublicKey...)
		c.Versions[i] = v
	}
	return c
}

// CreateOptions are the parameters of a new key.
type CreateOptions struct {
	// Algorithm of the key; empty means the provider's default for Use
	// (DefaultAlgorithms).
	Algorithm Algorithm
	// Use, if set, must be the algorithm's use (it is implied otherwise).
	// Without an algorithm it picks the default; 0 then means decrypt.
	Use Use
	// Policy of the key.
	Policy Policy
}

// DefaultAlgorithms returns, for use, the algorithms a key created
// without one gets: the first the provider offers. A provider that offers
// none of a use's is ENOTSUP for it.
func DefaultAlgorithms(use Use) []Algorithm { return slices.Clone(defaultAlgorithms[use]) }

var defaultAlgorithms = map[Use][]Algorithm{
	provider.UseSign: {provider.Ed25519, provider.ECDSAP256, provider.ECDSAP384, provider.Ed448,
		provider.RSA3072PSS, provider.RSA2048PSS, provider.RSA4096PSS, provider.MLDSA65},
	provider.UseDecrypt:           {provider.XChaCha20Poly1305, provider.AES256GCM, provider.ChaCha20Poly1305},
	provider.UseMAC:               {provider.HMACSHA256, provider.HMACSHA512, provider.HMACSHA384},
	provider.UseAsymmetricDecrypt: {provider.HPKEMLKEM768X25519, provider.HPKEX25519, provider.HPKEP256},
}

// SignInput is what SignWith signs and VerifyWith checks: a message, or
// the caller's digest of one.
type SignInput struct {
	// Message is the message (at most provider.MaxSignMessage bytes);
	// empty when Digest is set.
	Message []byte
	// Digest is the caller's hash of the message under Hash, for
	// algorithms that sign digests (alg.Spec.Hash): Hash must be the
	// algorithm's, Digest exactly its size.
	Digest []byte
	Hash   crypto.Hash
}

// isDigest reports whether in names a digest rather than a message.
func (in SignInput) isDigest() bool { return in.Hash != 0 || len(in.Digest) > 0 }

// MACTag is what MAC returns: the tag and the key version that made it.
type MACTag struct {
	Version Version
	Tag     []byte
}

// Signature is what Sign returns: the plain algorithm signature and the
// key version that made it.
type Signature struct {
	Version   Version
	Signature []byte
}

// Sealed is what Seal and Rewrap return: the sealed envelope and the key
// version that sealed it. The envelope records its version, so Unseal
// picks the right one by itself.
type Sealed struct {
	Version Version
	Data    []byte
}

// Unsealed is what Unseal returns: the plaintext and the key version that
// opened it.
type Unsealed struct {
	Version   Version
	Plaintext []byte
}

// wipe clears the plaintext (a result that is withheld).
func (u Unsealed) wipe() { clear(u.Plaintext) }

// PublicKey is a key version's public key.
type PublicKey struct {
	ID        KeyID
	Version   Version
	Algorithm Algorithm
	Key       []byte
}

// ListOptions select a page of keys.
type ListOptions struct {
	// App restricts the listing to one app. Empty means the caller's own
	// app, or every app but ReservedApp for an operator.
	App string
	// PageSize is the most keys returned (default 100, at most MaxPageSize).
	PageSize int
	// PageToken is the NextPageToken of the previous page, or empty.
	PageToken string
	// withReserved includes ReservedApp in an operator's listing of every
	// app (the keystore's own walks: a KEK rotation rewraps its keys too).
	withReserved bool
}

// Page sizes.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListPage is one page of a listing, ordered by key ID.
type ListPage struct {
	Keys []Metadata
	// Unreadable lists keys whose files are corrupted or unreadable; their
	// errors wrap ErrIO and name the key. Other keys are unaffected.
	Unreadable []UnreadableKey
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// SweepOptions bound one Sweep call.
type SweepOptions struct {
	// PageToken resumes a sweep after the last key the previous call
	// examined (its NextPageToken); empty starts at the first key.
	PageToken string
	// Limit is the most keys the call examines (default
	// DefaultSweepLimit, at most MaxSweepLimit).
	Limit int
}

// Bounds of one Sweep call.
const (
	DefaultSweepLimit = 1000
	MaxSweepLimit     = 1000
)

// SweepResult is what one Sweep call did.
type SweepResult struct {
	// Examined counts the keys looked at, in any state.
	Examined int
	// Rotated lists the keys rotated, each with its new primary version,
	// in ID order.
	Rotated []RotatedKey
	// Failed lists the due keys that failed to rotate and the keys that
	// could not be read, in ID order.
	Failed []SweepFailure
	// NextPageToken resumes the sweep; empty when it reached the last key.
	NextPageToken string
}

// RotatedKey is a key a sweep rotated and its new primary version.
type RotatedKey struct {
	ID      KeyID
	Version Version
}

// SweepFailure is a key a sweep could not rotate or read; Err has the
// code (EDQUOT for a key at its versions quota, EIO for an unreadable
// one, ...) and names the key.
type SweepFailure struct {
	ID  KeyID
	Err error
}

// UnreadableKey is a key a listing could not read.
type UnreadableKey struct {
	ID  KeyID
	Err error
}

// Origin is where a key's material comes from. The zero value reads as
// OriginGenerated (state written before imports existed).
type Origin uint8

// Origins.
const (
	OriginGenerated Origin = iota + 1 // made by the provider (Create, Rotate)
	OriginImported                    // brought in by Import
)

// String returns "generated" or "imported".
func (o Origin) String() string {
	if o == OriginImported {
		return "imported"
	}
	return "generated"
}

// DataKeySpec chooses the size of a data key: a cipher name (Name) or a
// number of bytes (Size, 16 .. 64); both zero means "aes-256-gcm".
type DataKeySpec struct {
	// Name is "aes-256-gcm", "aes-128-gcm", "chacha20-poly1305" or
	// "xchacha20-poly1305" (32 bytes; 16 for aes-128-gcm).
	Name string
	// Size is the data key's size in bytes when Name is empty.
	Size int
}

// Bounds of data key sizes (DataKeySpec.Size).
const (
	MinDataKeySize = 16
	MaxDataKeySize = 64
)

// DataKey is what GenerateDataKey returns: a fresh random data key, the
// same key sealed under the key's primary version (an envelope Unseal
// opens with the same AAD), and that version.
type DataKey struct {
	Version   Version
	Plaintext []byte
	Sealed    []byte
}

// wipe clears the plaintext data key (a result that is withheld).
func (d DataKey) wipe() { clear(d.Plaintext) }

// String prints the version and sizes only, never the data key.
func (d DataKey) String() string {
	return "datakey(v" + d.Version.String() + ", " + strconv.Itoa(len(d.Plaintext)) + " bytes, sealed " + strconv.Itoa(len(d.Sealed)) + " bytes)"
}

// GoString returns the same as String.
func (d DataKey) GoString() string { return d.String() }

// Format prints the same as String under every verb.
func (d DataKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) }

// LogValue logs the same as String.
func (d DataKey) LogValue() slog.Value { return slog.StringValue(d.String()) }

// HPKEMessage is what Decrypt opens: an HPKE (RFC 9180) base-mode message
// a sender encrypted to the public key of an asymmetric-decrypt key
// version, with the sender's info and aad.
type HPKEMessage struct {
	Enc, Ciphertext, Info, AAD []byte
}

// Decrypted is what Decrypt returns: the plaintext and the version that
// opened it.
type Decrypted struct {
	Version   Version
	Plaintext []byte
}

// wipe clears the plaintext (a result that is withheld).
func (d Decrypted) wipe() { clear(d.Plaintext) }

// Import bounds and defaults.
const (
	// DefaultImportWrapping is the wrapping algorithm of import
	// parameters that name none: the post-quantum hybrid suite.
	DefaultImportWrapping = provider.HPKEMLKEM768X25519
	// DefaultImportTTL, MinImportTTL and MaxImportTTL bound how long
	// import parameters are valid.
	DefaultImportTTL = 24 * time.Hour
	MinImportTTL     = time.Minute
	MaxImportTTL     = 24 * time.Hour
	// MaxImportTokensPerApp and MaxImportTokens bound the outstanding
	// (unused, unexpired) import tokens of one app and of the keystore.
	MaxImportTokensPerApp = 16
	MaxImportTokens       = 256
)

// ImportOptions are the parameters of ImportParameters.
type ImportOptions struct {
	// Algorithm of the material to import (required).
	Algorithm Algorithm
	// WrappingAlgorithm is the HPKE suite of the one-time wrapping key;
	// empty means DefaultImportWrapping.
	WrappingAlgorithm Algorithm
	// TTL is how long the parameters are valid; 0 means DefaultImportTTL.
	TTL time.Duration
}

// ImportParameters are what a caller needs to wrap key material for one
// Import: a one-time HPKE public key, the info to seal under, and the
// token Import takes. The token is valid once, for this key and
// algorithm, for the calling app, until Expires.
type ImportParameters struct {
	ID                KeyID
	Algorithm         Algorithm
	Token             string
	WrappingAlgorithm Algorithm
	KEMID, KDFID      uint16
	AEADID            uint16
	PublicKey         []byte
	Info              []byte
	Expires           time.Time
}

// ImportRequest is the wrapped material Import takes.
type ImportRequest struct {
	Token string
	// Enc and Wrapped are the HPKE encapsulated key and ciphertext of the
	// material (base mode, ImportParameters.Info, empty aad).
	Enc, Wrapped []byte
	// Policy of a new key; EINVAL when a version is added (use
	// SetPolicy). An imported
	// key has no rotation period (EPERM).
	Policy Policy
}

// RotateOptions are the parameters of RotateWith.
type RotateOptions struct {
	// Generate switches an imported key to generated material: the new
	// version is generated, and the key becomes a generated one. Without
	// it, rotating an imported key is EPERM.
	Generate bool
}

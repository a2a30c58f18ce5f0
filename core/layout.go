package core

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// The storage layout contract (docs/storage.md):
//
//	keystore/MANIFEST                              format, provider name, secure flag, KEK fingerprints
//	keystore/<appId>/<purpose>/<name>~meta.json    a key's metadata: versions, states, times,
//	                                               policy, and each version's provider handle
//
// and, for keys made before a key was one file (legacy keys, which stay
// where they are; their changes rewrite their meta.json in place):
//
//	keystore/<appId>/<purpose>/<name>/meta.json    the key's metadata (as above)
//	keystore/<appId>/<purpose>/<name>/v<N>.handle  provider handle of version N, for versions
//	                                               made before handles moved into meta.json
//
// '~' is outside the key-ID segment alphabet, so no key name, and no
// legacy key directory, is a key file's name. Every path segment comes
// from a validated KeyID or is fixed here, so no input can name a file
// outside the tree.
const (
	layoutRoot    = "keystore"
	manifestPath  = layoutRoot + "/MANIFEST"
	metaFileName  = "meta.json"
	keyFileSuffix = "~" + metaFileName
	formatVersion = 1
)

// keyDir is a legacy key's directory.
func keyDir(id KeyID) string {
	return purposeDir(id) + "/" + id.Name()
}

func purposeDir(id KeyID) string {
	return layoutRoot + "/" + id.App() + "/" + id.Purpose()
}

// metaPath is the path of a key's metadata file: where every new key is
// written.
func metaPath(id KeyID) string { return purposeDir(id) + "/" + id.Name() + keyFileSuffix }

// legacyMetaPath is the path of a legacy key's metadata file.
func legacyMetaPath(id KeyID) string { return keyDir(id) + "/" + metaFileName }

// MetaPath returns the storage path of key id's metadata file, where a
// new key is written: keystore/<app>/<purpose>/<name>~meta.json (for tools
// and tests that read or damage it; docs/storage.md).
func MetaPath(id KeyID) string { return metaPath(id) }

// LegacyMetaPath returns the storage path of a legacy key's metadata
// file: keystore/<app>/<purpose>/<name>/meta.json.
func LegacyMetaPath(id KeyID) string { return legacyMetaPath(id) }

// keyNameOf maps an entry of a purpose directory to the name of the key
// it may hold: a subdirectory with a valid segment name is a legacy key's
// directory (a key if it holds a meta.json), a regular file
// "<name>~meta.json" with a valid name is a key's file. ok is false for
// anything else, which is ignored. Every walk of the key tree maps entries
// to keys here (listings, census, quotas, adoption).
func keyNameOf(de fs.DirEntry) (name string, ok bool) {
	n := de.Name()
	if !de.IsDir() {
		var found bool
		if n, found = strings.CutSuffix(n, keyFileSuffix); !found {
			return "", false
		}
	}
	if provider.CheckSegment("name", n) != nil {
		return "", false
	}
	return n, true
}

func handlePath(id KeyID, v Version) string {
	return keyDir(id) + "/v" + v.String() + ".handle"
}

// Checked files. JSON files (MANIFEST, meta.json) are an envelope
//
//	{"kind":"<kind>","format":1,"body":{...},"sha256":"<hex>"}
//
// where sha256 = SHA-256("keystored/<kind>/v1" ‖ 0x00 ‖ path ‖ 0x00 ‖ body
// bytes exactly as stored). Binding the path means a file copied to another
// key's place fails its check. This detects torn, truncated and accidentally
// edited files; it is not a MAC (see docs/security.md).
type fileEnvelope struct {
	Kind   string          `json:"kind"`
	Format int             `json:"format"`
	Body   json.RawMessage `json:"body"`
	SHA256 string          `json:"sha256"`
}

func fileDigest(kind, path string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("keystored/" + kind + "/v1"))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

func encodeChecked(kind, path string, body any) ([]byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding %s: %w", path, err)
	}
	env := fileEnvelope{Kind: kind, Format: formatVersion, Body: raw, SHA256: hex.EncodeToString(fileDigest(kind, path, raw))}
	out, err := json.Marshal(env)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding %s: %w", path, err)
	}
	return append(out, '\n'), nil
}

// decodeChecked verifies the envelope of a file read from path and decodes
// its body into v, refusing unknown fields.
func decodeChecked(kind, path string, data []byte, v any) error {
	corrupt := func(why string) error {
		return provider.Errorf(provider.EIO, "corrupted file %s: %s", path, why)
	}
	var env fileEnvelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return corrupt("not a valid " + kind + " envelope")
	}
	if dec.More() {
		return corrupt("trailing data")
	}
	if env.Kind != kind {
		return corrupt("kind is not " + kind)
	}
	if env.Format != formatVersion {
		return corrupt("unsupported format " + strconv.Itoa(env.Format))
	}
	want := hex.EncodeToString(fileDigest(kind, path, env.Body))
	if subtle.ConstantTimeCompare([]byte(env.SHA256), []byte(want)) != 1 {
		return corrupt("checksum mismatch (torn, edited or moved)")
	}
	// The encoding is canonical: any byte that differs from what
	// encodeChecked writes (case of a field name, spacing) is an edit.
	canon, err := json.Marshal(env)
	if err != nil || !bytes.Equal(append(canon, '\n'), data) {
		return corrupt("not in canonical form (edited)")
	}
	bdec := json.NewDecoder(bytes.NewReader(env.Body))
	bdec.DisallowUnknownFields()
	if err := bdec.Decode(v); err != nil {
		return corrupt("malformed " + kind + " body")
	}
	return nil
}

// Handle files: "KSH" 0x01 ‖ SHA-256("keystored/handle/v1" ‖ 0 ‖ path ‖ 0 ‖
// handle) ‖ handle.
var handleMagic = []byte{'K', 'S', 'H', 1}

const handleHeaderLen = 4 + sha256.Size

func encodeHandle(path string, h provider.Handle) []byte {
	out := make([]byte, 0, handleHeaderLen+len(h))
	out = append(out, handleMagic...)
	out = append(out, fileDigest("handle", path, h)...)
	return append(out, h...)
}

// errHandleCorrupt marks a handle file whose content is damaged (as
// opposed to one that could not be read).
var errHandleCorrupt = errors.New("corrupted handle file")

func decodeHandle(path string, data []byte) (provider.Handle, error) {
	if len(data) < handleHeaderLen+1 || !bytes.Equal(data[:4], handleMagic) {
		return nil, provider.Errorf(provider.EIO, "%s: not a handle file: %w", path, errHandleCorrupt)
	}
	if len(data)-handleHeaderLen > provider.MaxHandle {
		return nil, provider.Errorf(provider.EIO, "%s: handle too large: %w", path, errHandleCorrupt)
	}
	h := data[handleHeaderLen:]
	if subtle.ConstantTimeCompare(data[4:handleHeaderLen], fileDigest("handle", path, h)) != 1 {
		return nil, provider.Errorf(provider.EIO, "%s: checksum mismatch (torn, edited or moved): %w", path, errHandleCorrupt)
	}
	return provider.Handle(append([]byte(nil), h...)), nil
}

// manifestBody is the MANIFEST's body.
type manifestBody struct {
	Provider string    `json:"provider"`
	Secure   bool      `json:"secure"`
	Created  time.Time `json:"created"`
	// KEK is the fingerprint of the KEK the state's handles are wrapped
	// under (provider.Info.KEKs[0] when it was recorded); empty for
	// providers that announce no KEK and for states made before it was
	// recorded.
	KEK string `json:"kek,omitempty"`
	// KEKNext is the fingerprint of the KEK a rotation is rewrapping the
	// handles under (core.Keystore.RotateKEK), from the provider's Begin
	// until the MANIFEST names it as KEK; empty otherwise.
	KEKNext string `json:"kek_next,omitempty"`
}

// metaBody is meta.json's body.
type metaBody struct {
	ID        string        `json:"id"`
	Algorithm string        `json:"algorithm"`
	Uses      []string      `json:"uses"`
	State     string        `json:"state"`
	Current   uint32        `json:"current_version"`
	Provider  string        `json:"provider"`
	Insecure  bool          `json:"insecure"`
	Origin    string        `json:"origin,omitempty"` // "imported"; absent: generated
	Created   time.Time     `json:"created"`
	Revoked   *time.Time    `json:"revoked,omitempty"`
	Destroyed *time.Time    `json:"destroyed,omitempty"`
	Policy    policyBody    `json:"policy"`
	Versions  []versionBody `json:"versions"`
	// Generation counts the key's lifecycle changes (1 after its
	// create); 0, omitted, in files written before generations.
	Generation uint64 `json:"generation,omitempty"`
}

type policyBody struct {
	MinDecryptionVersion  uint32 `json:"min_decryption_version,omitempty"`
	RotationPeriodSeconds int64  `json:"rotation_period_seconds,omitempty"`
}

type versionBody struct {
	Version       uint32     `json:"version"`
	State         string     `json:"state"`
	PublicKey     []byte     `json:"public_key,omitempty"`
	Created       time.Time  `json:"created"`
	Retired       *time.Time `json:"retired,omitempty"`
	Revoked       *time.Time `json:"revoked,omitempty"`
	Destroyed     *time.Time `json:"destroyed,omitempty"`
	SealsReserved uint64     `json:"seals_reserved,omitempty"`
	Origin        string     `json:"origin,omitempty"` // "imported"; absent: generated
	// Handle is the version's provider handle (base64), for versions
	// made since handles moved into meta.json; absent: the handle is in
	// v<N>.handle (older versions), or the version is destroyed.
	Handle []byte `json:"handle,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeVal(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

package tamper

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/privfile"
)

// SnapshotName is the snapshot's file name in the state directory.
const SnapshotName = "audit-index"

// Bounds of a snapshot, checked when it is written and when it is read.
const (
	// MaxSnapshotSize is the largest snapshot file, in bytes.
	MaxSnapshotSize = 256 << 20
	// MaxSnapshotKeys is the most key entries a snapshot holds (every
	// key the log ever named, destroyed ones included): an entry is
	// about 100 bytes plus its ID (at most audit.MaxField), so that many
	// of the longest fit in MaxSnapshotSize.
	MaxSnapshotKeys = 1 << 20
)

const (
	snapshotKind   = "audit-index"
	snapshotFormat = 1
	// maxKeyLen bounds a key ID in a snapshot (a record's Key is at most
	// audit.MaxField bytes).
	maxKeyLen = audit.MaxField
)

// The snapshot is one line of compact JSON, the checked envelope of
// MANIFEST and meta.json (docs/storage.md) around the body below.
type snapshotFile struct {
	Kind   string          `json:"kind"`
	Format int             `json:"format"`
	Body   json.RawMessage `json:"body"`
	SHA256 string          `json:"sha256"`
}

type snapshotBody struct {
	Head snapshotHead `json:"head"`
	// Anchor is the audit.index record that holds the digest of Head,
	// Counter and Keys (indexDigest): the log vouches for the entries
	// (Tracker.Snapshot). Absent only in a snapshot of an empty log.
	Anchor *snapshotHead `json:"anchor,omitempty"`
	// Stopped is the log's last record at a clean stop (its stop
	// checkpoint; Tracker.Stopped): Open refuses a log that does not end
	// there.
	Stopped *snapshotHead   `json:"stopped,omitempty"`
	Counter *uint64         `json:"counter,omitempty"`
	Keys    []snapshotEntry `json:"keys"`
	// Signature is the daemon's audit key's Ed25519 signature (standard
	// base64) of signedMessage: the body without it.
	Signature string `json:"signature,omitempty"`
}

// signedMessage is what a snapshot's signature signs: a domain string
// and the SHA-256 of the body's canonical JSON without the signature. The
// digest, not the body, is signed: a body grows with the number of keys
// (about 80 bytes each) and a signer bounds its messages (64 KiB), so a
// state of a few hundred keys could otherwise not write its index.
func signedMessage(b *snapshotBody) ([]byte, error) {
	data, err := unsignedBody(b)
	if err != nil {
		return nil, err
	}
	return digestMessage(data), nil
}

// digestMessage is signedMessage of a body already encoded (unsignedBody).
func digestMessage(unsigned []byte) []byte {
	sum := sha256.Sum256(unsigned)
	return append([]byte("keystored-audit-index-v2\n"), sum[:]...)
}

// legacyMessage is what a snapshot written before digests were signed
// was signed over: the domain string of v1 and the encoded body itself
// (unsignedBody). Verify accepts either.
func legacyMessage(unsigned []byte) []byte {
	return append([]byte("keystored-audit-index-v1\n"), unsigned...)
}

// unsignedBody is the canonical JSON of b without its signature.
func unsignedBody(b *snapshotBody) ([]byte, error) {
	c := *b
	c.Signature = ""
	data, err := json.Marshal(&c)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encode audit index: %w", err)
	}
	return data, nil
}

type snapshotHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

type snapshotEntry struct {
	ID      string `json:"id"`
	Gen     uint64 `json:"gen"`
	Seq     uint64 `json:"seq"`
	Applied bool   `json:"applied"`
}

// snapshotSum is SHA-256("keystored/audit-index/v1" ‖ 0 ‖ "audit-index" ‖
// 0 ‖ body), the checksum of the envelope (the path is the file's path
// relative to the state directory).
func snapshotSum(body []byte) string {
	h := sha256.New()
	h.Write([]byte("keystored/" + snapshotKind + "/v1"))
	h.Write([]byte{0})
	h.Write([]byte(SnapshotName))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// body returns the index's current state as a snapshot body (no anchor,
// not stopped), keys sorted.
func (x *Index) body() *snapshotBody {
	x.mu.RLock()
	b := &snapshotBody{Head: snapshotHead{Seq: x.head.Seq, Hash: x.head.Hash}, Keys: make([]snapshotEntry, 0, len(x.keys))}
	if x.hasCounter {
		c := x.counter
		b.Counter = &c
	}
	for id, e := range x.keys {
		b.Keys = append(b.Keys, snapshotEntry{ID: id, Gen: e.gen, Seq: e.seq, Applied: e.applied})
	}
	x.mu.RUnlock()
	sort.Slice(b.Keys, func(i, j int) bool { return b.Keys[i].ID < b.Keys[j].ID })
	return b
}

// indexDigest is the hex SHA-256 of what an audit.index record vouches
// for: the body's head, counter and keys (not its anchor or stop mark),
// in their canonical JSON.
func indexDigest(b *snapshotBody) (string, error) {
	core := snapshotBody{Head: b.Head, Counter: b.Counter, Keys: b.Keys}
	data, err := json.Marshal(&core)
	if err != nil {
		return "", provider.Errorf(provider.EIO, "encode audit index: %w", err)
	}
	sum := sha256.Sum256(append([]byte("keystored/audit-index-digest/v1\x00"), data...))
	return hex.EncodeToString(sum[:]), nil
}

func encodeBody(b *snapshotBody) ([]byte, error) {
	if len(b.Keys) > MaxSnapshotKeys {
		return nil, provider.Errorf(provider.EDQUOT, "audit index holds %d keys, more than a snapshot's bound of %d", len(b.Keys), MaxSnapshotKeys)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encode audit index: %w", err)
	}
	out, err := json.Marshal(snapshotFile{Kind: snapshotKind, Format: snapshotFormat, Body: body, SHA256: snapshotSum(body)})
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encode audit index: %w", err)
	}
	out = append(out, '\n')
	if len(out) > MaxSnapshotSize {
		return nil, provider.Errorf(provider.EDQUOT, "audit index snapshot would be %d bytes, more than its bound of %d", len(out), MaxSnapshotSize)
	}
	return out, nil
}

// decodeSnapshot parses and checks a snapshot file: envelope, checksum,
// canonical form, bounds, and each entry.
func decodeSnapshot(data []byte) (*Index, error) {
	bad := func(format string, args ...any) (*Index, error) {
		return nil, provider.Errorf(provider.EIO, "audit index: "+format, args...)
	}
	if len(data) > MaxSnapshotSize {
		return bad("%d bytes, more than the bound of %d", len(data), MaxSnapshotSize)
	}
	line, ok := bytes.CutSuffix(data, []byte("\n"))
	if !ok || bytes.IndexByte(line, '\n') >= 0 {
		return bad("not one line ending with a newline (torn or edited)")
	}
	var f snapshotFile
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return bad("envelope does not parse: %v", err)
	}
	if f.Kind != snapshotKind || f.Format != snapshotFormat {
		return bad("kind %q format %d, want %q format %d", f.Kind, f.Format, snapshotKind, snapshotFormat)
	}
	if f.SHA256 != snapshotSum(f.Body) {
		return bad("checksum does not match (torn or edited)")
	}
	var b snapshotBody
	dec = json.NewDecoder(bytes.NewReader(f.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return bad("body does not parse: %v", err)
	}
	if len(b.Keys) > MaxSnapshotKeys {
		return bad("%d keys, more than the bound of %d", len(b.Keys), MaxSnapshotKeys)
	}
	cp := b.Head
	if len(cp.Hash) != 64 || strings.Trim(cp.Hash, "0123456789abcdef") != "" || (cp.Seq == 0 && cp.Hash != audit.Genesis) {
		return bad("head %d:%q is not a checkpoint", cp.Seq, cp.Hash)
	}
	for _, h := range []*snapshotHead{b.Anchor, b.Stopped} {
		if h != nil && (len(h.Hash) != 64 || strings.Trim(h.Hash, "0123456789abcdef") != "" || h.Seq <= cp.Seq) {
			return bad("anchor or stop mark %d:%q is not a record after the head", h.Seq, h.Hash)
		}
	}
	if b.Stopped != nil && (b.Anchor == nil || b.Stopped.Seq < b.Anchor.Seq) {
		return bad("stop mark without an anchor before it")
	}
	x := NewIndex()
	x.head = audit.Checkpoint{Seq: cp.Seq, Hash: cp.Hash}
	if b.Anchor != nil {
		x.anchor = &audit.Checkpoint{Seq: b.Anchor.Seq, Hash: b.Anchor.Hash}
	}
	if b.Stopped != nil {
		x.stopped = &audit.Checkpoint{Seq: b.Stopped.Seq, Hash: b.Stopped.Hash}
	}
	if b.Signature != "" {
		sig, err := base64.StdEncoding.Strict().DecodeString(b.Signature)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return bad("signature is not 64 bytes of standard base64")
		}
		unsigned, err := unsignedBody(&b)
		if err != nil {
			return nil, err
		}
		x.sig, x.signedMsg, x.legacyMsg = sig, digestMessage(unsigned), legacyMessage(unsigned)
	}
	if b.Counter != nil {
		x.counter, x.hasCounter = *b.Counter, true
	}
	for i, e := range b.Keys {
		switch {
		case e.ID == "" || len(e.ID) > maxKeyLen || strings.ContainsRune(e.ID, '@'):
			return bad("entry %d: key ID %q", i, e.ID)
		case i > 0 && b.Keys[i-1].ID >= e.ID:
			return bad("entry %d: keys not sorted or repeated", i)
		case e.Gen == 0 || e.Seq == 0 || e.Seq > cp.Seq:
			return bad("entry %d (%s): generation %d at seq %d, head %d", i, e.ID, e.Gen, e.Seq, cp.Seq)
		}
		x.keys[e.ID] = entry{gen: e.Gen, seq: e.Seq, applied: e.Applied}
	}
	again, err := encodeBody(&b)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, data) {
		return bad("not in canonical form (edited)")
	}
	return x, nil
}

// LoadSnapshot reads the snapshot at path. It must be a private file of
// the daemon's user (internal/privfile's checks) of at most
// MaxSnapshotSize bytes. Errors: ENOENT (wrapping fs.ErrNotExist) if it
// does not exist; EIO for a file that fails any check — torn, edited,
// over its bounds; EPERM for a symlink or a file others can read.
func LoadSnapshot(path string) (*Index, error) {
	data, err := privfile.Read(path, "audit index", MaxSnapshotSize)
	if err != nil {
		return nil, err
	}
	x, err := decodeSnapshot(data)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "%s: %w", path, err)
	}
	return x, nil
}

// writeSnapshot writes b, with its anchor and stop mark, to path
// atomically and durably: a temporary file beside it (0600), fsync,
// rename over path, fsync of the directory. Callers serialise writes on
// one path (Tracker does).
func writeSnapshot(path string, b *snapshotBody) error {
	data, err := encodeBody(b)
	if err != nil {
		return err
	}
	return writeDurable(path, "audit index", data)
}

// writeDurable replaces path with data: temp file in its directory,
// fsync, rename, directory fsync. The temporary file is removed on
// failure.
func writeDurable(path, what string, data []byte) error {
	return putDurable(path, what, data, false)
}

// createDurable is writeDurable that never replaces: EALREADY when path
// exists (the temporary file is linked to path, which fails if it
// exists, then removed).
func createDurable(path, what string, data []byte) error {
	return putDurable(path, what, data, true)
}

func putDurable(path, what string, data []byte, exclusive bool) error {
	q := what + " " + path
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return provider.Errorf(provider.EIO, "write %s: %w", q, err)
	}
	name := tmp.Name()
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
	case exclusive:
		if err = os.Link(name, path); err == nil {
			err = os.Remove(name)
		}
	default:
		err = os.Rename(name, path)
	}
	if err != nil {
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		if errors.Is(err, fs.ErrExist) {
			return provider.Errorf(provider.EALREADY, "write %s: it exists", q)
		}
		return provider.Errorf(provider.EIO, "write %s: %w", q, err)
	}
	if err := privfile.SyncDir(dir); err != nil {
		return provider.Errorf(provider.EIO, "write %s: fsync directory: %w", q, err)
	}
	return nil
}

// removeTemps removes temporary files writeDurable left for path after a
// crash.
func removeTemps(path string) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return provider.Errorf(provider.EIO, "list %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "."+base+".tmp-") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return provider.Errorf(provider.EIO, "remove leftover %s: %w", filepath.Join(dir, e.Name()), err)
			}
		}
	}
	return nil
}

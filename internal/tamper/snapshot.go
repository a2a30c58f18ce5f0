package tamper

import (
	"bytes"
	"crypto/sha256"
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
	MaxSnapshotSize = 64 << 20
	// MaxSnapshotKeys is the most key entries a snapshot holds: at the
	// longest key ID an entry is under 300 bytes, so MaxSnapshotKeys of
	// them fit in MaxSnapshotSize.
	MaxSnapshotKeys = 200_000
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
	// Stopped: written by Tracker.Stopped after the log's last record
	// (its stop checkpoint); Open refuses records after Head.
	Stopped bool            `json:"stopped,omitempty"`
	Counter *uint64         `json:"counter,omitempty"`
	Keys    []snapshotEntry `json:"keys"`
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

// encode returns the snapshot file of the index's current state.
func (x *Index) encode(stopped bool) ([]byte, error) {
	x.mu.RLock()
	b := snapshotBody{Head: snapshotHead{Seq: x.head.Seq, Hash: x.head.Hash}, Stopped: stopped, Keys: make([]snapshotEntry, 0, len(x.keys))}
	if x.hasCounter {
		c := x.counter
		b.Counter = &c
	}
	for id, e := range x.keys {
		b.Keys = append(b.Keys, snapshotEntry{ID: id, Gen: e.gen, Seq: e.seq, Applied: e.applied})
	}
	x.mu.RUnlock()
	return encodeBody(&b)
}

func encodeBody(b *snapshotBody) ([]byte, error) {
	if len(b.Keys) > MaxSnapshotKeys {
		return nil, provider.Errorf(provider.EDQUOT, "audit index holds %d keys, more than a snapshot's bound of %d", len(b.Keys), MaxSnapshotKeys)
	}
	sort.Slice(b.Keys, func(i, j int) bool { return b.Keys[i].ID < b.Keys[j].ID })
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
	x := NewIndex()
	x.head = audit.Checkpoint{Seq: cp.Seq, Hash: cp.Hash}
	x.stopped = b.Stopped
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

// WriteSnapshot copies the index (under its lock, so the copy is one
// point of the log), calls sync — the audit log's Sync, so that the
// snapshot never covers a record that is not on disk — and writes the
// copy to path atomically and durably: a temporary file beside it (0600),
// fsync, rename over path, fsync of the directory. Callers serialise
// WriteSnapshot calls on one path (Tracker does).
func (x *Index) WriteSnapshot(path string, sync func() error) error {
	return x.writeSnapshot(path, sync, false)
}

// writeSnapshot is WriteSnapshot, marking the snapshot as written after a
// clean stop when stopped is set.
func (x *Index) writeSnapshot(path string, sync func() error, stopped bool) error {
	data, err := x.encode(stopped)
	if err != nil {
		return err
	}
	if sync != nil {
		if err := sync(); err != nil {
			return provider.Errorf(provider.EIO, "audit index not written: the audit log's sync failed: %w", err)
		}
	}
	return writeDurable(path, "audit index", data)
}

// writeDurable replaces path with data: temp file in its directory,
// fsync, rename, directory fsync. The temporary file is removed on
// failure.
func writeDurable(path, what string, data []byte) error {
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
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return provider.Errorf(provider.EIO, "write %s: %w", q, err)
	}
	if err := syncDir(dir); err != nil {
		return provider.Errorf(provider.EIO, "write %s: fsync directory: %w", q, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
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

package tamper

import (
	"crypto/ed25519"
	"encoding/base64"

	"github.com/nexus-os/keystored/core/provider"
)

// WriteSnapshot writes the index to path with no anchor and no
// signature (tests of the file format; Tracker.Snapshot writes the
// anchored, signed snapshot Open requires):
// sync is called first — the audit log's Sync, so that the snapshot never
// covers a record that is not on disk.
func (x *Index) WriteSnapshot(path string, sync func() error) error {
	b := x.body()
	if sync != nil {
		if err := sync(); err != nil {
			return provider.Errorf(provider.EIO, "audit index not written: the audit log's sync failed: %w", err)
		}
	}
	return writeSnapshot(path, b)
}

// ResignLegacy rewrites the snapshot at path as a snapshot written before
// digests were signed: its signature, by key, over the body itself
// (legacyMessage).
func ResignLegacy(path string, key ed25519.PrivateKey) error {
	x, err := LoadSnapshot(path)
	if err != nil {
		return err
	}
	b := x.body()
	if x.anchor != nil {
		b.Anchor = &snapshotHead{Seq: x.anchor.Seq, Hash: x.anchor.Hash}
	}
	if x.stopped != nil {
		b.Stopped = &snapshotHead{Seq: x.stopped.Seq, Hash: x.stopped.Hash}
	}
	unsigned, err := unsignedBody(b)
	if err != nil {
		return err
	}
	b.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, legacyMessage(unsigned)))
	return writeSnapshot(path, b)
}

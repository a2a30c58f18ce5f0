package tamper

import "github.com/nexus-os/keystored/core/provider"

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

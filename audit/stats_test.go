package audit_test

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
)

// TestStats: Stats counts the records and bytes written and the fsyncs
// (every record, with SyncEveryRecord), and the observer sees each fsync.
func TestStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit", "audit.jsonl")
	var observed atomic.Int64
	l, err := audit.Open(path, audit.WithSync(audit.SyncEveryRecord), audit.WithSyncObserver(func(d time.Duration) {
		if d < 0 {
			t.Errorf("negative fsync duration %v", d)
		}
		observed.Add(1)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s != (audit.Stats{}) {
		t.Errorf("Stats of a new log = %+v, want zero", s)
	}
	const n = 5
	for i := range n {
		if _, err := l.Append(t.Context(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	s := l.Stats()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != n || s.Bytes != uint64(fi.Size()) {
		t.Errorf("Stats = %+v, want %d records and %d bytes (the file's size)", s, n, fi.Size())
	}
	if s.Syncs != n || observed.Load() != n {
		t.Errorf("Stats.Syncs = %d, observed %d fsyncs; want %d (one per sequential record)", s.Syncs, observed.Load(), n)
	}
}

package audit_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
)

// WithDurableObserver reports the seq through which records are fsynced:
// nothing for records only written (interval mode), the record of an
// AppendSync, every record of a segment sealed by a rotation, and seqs
// only grow.
func TestDurableObserver(t *testing.T) {
	var mu sync.Mutex
	var got []uint64
	observe := func(seq uint64) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, seq)
	}
	last := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(got); i++ {
			if got[i] < got[i-1] {
				t.Errorf("reports went back: %v", got)
			}
		}
		if len(got) == 0 {
			return 0
		}
		return got[len(got)-1]
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path, audit.WithSync(audit.SyncInterval(time.Hour)), audit.WithSegmentSize(audit.MinSegmentSize), audit.WithDurableObserver(observe))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := audit.Record{Time: time.Unix(1, 0).UTC(), Op: "test", Result: "ok", Detail: "a detail that makes the record longer"}
	r, err := l.Append(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if s := last(); s != 0 {
		t.Errorf("after an Append: reported %d, want nothing", s)
	}
	if r, err = l.AppendSync(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if s := last(); s != r.Seq {
		t.Errorf("after AppendSync of seq %d: reported %d", r.Seq, s)
	}
	// Fill the 4 KiB segment until a rotation seals it.
	var before uint64
	for i := 0; i < 100 && last() == r.Seq; i++ {
		before = r.Seq
		if r, err = l.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if s := last(); s != before {
		t.Errorf("after the rotation before seq %d: reported %d, want %d (the sealed segment's last record)", r.Seq, s, before)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

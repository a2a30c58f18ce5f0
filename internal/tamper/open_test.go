package tamper_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/tamper"
)

// tracked makes a state whose log records generations and whose snapshot
// has seen them, and closes it: a=gen 2 applied, b=gen 1.
func tracked(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	appendVia(t, tr,
		intent("keys.create", "a/p/k", 1), applied("a/p/k", 1),
		intent("keys.revoke", "a/p/k", 2), applied("a/p/k", 2),
		intent("keys.create", "b/p/k", 1))
	e.closeTracker(tr)
	return e
}

func TestOpenFirstRun(t *testing.T) {
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	if h := tr.Index().Head(); h.Seq != 0 {
		t.Errorf("head %v on a new log", h)
	}
	if _, err := tamper.LoadSnapshot(filepath.Join(e.state, tamper.SnapshotName)); err != nil {
		t.Errorf("no snapshot after Open: %v", err)
	}
	appendVia(t, tr, intent("keys.create", "a/p/k", 1))
	wantExpected(t, tr.Index(), "a/p/k", 1, false, true) // the observer is attached
}

func TestOpenRestartPicksUpRecordsAfterTheSnapshot(t *testing.T) {
	e := tracked(t)
	// Records written after the last snapshot (the daemon crashed).
	e.appendRaw(intent("keys.destroy", "b/p/k", 2), intent("keys.create", "c/p/k", 1))
	tr := e.mustOpen(e.options())
	wantExpected(t, tr.Index(), "a/p/k", 2, true, true)
	wantExpected(t, tr.Index(), "b/p/k", 2, false, true)
	wantExpected(t, tr.Index(), "c/p/k", 1, false, true)
	if got := len(ofOp(readLog(t, e.path), tamper.OpOverride)); got != 0 {
		t.Errorf("%d override records without an override", got)
	}
}

func TestOpenLogWithoutGenerationsNeedsNoIndex(t *testing.T) {
	e := newEnv(t)
	e.appendRaw(rec("keys.sign", "a/p/k", 0, "ok"), rec("keys.create", "a/p/k", 0, "ok"))
	tr := e.mustOpen(e.options())
	if h := tr.Index().Head(); h.Seq != 2 {
		t.Errorf("head %v, want seq 2", h)
	}
}

func TestOpenRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tamper   func(t *testing.T, e *env)
		want     error
		says     []string
		noOpen   bool   // refused before OpenLog
		accepted string // the override record's words
	}{
		{
			name: "log deleted",
			tamper: func(t *testing.T, e *env) {
				if err := os.RemoveAll(filepath.Dir(e.path)); err != nil {
					t.Fatal(err)
				}
			},
			want: tamper.ErrLogMissing, says: []string{"last saw seq 5", "--accept-audit-log-change"}, noOpen: true, accepted: "log deleted",
		},
		{
			name: "log replaced by a fresh chain",
			tamper: func(t *testing.T, e *env) {
				if err := os.RemoveAll(filepath.Dir(e.path)); err != nil {
					t.Fatal(err)
				}
				e.appendRaw(rec("keys.sign", "x/p/k", 0, "ok"), rec("keys.sign", "x/p/k", 0, "ok"),
					rec("keys.sign", "x/p/k", 0, "ok"), rec("keys.sign", "x/p/k", 0, "ok"), rec("keys.sign", "x/p/k", 0, "ok"),
					rec("keys.sign", "x/p/k", 0, "ok"))
			},
			want: tamper.ErrLogReplaced, says: []string{"seq 5", "replaced", "--accept-audit-log-change"}, accepted: "log replaced",
		},
		{
			name: "log truncated below the snapshot's head",
			tamper: func(t *testing.T, e *env) {
				data, err := os.ReadFile(e.path)
				if err != nil {
					t.Fatal(err)
				}
				lines := bytes.SplitAfter(data, []byte("\n"))
				writeFile(t, e.path, bytes.Join(lines[:3], nil))
			},
			want: tamper.ErrLogReplaced, says: []string{"ends at seq 3", "last saw seq 5", "truncated"}, accepted: "log truncated",
		},
		{
			name: "snapshot missing with a tracked log",
			tamper: func(t *testing.T, e *env) {
				if err := os.Remove(filepath.Join(e.state, tamper.SnapshotName)); err != nil {
					t.Fatal(err)
				}
			},
			want: tamper.ErrIndexMissing, says: []string{"audit-index", "--accept-audit-log-change"}, accepted: "index missing",
		},
		{
			name: "snapshot corrupt",
			tamper: func(t *testing.T, e *env) {
				p := filepath.Join(e.state, tamper.SnapshotName)
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				data[len(data)/2] ^= 1
				writeFile(t, p, data)
			},
			want: tamper.ErrIndexCorrupt, says: []string{"--accept-audit-log-change"}, noOpen: true, accepted: "index unreadable",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tracked(t)
			tc.tamper(t, e)
			e.opened, e.log = 0, nil
			_, err := e.open(e.options())
			wantErr(t, err, tc.want, provider.EIO, tc.says...)
			if tc.noOpen && e.opened != 0 {
				t.Errorf("OpenLog called %d times before the refusal", e.opened)
			}
			if tc.name == "log deleted" {
				if _, err := os.Lstat(e.path); err == nil {
					t.Error("a fresh log was created although Open refused")
				}
			}
			// The log is not held after a refusal: Open closed it.
			if e.log != nil {
				if _, err := e.log.Append(context.Background(), rec("x.y", "", 0, "ok")); err == nil {
					t.Error("the log Open opened is still open after its refusal")
				}
			}

			// The override accepts it, rebuilds the index from the log,
			// and says so in the log.
			o := e.options()
			o.AcceptLogChange = true
			tr := e.mustOpen(o)
			rs := readLog(t, e.path)
			ov := ofOp(rs, tamper.OpOverride)
			if len(ov) != 1 || !strings.Contains(ov[0].Detail, "log change accepted ("+tc.accepted+")") {
				t.Fatalf("override records %+v, want one saying %q", ov, tc.accepted)
			}
			if h := tr.Index().Head(); h.Seq != rs[len(rs)-1].Seq {
				t.Errorf("head %v, log ends at %d", h, rs[len(rs)-1].Seq)
			}
			// The index is what the log holds now.
			for _, id := range tr.Index().Keys() {
				if _, _, found := tr.Index().Expected(id); !found {
					t.Errorf("Keys lists %s, Expected does not know it", id)
				}
			}
			e.closeTracker(tr)
			// The next start needs no override.
			tr = e.mustOpen(e.options())
			e.closeTracker(tr)
		})
	}
}

func TestOpenAcceptWithoutChangeIsAudited(t *testing.T) {
	e := tracked(t)
	o := e.options()
	o.AcceptLogChange = true
	tr := e.mustOpen(o)
	wantExpected(t, tr.Index(), "a/p/k", 2, true, true)
	ov := ofOp(readLog(t, e.path), tamper.OpOverride)
	if len(ov) != 1 || !strings.Contains(ov[0].Detail, "(none found)") {
		t.Fatalf("override records %+v", ov)
	}
}

func TestOpenTruncatedRebuildForgetsWhatTheLogLost(t *testing.T) {
	e := tracked(t)
	data, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.path, bytes.Join(bytes.SplitAfter(data, []byte("\n"))[:2], nil)) // a: gen 1 applied
	o := e.options()
	o.AcceptLogChange = true
	tr := e.mustOpen(o)
	wantExpected(t, tr.Index(), "a/p/k", 1, true, true)
	wantExpected(t, tr.Index(), "b/p/k", 0, false, false)
}

func TestOpenSegmentsMovedAway(t *testing.T) {
	// Sealed segments moved elsewhere (an archive): what the snapshot saw
	// is still in the log, so it opens; the snapshot remembers the keys of
	// the records moved away.
	e := newEnv(t)
	e.seg = audit.MinSegmentSize
	tr := e.mustOpen(e.options())
	appendVia(t, tr, intent("keys.create", "a/p/k", 1))
	for range 40 {
		appendVia(t, tr, rec("keys.sign", "a/p/k", 0, "ok"))
	}
	e.closeTracker(tr)
	sealed := sealedSegments(t, e)
	if len(sealed) < 2 {
		t.Fatalf("%d sealed segments, want 2 or more", len(sealed))
	}
	if err := os.Remove(sealed[0]); err != nil {
		t.Fatal(err)
	}
	tr = e.mustOpen(e.options())
	wantExpected(t, tr.Index(), "a/p/k", 1, false, true)
	e.closeTracker(tr)

	// Records written after the snapshot and then moved away with the
	// segments holding them are gone: refused.
	tr = e.mustOpen(e.options())
	e.closeTracker(tr) // snapshot head: the log's end
	for range 60 {
		e.appendRaw(intent("keys.create", "b/p/k", 1))
	}
	// Keep the newest sealed segment: audit.Open needs it to continue
	// the chain of the current file.
	sealed = sealedSegments(t, e)
	for _, p := range sealed[:len(sealed)-1] {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.open(e.options())
	wantErr(t, err, tamper.ErrLogReplaced, provider.EIO, "the records between are gone")
}

// sealedSegments lists the log's sealed segment files, oldest first.
func sealedSegments(t *testing.T, e *env) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(filepath.Dir(e.path), "audit-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// movingLog reports a head other than the log's at SetObserver: records
// appended between the walk and the attach.
type movingLog struct{ *testLog }

func (l movingLog) SetObserver(f func(audit.Record)) audit.Checkpoint {
	cp := l.testLog.SetObserver(f)
	cp.Seq++
	return cp
}

func TestOpenRefusesAHeadThatMoved(t *testing.T) {
	e := newEnv(t)
	o := e.options()
	inner := o.OpenLog
	o.OpenLog = func() (tamper.Log, error) {
		l, err := inner()
		if err != nil {
			return nil, err
		}
		return movingLog{l.(*testLog)}, nil
	}
	_, err := e.open(o)
	wantErr(t, err, nil, provider.EIO, "head moved")
}

func TestSnapshotWhileRecordsArrive(t *testing.T) {
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if _, err := tr.Log().AppendSync(context.Background(), intent("keys.create", "a/p/k"+strings.Repeat("x", i%5), uint64(i+1))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 20 {
		if err := tr.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	e.closeTracker(tr)
	x, err := tamper.LoadSnapshot(filepath.Join(e.state, tamper.SnapshotName))
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Head().Seq; got != 200 {
		t.Errorf("final snapshot head %d, want 200", got)
	}
	wantExpected(t, x, "a/p/kxxxx", 200, false, true)
}

// A clean stop (Stopped: the log closed, then the snapshot marked) makes
// the next Open refuse any record after it — records appended while no
// daemon ran — and accept them only with the override; after a stop that
// was not clean (Close: a crash-like end) the same records are taken in.
func TestOpenRefusesRecordsAfterACleanStop(t *testing.T) {
	e := newEnv(t)
	tr, err := tamper.Open(context.Background(), e.options())
	if err != nil {
		t.Fatal(err)
	}
	appendVia(t, tr, intent("keys.create", "a/p/k", 1), applied("a/p/k", 1))
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Stopped(audit.Checkpoint{Seq: 1, Hash: tr.Index().Head().Hash}); err == nil {
		t.Fatal("Stopped with a written head behind the index's marked the stop")
	}
	if err := tr.Stopped(e.log.Checkpoint()); err != nil {
		t.Fatalf("Stopped: %v", err)
	}
	// Forged: a record appended with a valid chain while nothing ran.
	e.appendRaw(intent("keys.revoke", "a/p/k", 2))
	_, err = e.open(e.options())
	wantErr(t, err, tamper.ErrLogAppended, provider.EIO, "1 records follow seq 2", "--accept-audit-log-change")

	o := e.options()
	o.AcceptLogChange = true
	tr = e.mustOpen(o)
	wantExpected(t, tr.Index(), "a/p/k", 2, false, true)
	if got := ofOp(readLog(t, e.path), tamper.OpOverride); len(got) != 1 {
		t.Errorf("%d override records, want 1", len(got))
	}
	// Open rewrote the snapshot as not stopped: after a crash (no
	// Stopped), records after it are the normal case.
	e.closeTracker(tr)
	e.appendRaw(intent("keys.destroy", "a/p/k", 3))
	tr = e.mustOpen(e.options())
	wantExpected(t, tr.Index(), "a/p/k", 3, false, true)
}

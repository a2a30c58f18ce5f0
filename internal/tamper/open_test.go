package tamper_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	// The only records: the key's start checkpoint and the audit.index
	// record of Start's snapshot.
	if recs := readLog(t, e.path); len(recs) != 2 || recs[0].Op != audit.OpCheckpoint || recs[1].Op != tamper.OpIndex || tr.Index().Head().Seq != 2 {
		t.Errorf("a new log holds %+v, head %v; want a checkpoint and Start's audit.index record", recs, tr.Index().Head())
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
	if h := tr.Index().Head(); h.Seq != 4 { // two records, the start checkpoint, Start's audit.index
		t.Errorf("head %v, want seq 4", h)
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
			want: tamper.ErrLogMissing, says: []string{"last saw seq 7", "--accept-audit-log-change"}, noOpen: true, accepted: "log deleted",
		},
		{
			name: "log replaced by a fresh chain",
			tamper: func(t *testing.T, e *env) {
				if err := os.RemoveAll(filepath.Dir(e.path)); err != nil {
					t.Fatal(err)
				}
				e.appendRaw(rec("keys.sign", "x/p/k", 0, "ok"), rec("keys.sign", "x/p/k", 0, "ok"),
					rec("keys.sign", "x/p/k", 0, "ok"), rec("keys.sign", "x/p/k", 0, "ok"), rec("keys.sign", "x/p/k", 0, "ok"),
					rec("keys.sign", "x/p/k", 0, "ok"), rec("keys.sign", "x/p/k", 0, "ok"))
			},
			want: tamper.ErrLogReplaced, says: []string{"seq 7", "replaced", "--accept-audit-log-change"}, accepted: "log replaced",
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
			want: tamper.ErrLogReplaced, says: []string{"ends at seq 3", "last saw seq 7", "truncated"}, accepted: "log truncated",
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
	// The final snapshot covers every record before its own audit.index
	// record, the last one but the stop checkpoint.
	idx := ofOp(readLog(t, e.path), tamper.OpIndex)
	if last := idx[len(idx)-1]; x.Head().Seq != last.Seq-1 {
		t.Errorf("final snapshot head %d, its audit.index record at seq %d", x.Head().Seq, last.Seq)
	}
	wantExpected(t, x, "a/p/kxxxx", 200, false, true)
}

// A clean stop (Stopped: the log closed, then the snapshot marked) makes
// the next Open refuse any record after it — records appended while no
// daemon ran — and accept them only with the override; after a stop that
// was not clean (Close: a crash-like end) the same records are taken in.
func TestOpenRefusesRecordsAfterACleanStop(t *testing.T) {
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	appendVia(t, tr, intent("keys.create", "a/p/k", 1), applied("a/p/k", 1))
	if err := tr.SnapshotNow(); err != nil {
		t.Fatal(err)
	}
	if err := e.log.Close(); err != nil { // its last record: the stop checkpoint
		t.Fatal(err)
	}
	if err := tr.Stopped(audit.Checkpoint{Seq: 1, Hash: tr.Index().Head().Hash}); err == nil {
		t.Fatal("Stopped with a written head behind the index's marked the stop")
	}
	if err := tr.Stopped(e.log.Checkpoint()); err != nil {
		t.Fatalf("Stopped: %v", err)
	}
	var err error
	// Forged: a record appended with a valid chain while nothing ran.
	e.appendRaw(intent("keys.revoke", "a/p/k", 2))
	_, err = e.open(e.options())
	wantErr(t, err, tamper.ErrLogAppended, provider.EIO, "a keys.revoke record", "follows the daemon's stop checkpoint", "--accept-audit-log-change")

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

// forgedBody mirrors the snapshot's body (docs/storage.md), field order
// included, as a forger reads it from the docs.
type forgedBody struct {
	Head struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	} `json:"head"`
	Anchor *struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	} `json:"anchor,omitempty"`
	Stopped *struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	} `json:"stopped,omitempty"`
	Counter *uint64 `json:"counter,omitempty"`
	Keys    []struct {
		ID      string `json:"id"`
		Gen     uint64 `json:"gen"`
		Seq     uint64 `json:"seq"`
		Applied bool   `json:"applied"`
	} `json:"keys"`
}

// forgeSnapshot rewrites the state's audit-index with edit applied to its
// body and the checksum recomputed as docs/storage.md specifies: what an
// attacker who knows the format writes (the checksum is not a MAC).
func forgeSnapshot(t *testing.T, e *env, edit func(body *forgedBody)) {
	t.Helper()
	p := filepath.Join(e.state, tamper.SnapshotName)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Kind   string          `json:"kind"`
		Format int             `json:"format"`
		Body   json.RawMessage `json:"body"`
		SHA256 string          `json:"sha256"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	var body forgedBody
	if err := json.Unmarshal(env.Body, &body); err != nil {
		t.Fatal(err)
	}
	edit(&body)
	b, err := json.Marshal(&body)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write([]byte("keystored/audit-index/v1\x00audit-index\x00"))
	h.Write(b)
	env.Body, env.SHA256 = b, hex.EncodeToString(h.Sum(nil))
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, append(out, '\n'))
}

// An index edited to hide a rollback (a key's generation lowered, with the
// checksum recomputed) or stripped of its anchor is refused: the log's
// audit.index record vouches for the entries.
func TestOpenRefusesAnEditedIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(body *forgedBody)
		says string
	}{
		{"a key's generation lowered", func(body *forgedBody) {
			for i := range body.Keys {
				if body.Keys[i].ID == "a/p/k" {
					body.Keys[i].Gen = 1
				}
			}
		}, "was edited"},
		{"a key removed", func(body *forgedBody) { body.Keys = body.Keys[1:] }, "was edited"},
		{"the anchor removed", func(body *forgedBody) { body.Anchor = nil }, "no audit.index anchor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tracked(t)
			forgeSnapshot(t, e, tc.edit)
			if _, err := tamper.LoadSnapshot(filepath.Join(e.state, tamper.SnapshotName)); err != nil {
				t.Fatalf("the forged snapshot does not even load (the test forges badly): %v", err)
			}
			_, err := e.open(e.options())
			wantErr(t, err, tamper.ErrIndexCorrupt, provider.EIO, tc.says, "--accept-audit-log-change")
			o := e.options()
			o.AcceptLogChange = true
			tr := e.mustOpen(o)
			wantExpected(t, tr.Index(), "a/p/k", 2, true, true) // rebuilt from the log
		})
	}
}

// Start checks the snapshot's signature and the checkpoints after its
// head with the daemon's key: another key's snapshot, or checkpoints
// appended under another key (a tail rewritten and re-signed by someone
// else), are refused; with the override, accepted and audited.
func TestStartVerifiesWithTheKey(t *testing.T) {
	other := testSigner{ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))}
	e := tracked(t)
	tr, err := tamper.Open(context.Background(), e.options())
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, tr.Verify(context.Background(), other.PublicKey()), tamper.ErrIndexCorrupt, provider.EIO, "not signed by the daemon's audit key")
	if err := tr.Verify(context.Background(), testSigner{theKey}.PublicKey()); err != nil {
		t.Fatalf("Verify with the right key: %v", err)
	}
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}

	// Records with checkpoints signed by another key after the head.
	l, err := audit.Open(e.path, e.logOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetSigner(other, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), intent("keys.revoke", "a/p/k", 3)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = e.open(e.options())
	wantErr(t, err, tamper.ErrLogForged, provider.EIO, "signature invalid", "--accept-audit-log-change")
	o := e.options()
	o.AcceptLogChange = true
	e.mustOpen(o)
	// Open's ("none found": it saw nothing wrong) and the signature's.
	if ov := ofOp(readLog(t, e.path), tamper.OpOverride); len(ov) != 2 || !strings.Contains(ov[1].Detail, "checkpoint signature invalid") {
		t.Errorf("override records %+v, want Open's and the bad signature's", ov)
	}
}

// A forged intent that takes a key's generation back (or past the next)
// is refused: records cannot make a restored meta.json look current.
func TestOpenRefusesAGenerationGoingBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		gen  uint64
	}{{"back to 1", 1}, {"skipping to 5", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			e := tracked(t) // a/p/k at 2, applied
			e.appendRaw(intent("keys.set-policy", "a/p/k", tc.gen), applied("a/p/k", tc.gen))
			_, err := e.open(e.options())
			wantErr(t, err, tamper.ErrLogForged, provider.EIO, "key a/p/k goes from generation 2 to")
		})
	}
	// The next generation, and the same one again after a change that
	// was not applied, are the normal course.
	e := tracked(t)
	e.appendRaw(intent("keys.rotate", "a/p/k", 3), intent("keys.rotate", "a/p/k", 3), applied("a/p/k", 3), intent("keys.create", "b/p/k", 1))
	tr := e.mustOpen(e.options())
	wantExpected(t, tr.Index(), "a/p/k", 3, true, true)
}

// An accepted log change never lowers what the old index knew: a key's
// generation from before the log was lost stays, so a restored older
// meta.json is still refused.
func TestAcceptKeepsTheOldIndexGenerations(t *testing.T) {
	e := tracked(t) // a/p/k at 2
	if err := os.RemoveAll(filepath.Dir(e.path)); err != nil {
		t.Fatal(err)
	}
	o := e.options()
	o.AcceptLogChange = true
	tr := e.mustOpen(o)
	wantExpected(t, tr.Index(), "a/p/k", 2, true, true)
	wantExpected(t, tr.Index(), "b/p/k", 1, false, true)
}

// No index, no log with generations, but keys in the state: refused (a
// state whose log and index were both removed, or from before
// generations), unless accepted.
func TestOpenRefusesKeysWithoutAnIndex(t *testing.T) {
	e := newEnv(t)
	o := e.options()
	o.HoldsAppKeys = true
	_, err := e.open(o)
	wantErr(t, err, tamper.ErrIndexMissing, provider.EIO, "holds keys", "--accept-audit-log-change")
	o.AcceptLogChange = true
	e.mustOpen(o)
}

// An older index (validly signed and anchored, its head still in the log)
// put back after a clean stop does not hide records appended after the
// stop: the stop checkpoint in the tail marks them.
func TestOldIndexReplayedAfterACleanStop(t *testing.T) {
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	appendVia(t, tr, intent("keys.create", "a/p/k", 1), applied("a/p/k", 1))
	if err := tr.SnapshotNow(); err != nil {
		t.Fatal(err)
	}
	idxPath := filepath.Join(e.state, tamper.SnapshotName)
	old, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	appendVia(t, tr, intent("keys.revoke", "a/p/k", 2), applied("a/p/k", 2))
	e.stopCleanly(tr)
	writeFile(t, idxPath, old)
	e.appendRaw(intent("keys.set-policy", "a/p/k", 3), applied("a/p/k", 3))
	_, err = e.open(e.options())
	wantErr(t, err, tamper.ErrLogAppended, provider.EIO, "follows the daemon's stop checkpoint", "--accept-audit-log-change")
}

// What a start that failed before signing leaves after a clean stop (a
// key's refusal note) is no forgery: the next start is not refused.
func TestRefusalNoteAfterACleanStopIsAllowed(t *testing.T) {
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	appendVia(t, tr, intent("keys.create", "a/p/k", 1), applied("a/p/k", 1))
	e.stopCleanly(tr)
	e.appendRaw(rec("keys.rollback-detected", "a/p/k", 0, "EIO"))
	tr = e.mustOpen(e.options())
	wantExpected(t, tr.Index(), "a/p/k", 1, true, true)
}

// An index of more keys than fit in a message the signer takes (64 KiB:
// about 800 keys) is signed and written, and the next start verifies it:
// the signature covers the body's digest, not the body.
func TestSnapshotOfManyKeysIsSigned(t *testing.T) {
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	for i := range 3000 {
		id := fmt.Sprintf("a/p/k%05d", i)
		appendVia(t, tr, intent("keys.create", id, 1), applied(id, 1))
	}
	if err := tr.SnapshotNow(); err != nil {
		t.Fatalf("snapshot of 3000 keys: %v", err)
	}
	e.closeTracker(tr)
	tr = e.mustOpen(e.options())
	wantExpected(t, tr.Index(), "a/p/k02999", 1, true, true)
}

// A snapshot signed before digests were signed (over its body) still
// verifies; one whose signature is over neither is refused.
func TestLegacySignedSnapshotVerifies(t *testing.T) {
	e := tracked(t)
	snap := filepath.Join(e.state, tamper.SnapshotName)
	if err := tamper.ResignLegacy(snap, theKey); err != nil {
		t.Fatal(err)
	}
	tr := e.mustOpen(e.options())
	wantExpected(t, tr.Index(), "a/p/k", 2, true, true)
	e.closeTracker(tr)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	if err := tamper.ResignLegacy(snap, other); err != nil {
		t.Fatal(err)
	}
	if _, err := e.open(e.options()); err == nil || !strings.Contains(err.Error(), "not signed by the daemon's audit key") {
		t.Fatalf("start over a snapshot signed by another key: %v, want refused", err)
	}
}

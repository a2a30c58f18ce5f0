package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

// segSize is a small segment size: a dozen records each.
const segSize = audit.MinSegmentSize

// sealedFiles returns the names of the sealed segments in dir, sorted.
func sealedFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "audit-") && strings.HasSuffix(e.Name(), ".jsonl") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// appendN appends records from..from+n-1 to l and returns them as written.
func appendN(t testing.TB, l *audit.Log, from, n int) []audit.Record {
	t.Helper()
	out := make([]audit.Record, 0, n)
	for i := from; i < from+n; i++ {
		r, err := l.Append(context.Background(), record(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}

// walkLog verifies the whole log and returns its records.
func walkLog(t testing.TB, path string) ([]audit.Record, audit.VerifyResult) {
	t.Helper()
	var got []audit.Record
	res, err := audit.WalkLog(path, audit.Checkpoint{}, func(r audit.Record) error {
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatalf("WalkLog: %v", err)
	}
	return got, res
}

// segmentedLog writes n records to a log with small segments and returns
// its path and the records.
func segmentedLog(t testing.TB, n int, opts ...audit.Option) (string, []audit.Record) {
	t.Helper()
	path := logPath(t)
	l, err := audit.Open(path, append([]audit.Option{audit.WithSegmentSize(segSize)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	recs := appendN(t, l, 0, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, recs
}

// The current file is sealed before a write would take it past the
// segment size; sealed segments are named by their first seq, never pass
// the size, and chain on: VerifyLog walks them all as one log, and a
// reopened log continues the chain.
func TestSegmentRotation(t *testing.T) {
	path, recs := segmentedLog(t, 200)
	dir := filepath.Dir(path)
	names := sealedFiles(t, dir)
	if len(names) < 5 {
		t.Fatalf("%d sealed segments after 200 records with %d-byte segments: %v", len(names), segSize, names)
	}
	next := uint64(1)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > segSize {
			t.Errorf("%s has %d bytes, over the segment size %d", name, len(data), segSize)
		}
		if want := fmt.Sprintf("audit-%020d.jsonl", next); name != want {
			t.Fatalf("segment %s, want %s", name, want)
		}
		first, err := audit.ParseLine(lines(data)[0][:len(lines(data)[0])-1])
		if err != nil || first.Seq != next {
			t.Fatalf("%s starts with seq %d (%v), want %d", name, first.Seq, err, next)
		}
		next += uint64(len(lines(data)))
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v", name, fi.Mode(), err)
		}
	}
	got, res := walkLog(t, path)
	if len(got) != len(recs) || res.Records != len(recs) || res.Segments != len(names)+1 || res.FirstSeq != 1 || res.LastSeq != 200 || res.LastHash != recs[199].Hash {
		t.Fatalf("VerifyLog = %+v, want 200 records in %d files", res, len(names)+1)
	}
	for i := range recs {
		if !sameRecord(got[i], recs[i]) {
			t.Fatalf("record %d differs", i+1)
		}
	}
	// The current file alone is not a log from the genesis.
	if _, err := audit.VerifyFile(path); err == nil {
		t.Fatal("VerifyFile accepted a later segment as a whole log")
	}
	l := openLog(t, path, audit.WithSegmentSize(segSize))
	more := appendN(t, l, 200, 30)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, res := walkLog(t, path); res.Records != 230 || res.LastHash != more[29].Hash {
		t.Fatalf("after reopening: %+v", res)
	}
	// A checkpoint in an early segment is checked, one past the end
	// reveals a truncation.
	if _, err := audit.VerifyLog(path, cpOf(recs[3]), cpOf(more[29])); err != nil {
		t.Fatalf("VerifyLog with checkpoints: %v", err)
	}
	_, err := audit.VerifyLog(path, audit.Checkpoint{Seq: 3, Hash: recs[4].Hash})
	wantVerifyError(t, "wrong checkpoint in the first segment", err, filepath.Join(dir, names[0]), 3)
	_, err = audit.VerifyLog(path, audit.Checkpoint{Seq: 231, Hash: recs[4].Hash})
	wantVerifyError(t, "checkpoint past the end", err, path, 0)
}

// wantVerifyError requires a *VerifyError naming file (and, if line > 0,
// that line).
func wantVerifyError(t *testing.T, what string, err error, file string, line int) *audit.VerifyError {
	t.Helper()
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("%s: %v, want a VerifyError", what, err)
	}
	if ve.File != file || line > 0 && ve.Line != line {
		t.Fatalf("%s: error in %s line %d (%s), want %s line %d", what, ve.File, ve.Line, ve.Reason, file, line)
	}
	if code, _ := provider.CodeOf(err); code != provider.EIO {
		t.Fatalf("%s: code %v, want EIO", what, code)
	}
	return ve
}

// Changing, removing or re-chaining anything in a middle segment is
// detected, and the report names that segment (or, for a forger who
// rehashed the whole segment, the next one, where the chain breaks).
func TestSegmentTamperMiddle(t *testing.T) {
	path, recs := segmentedLog(t, 120)
	dir := filepath.Dir(path)
	names := sealedFiles(t, dir)
	if len(names) < 3 {
		t.Fatalf("only %d sealed segments", len(names))
	}
	mid := filepath.Join(dir, names[len(names)/2])
	orig, err := os.ReadFile(mid)
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := os.WriteFile(mid, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ls := lines(orig)
	for _, c := range []struct {
		name string
		data func() []byte
		file string
		line int
	}{
		{"a flipped bit", func() []byte {
			d := bytes.Clone(orig)
			d[len(ls[0])+40] ^= 1
			return d
		}, mid, 2},
		{"a deleted record", func() []byte { return bytes.Join(append(append([][]byte{}, ls[:1]...), ls[2:]...), nil) }, mid, 2},
		{"two records swapped", func() []byte {
			c := append([][]byte{}, ls...)
			c[1], c[2] = c[2], c[1]
			return bytes.Join(c, nil)
		}, mid, 2},
		{"the last record cut off", func() []byte { return bytes.Join(ls[:len(ls)-1], nil) }, filepath.Join(dir, names[len(names)/2+1]), 1},
		{"every record rewritten and rehashed", func() []byte {
			var out []byte
			prev := ""
			for i, ln := range ls {
				r, err := audit.ParseLine(ln[:len(ln)-1])
				if err != nil {
					t.Fatal(err)
				}
				if i > 0 {
					r.Prev = prev
				}
				r.Result = "EPERM"
				r = audit.Rehash(r)
				prev = r.Hash
				out = append(append(out, audit.EncodeLine(r)...), '\n')
			}
			return out
		}, filepath.Join(dir, names[len(names)/2+1]), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer restore()
			if err := os.WriteFile(mid, c.data(), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := audit.VerifyLog(path)
			wantVerifyError(t, "VerifyLog", err, c.file, c.line)
		})
	}
	if _, res := walkLog(t, path); res.Records != len(recs) {
		t.Fatalf("restored log: %+v", res)
	}
}

// A missing segment in the middle, or the one right before the current
// file, is reported as missing, with the seqs it held; a renamed segment
// is reported too.
func TestSegmentMissing(t *testing.T) {
	path, _ := segmentedLog(t, 120)
	dir := filepath.Dir(path)
	names := sealedFiles(t, dir)
	hide := func(name string) func() {
		p := filepath.Join(dir, name)
		if err := os.Rename(p, p+".away"); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.Rename(p+".away", p); err != nil {
				t.Fatal(err)
			}
		}
	}
	undo := hide(names[2])
	_, err := audit.VerifyLog(path)
	ve := wantVerifyError(t, "a missing middle segment", err, filepath.Join(dir, names[3]), 1)
	if !strings.Contains(ve.Reason, "are missing") {
		t.Fatalf("reason %q does not say segments are missing", ve.Reason)
	}
	undo()

	undo = hide(names[len(names)-1])
	_, err = audit.VerifyLog(path)
	ve = wantVerifyError(t, "the segment before the current file missing", err, path, 1)
	if !strings.Contains(ve.Reason, "are missing") {
		t.Fatalf("reason %q does not say segments are missing", ve.Reason)
	}
	undo()

	// A segment renamed to another seq.
	a := filepath.Join(dir, names[1])
	b := filepath.Join(dir, strings.Replace(names[1], "-0000", "-0009", 1))
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	_, err = audit.VerifyLog(path)
	wantVerifyError(t, "a renamed segment", err, filepath.Join(dir, names[2]), 1)
	if err := os.Rename(b, a); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyLog(path); err != nil {
		t.Fatalf("restored: %v", err)
	}
}

// Segments removed from the start are refused unless the verifier is
// told where the log starts (the last seq and hash of the moved
// segments), which must then match.
func TestSegmentMissingStart(t *testing.T) {
	path, _ := segmentedLog(t, 120)
	dir := filepath.Dir(path)
	names := sealedFiles(t, dir)
	moved := t.TempDir()
	for _, n := range names[:2] {
		if err := os.Rename(filepath.Join(dir, n), filepath.Join(moved, n)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := audit.VerifyLog(path)
	ve := wantVerifyError(t, "first segments removed", err, filepath.Join(dir, names[2]), 1)
	if !strings.Contains(ve.Reason, "no "+audit.OpSegmentPruned+" record") {
		t.Fatalf("reason %q", ve.Reason)
	}
	// What verifying the moved segments where they are now prints.
	old, err := audit.VerifyLog(filepath.Join(moved, "audit.jsonl"))
	if err != nil || old.Segments != 2 {
		t.Fatalf("VerifyLog of the moved segments = %+v, %v", old, err)
	}
	res, err := audit.WalkLog(path, old.Checkpoint(), nil)
	if err != nil || res.FirstSeq != old.LastSeq+1 || res.Records != 120-old.Records {
		t.Fatalf("WalkLog from %v = %+v, %v", old.Checkpoint(), res, err)
	}
	_, err = audit.WalkLog(path, audit.Checkpoint{Seq: old.LastSeq - 1, Hash: old.LastHash}, nil)
	wantVerifyError(t, "a start that does not match", err, filepath.Join(dir, names[2]), 1)
	_, err = audit.WalkLog(path, old.Checkpoint(), nil, audit.Checkpoint{Seq: 2, Hash: old.LastHash})
	wantVerifyError(t, "a checkpoint in a moved segment", err, filepath.Join(dir, names[2]), 1)
}

// With WithMaxSegments the oldest segments are removed, each after a
// record that accounts for it: the log stays verifiable, holds at most
// that many files, and a segment deleted by someone else is still caught.
func TestSegmentRetention(t *testing.T) {
	const keep = 3
	path, recs := segmentedLog(t, 300, audit.WithMaxSegments(keep))
	dir := filepath.Dir(path)
	names := sealedFiles(t, dir)
	if len(names) != keep-1 {
		t.Fatalf("%d sealed segments with WithMaxSegments(%d): %v", len(names), keep, names)
	}
	got, res := walkLog(t, path)
	if res.FirstSeq <= 1 || res.LastSeq < 300 || res.Segments != keep {
		t.Fatalf("VerifyLog = %+v", res)
	}
	for _, r := range got {
		if r.Op == audit.OpSegmentPruned {
			if !strings.HasPrefix(r.Detail, "through ") || !strings.HasPrefix(r.Key, "audit-") || r.Caller.PID != int64(os.Getpid()) {
				t.Fatalf("prune record %+v", r)
			}
		}
	}
	if countOp(got, audit.OpSegmentPruned) == 0 {
		t.Fatal("no prune record in the segments kept")
	}
	// The newest acknowledged records are all there.
	last := recs[len(recs)-1]
	if _, err := audit.VerifyLog(path, cpOf(last)); err != nil {
		t.Fatalf("checkpoint of the last record: %v", err)
	}
	// Someone deletes the oldest remaining segment: not accounted for.
	if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
		t.Fatal(err)
	}
	_, err := audit.VerifyLog(path)
	wantVerifyError(t, "a segment deleted by hand", err, filepath.Join(dir, names[1]), 1)
}

func countOp(rs []audit.Record, op string) int {
	n := 0
	for _, r := range rs {
		if r.Op == op {
			n++
		}
	}
	return n
}

// Open reads the current file and only the last record of the newest
// sealed segment: damage in an older segment does not stop it (VerifyLog
// finds it), a damaged last record of the newest one does.
func TestSegmentOpenReadsOnlyTheTail(t *testing.T) {
	path, _ := segmentedLog(t, 120)
	dir := filepath.Dir(path)
	names := sealedFiles(t, dir)
	first := filepath.Join(dir, names[0])
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	data[50] ^= 1
	if err := os.WriteFile(first, data, 0o600); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, path, audit.WithSegmentSize(segSize))
	appendN(t, l, 120, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = audit.VerifyLog(path)
	wantVerifyError(t, "damage in the oldest segment", err, first, 1)

	newest := filepath.Join(dir, sealedFiles(t, dir)[len(sealedFiles(t, dir))-1])
	nd, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	nd[len(nd)-20] ^= 1
	if err := os.WriteFile(newest, nd, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = audit.Open(path, audit.WithSegmentSize(segSize))
	wantCode(t, err, provider.EIO)
}

// A log from before segments (one audit.jsonl from seq 1) is the first
// segment: it is sealed as audit-00000000000000000001.jsonl at the first
// write that would take it past the size.
func TestSegmentLegacyLog(t *testing.T) {
	path := logPath(t)
	recs := writeRecords(t, path, 40) // about 14 KB in one file
	l := openLog(t, path, audit.WithSegmentSize(segSize))
	more := appendN(t, l, 40, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names := sealedFiles(t, filepath.Dir(path))
	if len(names) != 1 || names[0] != "audit-00000000000000000001.jsonl" {
		t.Fatalf("sealed segments %v", names)
	}
	got, res := walkLog(t, path)
	if res.Records != 43 || !sameRecord(got[39], recs[39]) || !sameRecord(got[42], more[2]) {
		t.Fatalf("VerifyLog = %+v", res)
	}
}

// Concurrent appends across many rotations: every acknowledged record is
// in the log exactly once, in one chain.
func TestSegmentConcurrentAppends(t *testing.T) {
	for _, mode := range []audit.SyncMode{audit.SyncInterval(0), audit.SyncEveryRecord} {
		t.Run(mode.String(), func(t *testing.T) {
			path := logPath(t)
			l := openLog(t, path, audit.WithSegmentSize(segSize), audit.WithSync(mode), audit.WithMaxSegments(4))
			const workers, each = 16, 40
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[uint64]string{}
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						r, err := l.Append(context.Background(), record(w*each+i))
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						seen[r.Seq] = r.Hash
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got, res := walkLog(t, path)
			ours := 0
			for _, r := range got {
				if h, ok := seen[r.Seq]; ok {
					if h != r.Hash {
						t.Fatalf("seq %d: hash differs from the one Append returned", r.Seq)
					}
					ours++
				}
			}
			// Records before the first present segment were pruned: the
			// acknowledged ones still present are all there, and the
			// log holds the last one.
			var maxSeq uint64
			for s := range seen {
				maxSeq = max(maxSeq, s)
			}
			if res.LastSeq < maxSeq || ours != len(seen)-int(countBelow(seen, res.FirstSeq)) {
				t.Fatalf("log %+v holds %d of %d acknowledged records", res, ours, len(seen))
			}
		})
	}
}

func countBelow(seen map[uint64]string, first uint64) int {
	n := 0
	for s := range seen {
		if s < first {
			n++
		}
	}
	return n
}

// A current file missing or empty beside sealed segments (a crash in the
// middle of a rotation) continues the chain of the newest segment.
func TestSegmentOpenAfterInterruptedRotation(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(t *testing.T, path string)
	}{
		{"renamed, no current file", func(*testing.T, string) {}},
		{"new current file still empty", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, recs := segmentedLog(t, 60)
			// Seal the current file by hand, as a rotation does.
			cur, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			firstSeq := uint64(61 - len(lines(cur)))
			sealed := filepath.Join(filepath.Dir(path), fmt.Sprintf("audit-%020d.jsonl", firstSeq))
			if err := os.Rename(path, sealed); err != nil {
				t.Fatal(err)
			}
			c.edit(t, path)
			l := openLog(t, path, audit.WithSegmentSize(segSize))
			more := appendN(t, l, 60, 2)
			if more[0].Seq != 61 || more[0].Prev != recs[59].Hash {
				t.Fatalf("first record after the restart: seq %d prev %s; want 61 after %s", more[0].Seq, more[0].Prev, recs[59].Hash)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if _, res := walkLog(t, path); res.Records != 62 {
				t.Fatalf("VerifyLog = %+v", res)
			}
		})
	}
}

func TestSegmentOptions(t *testing.T) {
	for _, o := range []audit.Option{
		audit.WithSegmentSize(audit.MinSegmentSize - 1),
		audit.WithSegmentSize(-1),
		audit.WithMaxSegments(1),
		audit.WithMaxSegments(-3),
	} {
		_, err := audit.Open(logPath(t), o)
		wantCode(t, err, provider.EINVAL)
	}
}

func cpOf(r audit.Record) audit.Checkpoint { return audit.Checkpoint{Seq: r.Seq, Hash: r.Hash} }

// A rotation stopped at any of its steps (as a crash there would stop it)
// fails the log closed, and a restart continues a chain that verifies and
// holds every record acknowledged before the failure; rotations and
// retention go on working after it.
func TestSegmentRotationCrash(t *testing.T) {
	for _, step := range append(audit.RotationSteps, "torn first write") {
		t.Run(step, func(t *testing.T) {
			path := logPath(t)
			calls := 0
			fault := audit.WithRotationFault(func(s string) error {
				if s == step {
					calls++
					if calls == 4 { // the 4th rotation (or prune) fails
						return errInjected
					}
				}
				return nil
			})
			files := 0
			var torn *faultyFile
			wrap := audit.WithFileWrapper(func(f audit.File) audit.File {
				files++
				if step == "torn first write" && files == 5 {
					torn = &faultyFile{File: f, failWrite: 1, partial: true}
					return torn
				}
				return f
			})
			opts := []audit.Option{audit.WithSegmentSize(segSize), audit.WithMaxSegments(3)}
			l, err := audit.Open(path, append(opts, fault, wrap)...)
			if err != nil {
				t.Fatal(err)
			}
			acked := map[uint64]string{}
			var failed error
			for i := 0; i < 1000 && failed == nil; i++ {
				r, err := l.Append(context.Background(), record(i))
				if err != nil {
					failed = err
					break
				}
				acked[r.Seq] = r.Hash
			}
			wantCode(t, failed, provider.EIO)
			if err := l.Ready(context.Background()); err == nil {
				t.Fatal("the log is still ready after a failed rotation")
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			l2 := openLog(t, path, opts...)
			if step == "torn first write" {
				if got, _ := walkLog(t, path); torn == nil || countOp(got, audit.OpRecoveredTornTail) != 1 {
					t.Fatalf("no torn write (%v) or no recovery record after it", torn != nil)
				}
			}
			after := appendN(t, l2, 1000, 60) // several more rotations and prunes
			if err := l2.Close(); err != nil {
				t.Fatal(err)
			}
			got, res := walkLog(t, path)
			present := map[uint64]string{}
			for _, r := range got {
				present[r.Seq] = r.Hash
			}
			for seq, h := range acked {
				if seq >= res.FirstSeq && present[seq] != h {
					t.Fatalf("acknowledged record %d lost or changed after the restart", seq)
				}
			}
			// The log ends at the last record appended, or after it at
			// prune records only: a removal that just finished plans the
			// next at once, on the Log's own goroutine, so its records
			// may follow the last Append.
			last := after[len(after)-1]
			if present[last.Seq] != last.Hash || res.LastSeq < last.Seq {
				t.Fatalf("log ends at %d without the last record appended, %d", res.LastSeq, last.Seq)
			}
			for _, r := range got {
				if r.Seq > last.Seq && r.Op != audit.OpSegmentPruned {
					t.Fatalf("record %d (%s) after the last record appended, %d: only prune records may follow it", r.Seq, r.Op, last.Seq)
				}
			}
			if n := len(sealedFiles(t, filepath.Dir(path))); n != 2 {
				t.Fatalf("%d sealed segments with WithMaxSegments(3), want 2 and the current file", n)
			}

		})
	}
}

// A Close that begins while a rotation with retention is under way waits
// for it, and the batch being written (and the rotation's own records)
// still go to the log.
func TestSegmentCloseDuringRotation(t *testing.T) {
	path := logPath(t)
	var l *audit.Log
	rotations := 0
	closed := make(chan error, 1)
	hook := audit.WithRotationFault(func(step string) error {
		if step != "sync" {
			return nil
		}
		if rotations++; rotations != 2 { // the 2nd rotation removes a segment
			return nil
		}
		go func() { closed <- l.Close() }()
		for range 1000 { // until Close has begun (bounded)
			if l.Ready(context.Background()) != nil {
				return nil
			}
			time.Sleep(time.Millisecond)
		}
		return errors.New("Close did not begin")
	})
	var err error
	l, err = audit.Open(path, audit.WithSegmentSize(segSize), audit.WithMaxSegments(2), hook)
	if err != nil {
		t.Fatal(err)
	}
	var last audit.Record
	for i := 0; rotations < 2; i++ {
		if last, err = l.Append(context.Background(), record(i)); err != nil {
			t.Fatalf("Append %d, in the batch written while Close waits: %v", i, err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	got, res := walkLog(t, path)
	if res.LastSeq < last.Seq || countOp(got, audit.OpSegmentPruned) != 1 {
		t.Fatalf("log after Close: %+v, %d prune records; want record %d and one prune record", res, countOp(got, audit.OpSegmentPruned), last.Seq)
	}
}

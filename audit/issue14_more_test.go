package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
)

// VerifyCheckpoint accepts each checkpoint of a signed log with its key
// and refuses it with another key, or a record that is no checkpoint.
func TestVerifyCheckpoint(t *testing.T) {
	path, _, s := signedLog(t, 5, 2)
	var cps, others int
	if _, err := audit.WalkLog(path, audit.Checkpoint{}, func(r audit.Record) error {
		if r.Op != audit.OpCheckpoint {
			if audit.VerifyCheckpoint(r, s.pub()) == nil {
				t.Errorf("record %d (%s) verified as a checkpoint", r.Seq, r.Op)
			}
			others++
			return nil
		}
		cps++
		if err := audit.VerifyCheckpoint(r, s.pub()); err != nil {
			t.Errorf("checkpoint %d: %v", r.Seq, err)
		}
		if audit.VerifyCheckpoint(r, testKey(2).Public().(ed25519.PublicKey)) == nil {
			t.Errorf("checkpoint %d verified with another key", r.Seq)
		}
		r.Time = r.Time.Add(1)
		if audit.VerifyCheckpoint(r, s.pub()) == nil {
			t.Errorf("checkpoint %d with its time changed verified", r.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if cps < 3 || others != 5 {
		t.Fatalf("%d checkpoints and %d other records", cps, others)
	}
}

// CheckpointNow signs the head at once; without a signer it is
// EUNAVAILABLE, after Close it fails.
func TestCheckpointNow(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.WithClock(clock.NewFake(epoch)))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckpointNow(context.Background()); err == nil {
		t.Fatal("CheckpointNow without a signer succeeded")
	}
	s := newSigner()
	if err := l.SetSigner(s, 0, 0); err != nil {
		t.Fatal(err)
	}
	r, err := l.Append(context.Background(), record(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckpointNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := l.Checkpoint(); h.Seq != r.Seq+1 {
		t.Fatalf("head %v after CheckpointNow of seq %d", h, r.Seq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.CheckpointNow(context.Background()); err == nil {
		t.Fatal("CheckpointNow after Close succeeded")
	}
	var reasons []string
	if _, err := audit.WalkLog(path, audit.Checkpoint{}, func(r audit.Record) error {
		if r.Op == audit.OpCheckpoint {
			reasons = append(reasons, strings.Fields(r.Detail)[0])
			if err := audit.VerifyCheckpoint(r, s.pub()); err != nil {
				t.Error(err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(reasons, ",") != "start,counter,stop" {
		t.Fatalf("checkpoint reasons %v", reasons)
	}
}

// WalkLogFrom reads from the segment holding the given seq on, and no
// earlier segment: the same records as WalkLog from there.
func TestWalkLogFrom(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path, audit.WithSegmentSize(segSize))
	for i := range 200 {
		if _, err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	all, _ := walkLog(t, path)
	segs, err := filepath.Glob(filepath.Join(filepath.Dir(path), "audit-*.jsonl"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("%d sealed segments (%v), want several", len(segs), err)
	}
	for _, from := range []uint64{1, 100, 199, 200} {
		var got []audit.Record
		res, err := audit.WalkLogFrom(path, from, func(r audit.Record) error {
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		if got[0].Seq > from || got[len(got)-1].Seq != 200 || res.LastHash != all[len(all)-1].Hash {
			t.Fatalf("from %d: read seq %d..%d", from, got[0].Seq, got[len(got)-1].Seq)
		}
		if from > 100 && got[0].Seq == 1 {
			t.Errorf("from %d: read the whole log", from)
		}
	}
	// A segment before the one holding from may be gone: it is not read.
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.WalkLogFrom(path, 200, nil); err != nil {
		t.Fatalf("from the tail with the first segment gone: %v", err)
	}
	if _, err := audit.WalkLog(path, audit.Checkpoint{}, nil); err == nil {
		t.Fatal("WalkLog of a log without its first segment succeeded")
	}
}

// With a key, an emptied log does not verify: a daemon signs a
// checkpoint at its first start.
func TestVerifyEmptyLogWithKey(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyLogWith(path, audit.VerifyOptions{}); err != nil {
		t.Fatalf("an empty log, chain only: %v", err)
	}
	if _, err := audit.VerifyLogWith(path, audit.VerifyOptions{PublicKey: newSigner().pub()}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty log with a key: %v", err)
	}
}

// FuzzParseShipped feeds any bytes as a shipped-checkpoints file: no
// panic, an error or checkpoint records only, each re-encoding to its
// line; seeded from a real sink's output.
func FuzzParseShipped(f *testing.F) {
	path, sink, _ := signedLog(f, 5, 2)
	shipped := sink.data()
	if len(shipped) == 0 {
		f.Fatal("the sink received nothing: empty seed")
	}
	f.Add(shipped)
	f.Add(shipped[:len(shipped)/2])
	f.Add(append(bytes.Clone(shipped), '\n'))
	log, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(log)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := audit.ParseShipped(bytes.NewReader(data))
		if err != nil {
			if code, _ := provider.CodeOf(err); code != provider.EINVAL && code != provider.EMSGSIZE {
				t.Fatalf("error code %v: %v", code, err)
			}
			return
		}
		ls := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		if len(data) == 0 {
			ls = nil
		}
		if len(recs) != len(ls) {
			t.Fatalf("%d records from %d lines", len(recs), len(ls))
		}
		for i, r := range recs {
			if r.Op != audit.OpCheckpoint || !bytes.Equal(audit.EncodeLine(r), ls[i]) {
				t.Fatalf("line %d: %q read as %+v", i+1, ls[i], r)
			}
		}
	})
}

package audit_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

const tamperRecords = 50

// tamperStride is the step between the offsets the byte-level tamper tests
// try: 1 (every offset) normally; under -race, which slows the verifier
// 10-20 times, a deterministic sample. The exhaustive run is the plain
// `go test`.
func tamperStride(t *testing.T) int {
	if raceEnabled {
		t.Log("race detector on: trying every 7th offset (run without -race for every offset)")
		return 7
	}
	return 1
}

// tamperLog returns a valid log of n records and its records.
func tamperLog(t *testing.T, n int) ([]byte, []audit.Record) {
	t.Helper()
	path := logPath(t)
	recs := writeRecords(t, path, n)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, recs
}

// firstChangedLine is the 1-based number of the first line of tampered
// that differs from the same line of orig (or exists in only one of them).
func firstChangedLine(orig, tampered []byte) int {
	a, b := lines(orig), lines(tampered)
	for i := 0; ; i++ {
		if i >= len(a) || i >= len(b) || !bytes.Equal(a[i], b[i]) {
			return i + 1
		}
	}
}

// wantDetected verifies data and requires a *VerifyError at line want.
func wantDetected(t *testing.T, what string, data []byte, want int, cps ...audit.Checkpoint) {
	t.Helper()
	res, err := audit.Verify(bytes.NewReader(data), cps...)
	var verr *audit.VerifyError
	if !errors.As(err, &verr) {
		t.Fatalf("%s: Verify = %+v, %v; want a VerifyError at line %d", what, res, err, want)
	}
	if verr.Line != want {
		t.Fatalf("%s: reported line %d (%s), want %d", what, verr.Line, verr.Reason, want)
	}
	if verr.Seq != uint64(want) {
		t.Fatalf("%s: reported seq %d at line %d, want %d", what, verr.Seq, verr.Line, want)
	}
	if code, _ := provider.CodeOf(err); code != provider.EIO {
		t.Fatalf("%s: code %v, want EIO", what, code)
	}
	if res.Records != want-1 {
		t.Fatalf("%s: %d records before the bad one, want %d", what, res.Records, want-1)
	}
}

// TestTamperByteChanges flips the low bit of every byte of a 50-record log,
// and applies three more masks (case flip, high bit, all bits) to every
// byte of a 12-record one.
func TestTamperByteChanges(t *testing.T) {
	stride := tamperStride(t)
	for _, c := range []struct {
		records int
		masks   []byte
	}{
		{tamperRecords, []byte{0x01}},
		{12, []byte{0x20, 0x80, 0xff}},
	} {
		orig, _ := tamperLog(t, c.records)
		for _, mask := range c.masks {
			for off := 0; off < len(orig); off += stride {
				data := bytes.Clone(orig)
				data[off] ^= mask
				wantDetected(t, "byte "+itoa(off)+" ^ "+itoa(int(mask)), data, firstChangedLine(orig, data))
			}
		}
	}
}

// TestTamperByteInsertDelete deletes every byte of a 12-record log and
// inserts a space, a newline and a digit before every byte.
func TestTamperByteInsertDelete(t *testing.T) {
	orig, _ := tamperLog(t, 12)
	stride := tamperStride(t)
	for off := 0; off < len(orig); off += stride {
		del := append(bytes.Clone(orig[:off]), orig[off+1:]...)
		if off == len(orig)-1 {
			// Deleting the final newline leaves a torn last line.
			wantDetected(t, "delete the last byte", del, 12)
			continue
		}
		wantDetected(t, "delete byte "+itoa(off), del, firstChangedLine(orig, del))
	}
	for off := 0; off <= len(orig); off += stride {
		for _, c := range []byte{' ', '\n', '0'} {
			ins := append(append(bytes.Clone(orig[:off]), c), orig[off:]...)
			if c == '\n' && (off == 0 || orig[off-1] == '\n') {
				// An empty line inserted.
				wantDetected(t, "empty line at "+itoa(off), ins, firstChangedLine(orig, ins))
				continue
			}
			wantDetected(t, "insert "+string(c)+" at "+itoa(off), ins, firstChangedLine(orig, ins))
		}
	}
}

func TestTamperRecords(t *testing.T) {
	orig, recs := tamperLog(t, tamperRecords)
	ls := lines(orig)
	join := func(parts ...[][]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, bytes.Join(p, nil)...)
		}
		return out
	}
	last := audit.Checkpoint{Seq: recs[tamperRecords-1].Seq, Hash: recs[tamperRecords-1].Hash}

	t.Run("deletion", func(t *testing.T) {
		for i := range ls {
			data := join(ls[:i], ls[i+1:])
			if i < len(ls)-1 {
				wantDetected(t, "delete record "+itoa(i+1), data, i+1)
				continue
			}
			// The last record: a chain cannot see it go; a checkpoint can.
			res, err := audit.Verify(bytes.NewReader(data))
			if err != nil || res.LastSeq != tamperRecords-1 {
				t.Fatalf("without the last record: Verify = %+v, %v; want a valid log of %d", res, err, tamperRecords-1)
			}
			wantDetected(t, "delete the last record, with a checkpoint", data, tamperRecords, last)
		}
	})
	t.Run("adjacent swap", func(t *testing.T) {
		for i := 0; i+1 < len(ls); i++ {
			data := join(ls[:i], [][]byte{ls[i+1], ls[i]}, ls[i+2:])
			wantDetected(t, "swap "+itoa(i+1)+" and "+itoa(i+2), data, i+1)
		}
	})
	t.Run("swap any two", func(t *testing.T) {
		stride := tamperStride(t)
		for i := 0; i < len(ls); i += stride {
			for j := i + 1; j < len(ls); j++ {
				s := make([][]byte, len(ls))
				copy(s, ls)
				s[i], s[j] = s[j], s[i]
				wantDetected(t, "swap "+itoa(i+1)+" and "+itoa(j+1), join(s), i+1)
			}
		}
	})
	t.Run("inserted copy", func(t *testing.T) {
		stride := tamperStride(t)
		for pos := 0; pos <= len(ls); pos++ {
			for j := pos % stride; j < len(ls); j += stride {
				data := join(ls[:pos], [][]byte{ls[j]}, ls[pos:])
				wantDetected(t, "copy of "+itoa(j+1)+" at "+itoa(pos+1), data, firstChangedLine(orig, data))
			}
		}
	})
	t.Run("forged insertion", func(t *testing.T) {
		for pos := 0; pos <= len(ls); pos++ {
			// A forger who knows the format but does not recompute the
			// hash: seq and prev fit, the hash is the next record's.
			prev := audit.Genesis
			if pos > 0 {
				prev = recs[pos-1].Hash
			}
			f := record(pos + 1000)
			f.Seq, f.Prev, f.Hash = uint64(pos+1), prev, recs[min(pos, len(recs)-1)].Hash
			line := append(audit.EncodeLine(f), '\n')
			wantDetected(t, "forged record at "+itoa(pos+1), join(ls[:pos], [][]byte{line}, ls[pos:]), pos+1)

			// A forger who recomputes the forged record's own hash but
			// not the rest of the chain: the chain breaks at the next
			// record (and at the end, only a checkpoint shows it).
			l := append(audit.EncodeLine(audit.Rehash(f)), '\n')
			data := join(ls[:pos], [][]byte{l}, ls[pos:])
			if pos < len(ls) {
				wantDetected(t, "recomputed forgery at "+itoa(pos+1), data, pos+2)
			} else if _, err := audit.Verify(bytes.NewReader(data)); err != nil {
				t.Fatalf("a correctly chained record appended at the end: %v", err)
			}
		}
	})
	t.Run("truncation", func(t *testing.T) {
		boundary := map[int]int{0: 0} // offset -> records before it
		off := 0
		for i, l := range ls {
			off += len(l)
			boundary[off] = i + 1
		}
		stride := tamperStride(t)
		for n := range len(orig) {
			data := orig[:n]
			k, ok := boundary[n]
			if !ok && n%stride != 0 {
				continue
			}
			if ok {
				res, err := audit.Verify(bytes.NewReader(data))
				if err != nil || res.Records != k {
					t.Fatalf("cut at record boundary %d: Verify = %+v, %v; want %d records", n, res, err, k)
				}
				wantDetected(t, "cut after "+itoa(k)+" records, with a checkpoint", data, k+1, last)
				continue
			}
			wantDetected(t, "cut at byte "+itoa(n), data, firstChangedLine(orig, data))
		}
	})
	t.Run("checkpoint mismatch", func(t *testing.T) {
		cp := audit.Checkpoint{Seq: 20, Hash: recs[20].Hash} // the hash of seq 21
		wantDetected(t, "wrong checkpoint hash", orig, 20, cp)
		if _, err := audit.Verify(bytes.NewReader(orig), audit.Checkpoint{Seq: 20, Hash: recs[19].Hash}, last); err != nil {
			t.Fatalf("Verify with true checkpoints: %v", err)
		}
	})
	t.Run("rewritten as other JSON", func(t *testing.T) {
		for _, edit := range []struct{ from, to string }{
			{`"seq":`, `"Seq":`},
			{`"seq":`, `"seq": `},
			{`{"seq"`, `{ "seq"`},
			{`"op":"keys.sign"`, `"op":"keys\u002esign"`},
			{`"operator":false`, `"operator":0`},
			{`"version":0`, `"version":0.0`},
			{`"version":0`, `"version":-0`},
			{`"version":0`, `"version":00`},
			{`"key":"`, `"key":"\/`},
			{`Z","caller"`, `+00:00","caller"`},
			{`"hash":"`, `"hash":"`},
		} {
			if edit.from == edit.to {
				continue
			}
			i := bytes.Index(orig, []byte(edit.from))
			if i < 0 {
				t.Fatalf("log has no %q", edit.from)
			}
			data := append(append(bytes.Clone(orig[:i]), edit.to...), orig[i+len(edit.from):]...)
			wantDetected(t, edit.from+" -> "+edit.to, data, firstChangedLine(orig, data))
		}
	})
}

func TestVerifyErrorText(t *testing.T) {
	e := &audit.VerifyError{Line: 7, Seq: 7, Reason: "hash does not match the record"}
	if got, want := e.Error(), "audit: record at line 7 (seq 7): hash does not match the record"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, provider.ErrIO) {
		t.Fatal("VerifyError is not ErrIO")
	}
}

func TestCheckpointParse(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"5:" + h, true},
		{"0:" + audit.Genesis, true},
		{"0:" + h, false},
		{"05:" + h, false},
		{"-1:" + h, false},
		{"5:" + strings.ToUpper(h), false},
		{"5:" + h[:62], false},
		{"5" + h, false},
		{"", false},
	} {
		cp, err := audit.ParseCheckpoint(c.in)
		if c.ok != (err == nil) {
			t.Errorf("ParseCheckpoint(%q) = %v, %v; want ok=%v", c.in, cp, err, c.ok)
			continue
		}
		if err != nil {
			wantCode(t, err, provider.EINVAL)
		} else if cp.String() != c.in {
			t.Errorf("ParseCheckpoint(%q).String() = %q", c.in, cp.String())
		}
	}
}

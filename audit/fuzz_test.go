package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

// goldenSeeds returns the golden log and a few corruptions of it; it fails
// the fuzz target if the golden file is missing (an empty seed set).
func goldenSeeds(f *testing.F) [][]byte {
	f.Helper()
	golden, err := os.ReadFile(goldenFile)
	if err != nil || len(golden) == 0 {
		f.Fatalf("no seeds: reading %s: %v", goldenFile, err)
	}
	ls := lines(golden)
	flipped := bytes.Clone(golden)
	flipped[len(flipped)/2] ^= 0x01
	swapped := bytes.Join(append([][]byte{ls[1], ls[0]}, ls[2:]...), nil)
	return [][]byte{
		golden,
		golden[:len(golden)/2],
		golden[:len(golden)-1],
		flipped,
		swapped,
		bytes.Join(ls[1:], nil),
		append(bytes.Clone(golden), ls[3]...),
		ls[0],
		{},
		[]byte("\n"),
	}
}

func FuzzVerify(f *testing.F) {
	seeds := goldenSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed set")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := audit.Verify(bytes.NewReader(data))
		n := 0
		wres, werr := audit.Walk(bytes.NewReader(data), func(audit.Record) error { n++; return nil })
		if res != wres || (err == nil) != (werr == nil) || n != res.Records {
			t.Fatalf("Verify = %+v, %v; Walk = %+v, %v with %d records", res, err, wres, werr, n)
		}
		if res.LastSeq != uint64(res.Records) || len(res.LastHash) != 64 {
			t.Fatalf("inconsistent result %+v", res)
		}
		if err == nil {
			if len(data) > 0 && data[len(data)-1] != '\n' {
				t.Fatal("accepted a log without a final newline")
			}
			if res.Records != bytes.Count(data, []byte("\n")) {
				t.Fatalf("accepted %d records in %d lines", res.Records, bytes.Count(data, []byte("\n")))
			}
			return
		}
		var verr *audit.VerifyError
		if !errors.As(err, &verr) {
			t.Fatalf("Verify error %v is not a VerifyError", err)
		}
		if verr.Line != res.Records+1 || verr.Seq != uint64(verr.Line) {
			t.Fatalf("VerifyError %+v after %d good records", verr, res.Records)
		}
		if code, _ := provider.CodeOf(err); code != provider.EIO {
			t.Fatalf("VerifyError code %v, want EIO", code)
		}
	})
}

func FuzzRecordLine(f *testing.F) {
	seeds := 0
	for _, s := range goldenSeeds(f) {
		for _, l := range lines(s) {
			f.Add(bytes.TrimSuffix(l, []byte("\n")))
			seeds++
		}
	}
	if seeds == 0 {
		f.Fatal("empty seed set")
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := audit.ParseLine(line)
		if err != nil {
			if code, _ := provider.CodeOf(err); code != provider.EINVAL {
				t.Fatalf("ParseLine error code %v, want EINVAL: %v", code, err)
			}
			return
		}
		if enc := audit.EncodeLine(r); !bytes.Equal(enc, line) {
			t.Fatalf("round trip:\n got %q\nwant %q", enc, line)
		}
		// An accepted line is JSON meaning the same to encoding/json.
		var j audit.Record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			t.Fatalf("accepted line is not JSON to encoding/json: %v", err)
		}
		if !sameRecord(j, r) {
			t.Fatalf("encoding/json reads %+v, ParseLine %+v", j, r)
		}
	})
}

// FuzzOpen opens arbitrary bytes as an existing log: Open either refuses
// it (EIO) or continues it, and what it leaves behind verifies and keeps
// every record that verified before.
func FuzzOpen(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		before, verr := audit.Verify(bytes.NewReader(data))
		l, err := audit.Open(path)
		if err != nil {
			if code, _ := provider.CodeOf(err); code != provider.EIO {
				t.Fatalf("Open error code %v, want EIO: %v", code, err)
			}
			if verr == nil {
				t.Fatalf("Open refused a log that verifies: %v", err)
			}
			return
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		after, err := audit.VerifyFile(path)
		if err != nil {
			t.Fatalf("log left by Open does not verify: %v", err)
		}
		want := before.Records
		if verr != nil {
			want++ // the recovery record
		}
		if after.Records != want {
			t.Fatalf("%d records after Open, want %d", after.Records, want)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if verr == nil && !bytes.Equal(got, data) {
			t.Fatal("Open changed a log that verifies")
		}
	})
}

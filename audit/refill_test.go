package audit_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/audit"
)

// lineReader returns one line per Read, as a pipe or a log being written
// can: every line then ends exactly where the verifier's buffered data
// ends.
type lineReader struct{ data []byte }

func (r *lineReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := bytes.IndexByte(r.data, '\n') + 1
	if n == 0 || n > len(p) {
		n = min(len(r.data), len(p))
	}
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// Regression: the verifier looked past a line (to tell the last line from
// the others) while still holding that line as a slice of its read buffer;
// when the look-ahead refilled the buffer, the line was overwritten and a
// valid log failed as "malformed record".
func TestVerifyLineAtBufferEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path)
	for i := range 50 {
		if _, err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	res, err := audit.Walk(&lineReader{data: data}, func(audit.Record) error { n++; return nil })
	if err != nil || res.Records != 50 || n != 50 {
		t.Fatalf("Walk over one line per read: %d records (%d walked), %v; want 50, nil", res.Records, n, err)
	}
}

package audit_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// record returns a deterministic record for position i, with fields that
// vary with i (escapes, unicode, batches, empty key).
func record(i int) audit.Record {
	ops := []string{"keys.sign", "keys.seal", "store.put", "anchors.verify", "keys.rotate"}
	r := audit.Record{
		Time:    epoch.Add(time.Duration(i) * 1234567 * time.Microsecond),
		Caller:  audit.Caller{UID: int64(1000 + i%3), GID: int64(100 + i%2), PID: int64(4000 + i), App: "app-" + strconv.Itoa(i%3), Operator: i%7 == 0},
		Op:      ops[i%len(ops)],
		Key:     "app-" + strconv.Itoa(i%3) + "/payments/k" + strconv.Itoa(i%4),
		Version: uint32(i % 5),
		Result:  "ok",
	}
	switch i % 6 {
	case 1:
		r.Result = "EPERM"
		r.Key = ""
	case 2:
		r.Items, r.Failed = 64, i%3
	case 3:
		r.Detail = `auto-rotated to v3 "q" \ é ✓`
	case 4:
		r.Key += "@" + strconv.Itoa(i%4+1)
	}
	return r
}

// openLog opens a log and closes it at the end of the test.
func openLog(t testing.TB, path string, opts ...audit.Option) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// logPath returns a path for a log in a fresh directory.
func logPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "audit", "audit.jsonl")
}

// writeRecords appends records 0..n-1 to a new log at path, closes it and
// returns what Append returned.
func writeRecords(t testing.TB, path string, n int) []audit.Record {
	t.Helper()
	l, err := audit.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	out := make([]audit.Record, 0, n)
	for i := range n {
		r, err := l.Append(context.Background(), record(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, r)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return out
}

// readAll verifies the log at path and returns its records.
func readAll(t testing.TB, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	res, err := audit.Walk(f, func(r audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Walk(%s): %v", path, err)
	}
	if res.Records != len(out) {
		t.Fatalf("Walk: Records = %d, callbacks %d", res.Records, len(out))
	}
	return out
}

// sameRecord reports whether two records are equal, times by Equal.
func sameRecord(a, b audit.Record) bool {
	ta, tb := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

// wantCode fails unless err carries code.
func wantCode(t testing.TB, err error, code provider.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", code)
	}
	if got, _ := provider.CodeOf(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

// faultyFile wraps a Log's file and fails on demand.
type faultyFile struct {
	audit.File
	mu         sync.Mutex
	writes     int
	failWrite  int  // fail the write with this 1-based number (0: never)
	partial    bool // the failing write first writes half its bytes
	failSync   bool
	afterFail  int // writes attempted after the failure
	failedOnce bool
}

var errInjected = errors.New("injected I/O error")

func (f *faultyFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.failedOnce {
		f.afterFail++
		return 0, errInjected
	}
	if f.writes == f.failWrite {
		f.failedOnce = true
		if f.partial {
			n, err := f.File.Write(p[:len(p)/2])
			if err != nil {
				return n, err
			}
			return n, errInjected
		}
		return 0, errInjected
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	f.mu.Lock()
	fail := f.failSync
	f.mu.Unlock()
	if fail {
		return errInjected
	}
	return f.File.Sync()
}

// lines splits a log into its lines, each with its newline if it had one.
func lines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+1])
		b = b[i+1:]
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// testingProcs is GOMAXPROCS, which RunParallel multiplies by the
// parallelism.
func testingProcs() int { return runtime.GOMAXPROCS(0) }

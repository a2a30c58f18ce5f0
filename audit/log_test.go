package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
)

func TestRoundTrip(t *testing.T) {
	path := logPath(t)
	want := writeRecords(t, path, 12)
	for i, r := range want {
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d: Seq = %d, want %d", i, r.Seq, i+1)
		}
		prev := audit.Genesis
		if i > 0 {
			prev = want[i-1].Hash
		}
		if r.Prev != prev {
			t.Errorf("record %d: Prev = %s, want %s", i, r.Prev, prev)
		}
		if len(r.Hash) != 64 || r.Hash == r.Prev {
			t.Errorf("record %d: Hash = %q", i, r.Hash)
		}
		in := record(i)
		in.Seq, in.Prev, in.Hash = r.Seq, r.Prev, r.Hash
		if !sameRecord(in, r) {
			t.Errorf("record %d: Append returned %+v, want the input with Seq/Prev/Hash %+v", i, r, in)
		}
		if r.Time.Location() != time.UTC {
			t.Errorf("record %d: Time in %v, want UTC", i, r.Time.Location())
		}
	}
	got := readAll(t, path)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !sameRecord(got[i], want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	res, err := audit.VerifyFile(path)
	if err != nil {
		t.Fatalf("VerifyFile: %v", err)
	}
	if last := want[len(want)-1]; res != (audit.VerifyResult{Records: 12, LastSeq: 12, LastHash: last.Hash, FirstSeq: 1}) {
		t.Fatalf("VerifyFile = %+v, want 12 records ending at %d %s", res, last.Seq, last.Hash)
	}

	// Every line is plain JSON that encoding/json reads to the same record.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range lines(data) {
		var r audit.Record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %d: encoding/json: %v", i+1, err)
		}
		if !sameRecord(r, want[i]) {
			t.Errorf("line %d: encoding/json read %+v, want %+v", i+1, r, want[i])
		}
	}
}

func TestFilePermissions(t *testing.T) {
	path := logPath(t)
	writeRecords(t, path, 1)
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{path, 0o600}, {path[:strings.LastIndexByte(path, '/')], os.ModeDir | 0o700}} {
		st, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != c.want {
			t.Errorf("%s: mode %v, want %v", c.path, st.Mode(), c.want)
		}
	}
}

func TestReopenContinuesChain(t *testing.T) {
	path := logPath(t)
	first := writeRecords(t, path, 5)
	l := openLog(t, path)
	if got := l.Checkpoint(); got != (audit.Checkpoint{Seq: 5, Hash: first[4].Hash}) {
		t.Fatalf("Checkpoint after reopen = %v, want 5:%s", got, first[4].Hash)
	}
	r, err := l.Append(context.Background(), record(5))
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 6 || r.Prev != first[4].Hash {
		t.Fatalf("first record after reopen: Seq %d Prev %s, want 6 %s", r.Seq, r.Prev, first[4].Hash)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyFile(path, audit.Checkpoint{Seq: 5, Hash: first[4].Hash})
	if err != nil {
		t.Fatalf("VerifyFile: %v", err)
	}
	if res.Records != 6 || res.LastHash != r.Hash {
		t.Fatalf("VerifyFile = %+v, want 6 records ending at %s", res, r.Hash)
	}
}

func TestEmptyLog(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)
	if got := l.Checkpoint(); got != (audit.Checkpoint{Seq: 0, Hash: audit.Genesis}) {
		t.Fatalf("Checkpoint of a new log = %v, want 0:%s", got, audit.Genesis)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyFile(path)
	if err != nil || res != (audit.VerifyResult{LastHash: audit.Genesis}) {
		t.Fatalf("VerifyFile(empty) = %+v, %v; want no records and the genesis hash", res, err)
	}
}

func TestTornTailRecovery(t *testing.T) {
	for _, c := range []struct {
		name string
		tail func(next []byte) []byte
	}{
		{"half a line", func(next []byte) []byte { return next[:len(next)/2] }},
		{"all but the newline", func(next []byte) []byte { return next[:len(next)-1] }},
		{"one byte", func(next []byte) []byte { return next[:1] }},
		{"zeros", func([]byte) []byte { return make([]byte, 300) }},
		{"empty line", func([]byte) []byte { return []byte("\n") }},
		{"garbage line", func([]byte) []byte { return []byte("not a record\n") }},
		{"overlong line", func([]byte) []byte { return append(bytes.Repeat([]byte("x"), 70000), '\n') }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := dir + "/audit.jsonl"
			before := writeRecords(t, path, 3)
			// The next line as it would have been written.
			other := dir + "/other.jsonl"
			writeRecords(t, other, 4)
			data, err := os.ReadFile(other)
			if err != nil {
				t.Fatal(err)
			}
			tail := c.tail(lines(data)[3])
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tail); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.VerifyFile(path); err == nil {
				t.Fatal("VerifyFile accepted a torn tail")
			}

			now := epoch.Add(time.Hour)
			l, err := audit.Open(path, audit.WithClock(clock.NewFake(now)))
			if err != nil {
				t.Fatalf("Open with a torn tail: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, path)
			if len(got) != 4 {
				t.Fatalf("%d records after recovery, want 3 + the recovery record", len(got))
			}
			for i := range before {
				if !sameRecord(got[i], before[i]) {
					t.Errorf("record %d changed by recovery", i+1)
				}
			}
			rec := got[3]
			wantDetail := "dropped " + strconv.Itoa(len(tail)) + " bytes"
			if rec.Op != audit.OpRecoveredTornTail || rec.Result != "ok" || rec.Detail != wantDetail ||
				!rec.Time.Equal(now) || rec.Caller.PID != int64(os.Getpid()) || rec.Caller.UID != int64(os.Geteuid()) {
				t.Fatalf("recovery record = %+v, want op %s, detail %q, time %v, this process", rec, audit.OpRecoveredTornTail, wantDetail, now)
			}
		})
	}
}

func TestOpenRefusesBrokenChain(t *testing.T) {
	for _, c := range []struct {
		name     string
		edit     func(ls [][]byte) [][]byte
		wantLine int
	}{
		{"edited middle record", func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte(`"ok"`), []byte(`"EPERM"`), 1)
			return ls
		}, 3},
		{"garbage middle line", func(ls [][]byte) [][]byte {
			ls[1] = []byte("garbage\n")
			return ls
		}, 2},
		{"last record decodes but its hash is wrong", func(ls [][]byte) [][]byte {
			last := len(ls) - 1
			ls[last] = bytes.Replace(ls[last], []byte(`"version":`), []byte(`"version":9`), 1)
			return ls
		}, 6},
		{"deleted record", func(ls [][]byte) [][]byte { return append(ls[:2], ls[3:]...) }, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := logPath(t)
			writeRecords(t, path, 6)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ls := lines(data)
			for i := range ls {
				ls[i] = bytes.Clone(ls[i])
			}
			edited := bytes.Join(c.edit(ls), nil)
			if err := os.WriteFile(path, edited, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = audit.Open(path)
			wantCode(t, err, provider.EIO)
			var verr *audit.VerifyError
			if !errors.As(err, &verr) || verr.Line != c.wantLine {
				t.Fatalf("Open error %v; want a VerifyError at line %d", err, c.wantLine)
			}
			after, rerr := os.ReadFile(path)
			if rerr != nil || !bytes.Equal(after, edited) {
				t.Fatal("Open changed a log it refused")
			}
		})
	}
}

func TestAppendValidation(t *testing.T) {
	long := strings.Repeat("a", audit.MaxField+1)
	atBound := strings.Repeat(`"`, audit.MaxField)
	for _, c := range []struct {
		name string
		edit func(r *audit.Record)
		ok   bool
	}{
		{"valid", func(r *audit.Record) {}, true},
		{"fields at the bound", func(r *audit.Record) {
			r.Op, r.Key, r.Detail, r.Result, r.Caller.App = atBound, atBound, atBound, atBound, atBound
		}, true},
		{"unicode", func(r *audit.Record) { r.Detail = "é ✓ \u2028 \U0001F511" }, true},
		{"empty op", func(r *audit.Record) { r.Op = "" }, false},
		{"empty result", func(r *audit.Record) { r.Result = "" }, false},
		{"long op", func(r *audit.Record) { r.Op = long }, false},
		{"long key", func(r *audit.Record) { r.Key = long }, false},
		{"long detail", func(r *audit.Record) { r.Detail = long }, false},
		{"long result", func(r *audit.Record) { r.Result = long }, false},
		{"long app", func(r *audit.Record) { r.Caller.App = long }, false},
		{"newline in detail", func(r *audit.Record) { r.Detail = "a\nb" }, false},
		{"NUL in key", func(r *audit.Record) { r.Key = "a\x00b" }, false},
		{"DEL in op", func(r *audit.Record) { r.Op = "a\x7f" }, false},
		{"tab in app", func(r *audit.Record) { r.Caller.App = "a\tb" }, false},
		{"C1 control in detail", func(r *audit.Record) { r.Detail = "a\u0085b" }, false},
		{"escape in result", func(r *audit.Record) { r.Result = "\x1b[31m" }, false},
		{"invalid UTF-8", func(r *audit.Record) { r.Detail = "a\xffb" }, false},
		{"zero time", func(r *audit.Record) { r.Time = time.Time{} }, false},
		{"year 10000", func(r *audit.Record) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, false},
		{"negative items", func(r *audit.Record) { r.Items = -1 }, false},
		{"failed over items", func(r *audit.Record) { r.Items, r.Failed = 2, 3 }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := logPath(t)
			l := openLog(t, path)
			r := record(0)
			c.edit(&r)
			got, err := l.Append(context.Background(), r)
			if !c.ok {
				wantCode(t, err, provider.EINVAL)
				if cp := l.Checkpoint(); cp.Seq != 0 {
					t.Fatalf("a refused record was written (checkpoint %v)", cp)
				}
				if err := l.Ready(context.Background()); err != nil {
					t.Fatalf("Ready after a refused record: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if all := readAll(t, path); len(all) != 1 || !sameRecord(all[0], got) {
				t.Fatalf("read back %+v, want %+v", all, got)
			}
		})
	}
}

func TestMaxLine(t *testing.T) {
	s := strings.Repeat(`\`, audit.MaxField)
	r := audit.Record{
		Seq: ^uint64(0), Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		Caller: audit.Caller{UID: -1 << 63, GID: -1 << 63, PID: -1 << 63, App: s, Operator: false},
		Op:     s, Key: s, Version: ^uint32(0), Result: s, Items: 1<<63 - 1, Failed: 1<<63 - 1, Detail: s,
		Prev: audit.Genesis, Hash: audit.Genesis,
	}
	line := audit.EncodeLine(r)
	if len(line) > audit.MaxLine {
		t.Fatalf("largest record encodes to %d bytes, over MaxLine %d", len(line), audit.MaxLine)
	}
	got, err := audit.ParseLine(line)
	if err != nil || !sameRecord(got, r) {
		t.Fatalf("ParseLine(largest) = %+v, %v", got, err)
	}
}

func TestWriteFailureFailsClosed(t *testing.T) {
	for _, partial := range []bool{false, true} {
		name := "write fails"
		if partial {
			name = "half written"
		}
		t.Run(name, func(t *testing.T) {
			path := logPath(t)
			ff := &faultyFile{failWrite: 4, partial: partial}
			l, err := audit.Open(path, audit.WithFileWrapper(func(f audit.File) audit.File { ff.File = f; return ff }))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var acked []audit.Record
			for i := range 3 {
				r, err := l.Append(ctx, record(i))
				if err != nil {
					t.Fatalf("Append %d: %v", i, err)
				}
				acked = append(acked, r)
			}
			_, err = l.Append(ctx, record(3))
			wantCode(t, err, provider.EIO)
			if !errors.Is(err, errInjected) {
				t.Errorf("Append error %v does not wrap the cause", err)
			}
			wantCode(t, l.Ready(ctx), provider.EIO)
			for i := 4; i < 8; i++ {
				_, err := l.Append(ctx, record(i))
				wantCode(t, err, provider.EIO)
			}
			wantCode(t, l.Sync(), provider.EIO)
			ff.mu.Lock()
			after := ff.afterFail
			ff.mu.Unlock()
			if after != 0 {
				t.Fatalf("%d writes attempted after the failure, want 0", after)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			// Reopened, the log holds exactly the acknowledged records
			// (plus the recovery record for a half-written line).
			l2 := openLog(t, path)
			if err := l2.Close(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, path)
			want := len(acked)
			if partial {
				want++
			}
			if len(got) != want {
				t.Fatalf("%d records after reopening, want %d", len(got), want)
			}
			for i, r := range acked {
				if !sameRecord(got[i], r) {
					t.Errorf("acknowledged record %d lost or changed", i+1)
				}
			}
			if partial && got[3].Op != audit.OpRecoveredTornTail {
				t.Errorf("record 4 is %s, want %s", got[3].Op, audit.OpRecoveredTornTail)
			}
		})
	}
}

func TestConcurrentWriteFailure(t *testing.T) {
	// Many writers, the 5th batch write fails: every Append that returned
	// nil is in the file, none returned nil after the failure was seen.
	path := logPath(t)
	ff := &faultyFile{failWrite: 5}
	l, err := audit.Open(path, audit.WithFileWrapper(func(f audit.File) audit.File { ff.File = f; return ff }))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []audit.Record
		wg    sync.WaitGroup
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				r, err := l.Append(context.Background(), record(g*20+i))
				if err != nil {
					wantCodeNoFatal(t, err, provider.EIO)
					return
				}
				mu.Lock()
				acked = append(acked, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wantCode(t, l.Ready(context.Background()), provider.EIO)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, path)
	bySeq := map[uint64]audit.Record{}
	for _, r := range got {
		bySeq[r.Seq] = r
	}
	for _, r := range acked {
		if g, ok := bySeq[r.Seq]; !ok || !sameRecord(g, r) {
			t.Errorf("acknowledged record seq %d missing from the file", r.Seq)
		}
	}
	if len(got) != len(acked) {
		t.Errorf("file holds %d records, %d were acknowledged", len(got), len(acked))
	}
}

func wantCodeNoFatal(t *testing.T, err error, code provider.Code) {
	if got, _ := provider.CodeOf(err); got != code {
		t.Errorf("got %v (%v), want %v", got, err, code)
	}
}

func TestSyncFailureFailsClosed(t *testing.T) {
	path := logPath(t)
	ff := &faultyFile{}
	l, err := audit.Open(path, audit.WithSync(audit.SyncEveryRecord),
		audit.WithFileWrapper(func(f audit.File) audit.File { ff.File = f; return ff }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.Append(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	ff.mu.Lock()
	ff.failSync = true
	ff.mu.Unlock()
	_, err = l.Append(ctx, record(1))
	wantCode(t, err, provider.EIO)
	wantCode(t, l.Ready(ctx), provider.EIO)
	_, err = l.Append(ctx, record(2))
	wantCode(t, err, provider.EIO)
	if err := l.Close(); err == nil {
		t.Error("Close reported no error although fsync fails")
	}
}

func TestExplicitSyncFailure(t *testing.T) {
	path := logPath(t)
	ff := &faultyFile{}
	l, err := audit.Open(path, audit.WithFileWrapper(func(f audit.File) audit.File { ff.File = f; return ff }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.Append(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	ff.mu.Lock()
	ff.failSync = true
	ff.mu.Unlock()
	wantCode(t, l.Sync(), provider.EIO)
	wantCode(t, l.Ready(ctx), provider.EIO)
	_, err = l.Append(ctx, record(1))
	wantCode(t, err, provider.EIO)
	if err := l.Close(); err == nil {
		t.Error("Close reported no error although fsync fails")
	}
}

func TestConcurrentAppends(t *testing.T) {
	for _, c := range []struct {
		name          string
		mode          audit.SyncMode
		goroutines, n int
	}{
		{"interval", audit.SyncInterval(time.Millisecond), 64, 100},
		{"every record", audit.SyncEveryRecord, 8, 25},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := logPath(t)
			l := openLog(t, path, audit.WithSync(c.mode))
			results := make([][]audit.Record, c.goroutines)
			var wg sync.WaitGroup
			for g := range c.goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range c.n {
						r, err := l.Append(context.Background(), record(g*c.n+i))
						if err != nil {
							t.Errorf("goroutine %d Append %d: %v", g, i, err)
							return
						}
						results[g] = append(results[g], r)
					}
				}()
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			total := c.goroutines * c.n
			got := readAll(t, path)
			if len(got) != total {
				t.Fatalf("%d records, want %d", len(got), total)
			}
			for i, r := range got {
				if r.Seq != uint64(i+1) {
					t.Fatalf("line %d has seq %d", i+1, r.Seq)
				}
			}
			for g, rs := range results {
				for i, r := range rs {
					if !sameRecord(got[r.Seq-1], r) {
						t.Errorf("goroutine %d record %d: file holds %+v at seq %d, Append returned %+v", g, i, got[r.Seq-1], r.Seq, r)
					}
					if i > 0 && r.Seq <= rs[i-1].Seq {
						t.Errorf("goroutine %d: seq %d after %d", g, r.Seq, rs[i-1].Seq)
					}
				}
			}
		})
	}
}

func TestClosed(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Ready(ctx); err != nil {
		t.Fatalf("Ready on an open log: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, l.Ready(ctx), provider.EIO)
	_, err = l.Append(ctx, record(0))
	wantCode(t, err, provider.EIO)
	wantCode(t, l.Sync(), provider.EIO)
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Append(ctx, record(0))
	wantCode(t, err, provider.EUNAVAILABLE)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	if cp := l.Checkpoint(); cp.Seq != 0 {
		t.Fatalf("a cancelled Append wrote seq %d", cp.Seq)
	}
	if err := l.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after a cancelled Append: %v", err)
	}
}

func TestCloseWhileAppending(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []audit.Record
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; ; i++ {
				r, err := l.Append(context.Background(), record(g*1000+i%1000))
				if err != nil {
					wantCodeNoFatal(t, err, provider.EIO)
					return
				}
				mu.Lock()
				acked = append(acked, r)
				n := len(acked)
				mu.Unlock()
				if n > 1_000_000 {
					t.Error("Close never took effect")
					return
				}
			}
		}()
	}
	close(start)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got := readAll(t, path)
	if len(got) != len(acked) {
		t.Fatalf("file holds %d records, %d were acknowledged", len(got), len(acked))
	}
	for _, r := range acked {
		if !sameRecord(got[r.Seq-1], r) {
			t.Fatalf("acknowledged record seq %d differs in the file", r.Seq)
		}
	}
}

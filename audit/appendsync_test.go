package audit_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
)

// syncTracker records how many bytes were written and how many of them
// an fsync covered.
type syncTracker struct {
	audit.File
	mu              sync.Mutex
	written, synced int64
}

func (f *syncTracker) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.mu.Lock()
	f.written += int64(n)
	f.mu.Unlock()
	return n, err
}

func (f *syncTracker) Sync() error {
	f.mu.Lock()
	w := f.written
	f.mu.Unlock()
	err := f.File.Sync()
	if err == nil {
		f.mu.Lock()
		f.synced = max(f.synced, w)
		f.mu.Unlock()
	}
	return err
}

func (f *syncTracker) state() (int64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written, f.synced
}

// AppendSync returns only once its record is fsynced, with an interval
// mode that would not fsync for an hour, under concurrency.
func TestAppendSync(t *testing.T) {
	path := logPath(t)
	tr := &syncTracker{}
	l := openLog(t, path, audit.WithSync(audit.SyncInterval(time.Hour)),
		audit.WithFileWrapper(func(f audit.File) audit.File { tr.File = f; return tr }))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				r, err := l.AppendSync(context.Background(), record(g*8+i))
				if err != nil {
					errs <- err
					return
				}
				// The file holds at least r.Seq lines; all of them synced?
				_, synced := tr.state()
				if got := bytesThrough(t, path, r.Seq); synced < got {
					errs <- errors.New("AppendSync returned before its record was fsynced")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Plain Append in this mode is not synced; Sync covers it.
	r, err := l.Append(context.Background(), record(99))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, synced := tr.state(); synced < bytesThrough(t, path, r.Seq) {
		t.Fatal("Sync did not cover the last Append")
	}
}

// bytesThrough is the offset just past the record with seq in the
// (single-file) log.
func bytesThrough(t *testing.T, path string, seq uint64) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for i, ln := range lines(b) {
		n += int64(len(ln))
		if uint64(i+1) == seq {
			return n
		}
	}
	t.Fatalf("seq %d not in the file", seq)
	return 0
}

// The observer sees every record, the Log's own included, in order, and
// the head it is given plus what it saw is the whole log.
func TestObserver(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.WithSegmentSize(segSize), audit.WithMaxSegments(2), audit.WithClock(clock.NewFake(epoch)))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 5)
	var mu sync.Mutex
	var seen []audit.Record
	head := l.SetObserver(func(r audit.Record) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
	})
	if head.Seq != 5 {
		t.Fatalf("head %v, want seq 5", head)
	}
	s := newSigner()
	if err := l.SetSigner(s, 7, 0); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		appendN(t, l, 5+i, 1)
		waitIdle(t, l)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := walkLog(t, path)
	byseq := map[uint64]audit.Record{}
	for _, r := range got {
		byseq[r.Seq] = r
	}
	prev := head
	for _, r := range seen {
		if r.Seq != prev.Seq+1 || r.Prev != prev.Hash {
			t.Fatalf("observed %d after %v", r.Seq, prev)
		}
		if w, ok := byseq[r.Seq]; ok && !sameRecord(w, r) {
			t.Fatalf("observed %+v, log has %+v", r, w)
		}
		prev = audit.Checkpoint{Seq: r.Seq, Hash: r.Hash}
	}
	if last := got[len(got)-1]; prev.Seq != last.Seq {
		t.Fatalf("observed through %d, log ends at %d", prev.Seq, last.Seq)
	}
	if countOp(seen, audit.OpSegmentPruned) == 0 || countOp(seen, audit.OpCheckpoint) < 3 {
		t.Fatalf("observer saw %d prune and %d checkpoint records", countOp(seen, audit.OpSegmentPruned), countOp(seen, audit.OpCheckpoint))
	}
}

// A prune guard that fails postpones the removal; one that calls Sync
// does not deadlock; the lastSeq it gets is the last record removed.
func TestPruneGuard(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path, audit.WithSegmentSize(segSize), audit.WithMaxSegments(2))
	var mu sync.Mutex
	refuse := true
	var calls []uint64
	l.SetPruneGuard(func(last uint64) error {
		if err := l.Sync(); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, last)
		if refuse {
			return errors.New("snapshot failed")
		}
		return nil
	})
	appendN(t, l, 0, 60)
	// A prune planned at a rotation runs with the write of a later
	// record: how the last records were grouped into writes decides
	// whether that write was among the 60. A few more records make one.
	n := 60
	for ; l.Stats().PrunesPostponed == 0 && n < 120; n++ {
		appendN(t, l, n, 1)
	}
	if l.Stats().PrunesPostponed == 0 {
		t.Fatalf("no postponed prune after %d records", n)
	}
	if n := len(sealedFiles(t, filepath.Dir(path))); n < 2 {
		t.Fatalf("%d sealed segments: a refused guard removed some", n)
	}
	if err := l.Ready(context.Background()); err != nil {
		t.Fatalf("a refused prune failed the log: %v", err)
	}
	mu.Lock()
	refuse = false
	mu.Unlock()
	appendN(t, l, n, 60)
	if err := l.Close(); err != nil { // waits for removals under way
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	if n := len(sealedFiles(t, dir)); n != 1 {
		t.Fatalf("%d sealed segments after the guard allowed it, want 1", n)
	}
	got, res := walkLog(t, path)
	mu.Lock()
	last := calls[len(calls)-1]
	mu.Unlock()
	if res.FirstSeq > last+1 || len(got) == 0 {
		t.Fatalf("log starts at %d but the guard was last told %d", res.FirstSeq, last)
	}
}

func TestCheckpointIntervalAndFailures(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.WithClock(clock.NewFake(epoch)))
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner()
	if err := l.SetSigner(s, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	audit.TickCheckpoint(l) // no record since the start checkpoint: none
	if got := l.Stats().Checkpoints; got != 1 {
		t.Fatalf("%d checkpoints, want only the start one", got)
	}
	appendN(t, l, 0, 2)
	audit.TickCheckpoint(l)
	if got := l.Stats().Checkpoints; got != 2 {
		t.Fatalf("%d checkpoints after a tick with new records, want 2", got)
	}
	s.fail.Store(true)
	appendN(t, l, 2, 2)
	audit.TickCheckpoint(l)
	if st := l.Stats(); st.Checkpoints != 2 || st.CheckpointErrors != 1 {
		t.Fatalf("stats after a failed signature %+v", st)
	}
	appendN(t, l, 4, 1) // the log goes on
	s.fail.Store(false)
	audit.TickCheckpoint(l) // retried
	if st := l.Stats(); st.Checkpoints != 3 {
		t.Fatalf("stats after the retry %+v", st)
	}
	if err := l.SetSigner(s, 1, 0); err == nil {
		t.Fatal("a second SetSigner was accepted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyLogWith(path, audit.VerifyOptions{PublicKey: s.pub()})
	if err != nil || res.Checkpoints != 4 || !res.EndsWithStop {
		t.Fatalf("VerifyLogWith = %+v, %v", res, err)
	}
	// A failing start checkpoint is reported, and the log still works.
	s2 := newSigner()
	s2.fail.Store(true)
	l2 := openLog(t, logPath(t))
	if err := l2.SetSigner(s2, 0, 0); err == nil {
		t.Fatal("a failing start checkpoint was not reported")
	}
	appendN(t, l2, 0, 1)
}

func TestFileSink(t *testing.T) {
	dir := t.TempDir()
	line := []byte(`{"seq":1}` + "\n")
	// A regular file, created 0600.
	p := filepath.Join(dir, "cp.jsonl")
	s, err := audit.NewFileSink(p)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.WriteCheckpoint(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, append(append([]byte(nil), line...), line...)) {
		t.Fatalf("file sink wrote %q, %v", b, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file sink mode %v, %v", fi.Mode(), err)
	}

	// A FIFO: no reader yet, then one, then a full pipe.
	fifo := filepath.Join(dir, "cp.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = audit.NewFileSink(fifo)
	if err != nil {
		t.Fatalf("NewFileSink on a FIFO without a reader: %v", err)
	}
	defer s.Close()
	if err := s.WriteCheckpoint(line); err == nil {
		t.Fatal("a write without a reader succeeded")
	}
	rfd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	if err := s.WriteCheckpoint(line); err != nil {
		t.Fatalf("write with a reader: %v", err)
	}
	buf := make([]byte, 100)
	if n, err := unix.Read(rfd, buf); err != nil || !bytes.Equal(buf[:n], line) {
		t.Fatalf("reader got %q, %v", buf[:n], err)
	}
	big := bytes.Repeat([]byte("x"), 4000)
	full := false
	for range 1000 { // a pipe holds 64 KiB by default
		if err := s.WriteCheckpoint(big); err != nil {
			if !strings.Contains(err.Error(), "full") {
				t.Fatalf("full pipe: %v", err)
			}
			full = true
			break
		}
	}
	if !full {
		t.Fatal("the pipe never filled")
	}
}

func TestSyslogSink(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := audit.NewSyslogSink("unixgram", sock, "keystored-audit")
	if err != nil {
		t.Fatal(err)
	}
	line := `{"seq":7,"op":"audit.checkpoint"}` + "\n"
	if err := s.WriteCheckpoint([]byte(line)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	if !strings.Contains(got, "keystored-audit") || !strings.Contains(got, strings.TrimSuffix(line, "\n")) || !strings.HasPrefix(got, "<29>") {
		t.Fatalf("syslog got %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.NewSyslogSink("unixgram", filepath.Join(t.TempDir(), "none"), "x"); err == nil {
		t.Fatal("a syslog sink without a socket was accepted")
	}
}

// Sinks get every checkpoint line; a failing sink is counted and does not
// fail the log.
func TestSinkErrorsCounted(t *testing.T) {
	path := logPath(t)
	bad := &memSink{fail: true}
	l := openLog(t, path)
	if err := l.SetSigner(newSigner(), 2, 0, bad); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 4)
	waitIdle(t, l)
	if st := l.Stats(); st.SinkErrors == 0 || st.Checkpoints < 2 {
		t.Fatalf("stats %+v", st)
	}
}

package tamper_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/tamper"
)

func TestFileCounter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "counter")
	c, err := tamper.OpenFileCounter(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Describe(); d != "file "+path {
		t.Errorf("Describe = %q", d)
	}
	_, err = c.Read(ctx)
	wantErr(t, err, tamper.ErrCounterMissing, provider.ENOENT)
	_, err = c.Increment(ctx)
	wantErr(t, err, tamper.ErrCounterMissing, provider.ENOENT)
	if err := c.Create(ctx); err != nil {
		t.Fatal(err)
	}
	wantErr(t, c.Create(ctx), nil, provider.EALREADY)
	for want := uint64(1); want <= 3; want++ {
		v, err := c.Increment(ctx)
		if err != nil || v != want {
			t.Fatalf("Increment = %d, %v; want %d", v, err, want)
		}
	}
	if v, err := c.Read(ctx); err != nil || v != 3 {
		t.Fatalf("Read = %d, %v; want 3", v, err)
	}
	// A second FileCounter on the file reads the same value.
	c2, err := tamper.OpenFileCounter(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c2.Read(ctx); err != nil || v != 3 {
		t.Fatalf("reopened Read = %d, %v; want 3", v, err)
	}
	// Edited, even consistently-looking: refused.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, []byte(strings.Replace(string(data), " 3 ", " 9 ", 1)))
	_, err = c.Read(ctx)
	wantErr(t, err, nil, provider.EIO, "corrupt")
	writeFile(t, path, data[:len(data)-1])
	_, err = c.Read(ctx)
	wantErr(t, err, nil, provider.EIO, "corrupt")

	if _, err := tamper.OpenFileCounter("relative/counter"); err == nil {
		t.Error("a relative path was accepted")
	}
	if _, err := tamper.OpenFileCounter(filepath.Join(t.TempDir(), "no", "counter")); err == nil {
		t.Error("a counter in a missing directory was accepted")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// countEnv is an env with a file counter.
type countEnv struct {
	*env
	cpath string
	c     *tamper.FileCounter
}

func newCountEnv(t *testing.T) *countEnv {
	t.Helper()
	e := newEnv(t)
	cpath := filepath.Join(t.TempDir(), "counter")
	c, err := tamper.OpenFileCounter(cpath)
	if err != nil {
		t.Fatal(err)
	}
	return &countEnv{env: e, cpath: cpath, c: c}
}

func (e *countEnv) options() tamper.Options {
	o := e.env.options()
	o.Counter = e.c
	return o
}

func (e *countEnv) value() uint64 {
	e.t.Helper()
	v, err := e.c.Read(context.Background())
	if err != nil {
		e.t.Fatalf("counter Read: %v", err)
	}
	return v
}

// setCounter writes the counter file at v (someone else's counter file,
// or one restored from a copy).
func (e *countEnv) setCounter(v uint64) {
	e.t.Helper()
	ctx := context.Background()
	if err := os.Remove(e.cpath); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.t.Fatal(err)
	}
	if err := e.c.Create(ctx); err != nil {
		e.t.Fatal(err)
	}
	for range v {
		if _, err := e.c.Increment(ctx); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *countEnv) counterRecords() []uint64 {
	var gens []uint64
	for _, r := range ofOp(readLog(e.t, e.path), tamper.OpCounter) {
		gens = append(gens, r.Gen)
	}
	return gens
}

func TestCounterFirstUse(t *testing.T) {
	for _, start := range []uint64{0, 7} {
		e := newCountEnv(t)
		o := e.options()
		if start > 0 {
			// A counter in use the log has no record of: refused, unless
			// accepted (a counter new to this state).
			e.setCounter(start)
			_, err := e.open(o)
			wantErr(t, err, tamper.ErrCounterAhead, provider.EIO, "no counter record", "--accept-counter-change")
			o.AcceptCounterChange = true
		} // else the file is missing: made at 0 on first use
		tr := e.mustOpen(o)
		if v := e.value(); v != start+1 {
			t.Errorf("start %d: counter at %d after Open, want %d", start, v, start+1)
		}
		if v, ok := tr.Index().Counter(); !ok || v != start+1 {
			t.Errorf("start %d: index counter %d, %v", start, v, ok)
		}
		if got := e.counterRecords(); len(got) != 1 || got[0] != start+1 {
			t.Errorf("start %d: counter records %v", start, got)
		}
		if err := tr.Advance(context.Background()); err != nil {
			t.Fatal(err)
		}
		if v := e.value(); v != start+2 {
			t.Errorf("after Advance: %d", v)
		}
		e.closeTracker(tr)
		// Restart: X == L.
		tr = e.mustOpen(e.options())
		if v := e.value(); v != start+2 {
			t.Errorf("restart moved the counter to %d", v)
		}
		e.closeTracker(tr)
	}
}

func TestCounterCrashBetweenRecordAndIncrement(t *testing.T) {
	e := newCountEnv(t)
	tr := e.mustOpen(e.options()) // counter 1
	e.closeTracker(tr)
	// The record of the next increment is in the log, not signed by a
	// checkpoint after it: the increment never began (Advance signs the
	// record first), so it is not made.
	e.appendRaw(rec(tamper.OpCounter, "", 2, "ok"))
	tr = e.mustOpen(e.options())
	if v := e.value(); v != 1 {
		t.Fatalf("counter %d, want 1: an unsigned counter record does not count", v)
	}
	e.closeTracker(tr)
	// Signed (a checkpoint covers it), the increment not made: finished.
	e.appendSigned(rec(tamper.OpCounter, "", 2, "ok"))
	tr = e.mustOpen(e.options())
	if v := e.value(); v != 2 {
		t.Fatalf("counter %d, want the increment finished at 2", v)
	}
	fin := ofOp(readLog(t, e.path), tamper.OpCounterFinished)
	if len(fin) != 1 || fin[0].Gen != 2 {
		t.Fatalf("finish notes %+v", fin)
	}
	if err := tr.Advance(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := e.value(); v != 3 {
		t.Errorf("counter %d after Advance, want 3", v)
	}
}

func TestCounterStartRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *countEnv) // the log says 3
		want   error
		says   []string
	}{
		{"ahead (state and log restored)", func(e *countEnv) { e.setCounter(5) }, tamper.ErrCounterAhead, []string{"restored from a backup", "--accept-counter-change"}},
		{"behind (counter reset)", func(e *countEnv) { e.setCounter(1) }, tamper.ErrCounterBehind, []string{"replaced or reset", "--accept-counter-change"}},
		{"missing", func(e *countEnv) {
			if err := os.Remove(e.cpath); err != nil {
				e.t.Fatal(err)
			}
		}, tamper.ErrCounterBehind, []string{"missing", "--accept-counter-change"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCountEnv(t)
			tr := e.mustOpen(e.options())
			for range 2 {
				if err := tr.Advance(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			e.closeTracker(tr)
			if v := e.value(); v != 3 {
				t.Fatalf("counter %d, want 3", v)
			}
			tc.change(e)
			_, err := e.open(e.options())
			wantErr(t, err, tc.want, provider.EIO, tc.says...)

			o := e.options()
			o.AcceptCounterChange = true
			tr = e.mustOpen(o)
			ov := ofOp(readLog(t, e.path), tamper.OpOverride)
			if len(ov) != 1 || !strings.Contains(ov[0].Detail, "counter change accepted") || !strings.Contains(ov[0].Detail, "log says 3") {
				t.Fatalf("override records %+v", ov)
			}
			// Tracking restarted: the log's last counter record is the
			// counter's value.
			L, _ := tr.Index().Counter()
			if v := e.value(); v != L {
				t.Errorf("counter %d, log says %d", v, L)
			}
			e.closeTracker(tr)
			tr = e.mustOpen(e.options()) // no override needed now
			e.closeTracker(tr)
		})
	}
}

func TestCounterWholeStateRollback(t *testing.T) {
	// The attack the counter is for: the state directory and its audit
	// log restored together from an older copy.
	e := newCountEnv(t)
	tr := e.mustOpen(e.options())
	appendVia(t, tr, intent("keys.create", "a/p/k", 1))
	if err := tr.Advance(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.closeTracker(tr)
	backup := t.TempDir()
	copyTree(t, e.state, backup)

	tr = e.mustOpen(e.options())
	appendVia(t, tr, intent("keys.revoke", "a/p/k", 2))
	if err := tr.Advance(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.closeTracker(tr)

	if err := os.RemoveAll(e.state); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, e.state)
	_, err := e.open(e.options())
	wantErr(t, err, tamper.ErrCounterAhead, provider.EIO, "older than the external counter")
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// flaky counts increments and fails the ones it is told to.
type flaky struct {
	tamper.Counter
	mu       sync.Mutex
	values   []uint64 // every value an increment returned, in order
	done     atomic.Int64
	failNext atomic.Bool
}

func (f *flaky) Create(ctx context.Context) error {
	return f.Counter.(*tamper.FileCounter).Create(ctx)
}

func (f *flaky) Increment(ctx context.Context) (uint64, error) {
	if f.failNext.CompareAndSwap(true, false) {
		return 0, errors.New("device busy")
	}
	v, err := f.Counter.Increment(ctx)
	if err == nil {
		f.mu.Lock()
		f.values = append(f.values, v)
		f.mu.Unlock()
		f.done.Add(1)
	}
	return v, err
}

func TestAdvanceCoalescing(t *testing.T) {
	e := newCountEnv(t)
	f := &flaky{Counter: e.c}
	o := e.options()
	o.Counter = f
	tr := e.mustOpen(o)
	ctx := context.Background()
	const callers, each = 32, 8
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				// An advance is covered by an increment that started after
				// the call: a counter record appended after it, made.
				before := e.log.appends.Load()
				if err := tr.Advance(ctx); err != nil {
					errs <- err
					return
				}
				if done := f.done.Load(); done < before+1 {
					errs <- errors.New("Advance returned before an increment that started after it was made")
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
	f.mu.Lock()
	values := append([]uint64(nil), f.values...)
	f.mu.Unlock()
	for i, v := range values {
		if v != uint64(i)+1 {
			t.Fatalf("increment %d returned %d: values not strictly increasing by one: %v", i, v, values)
		}
	}
	// The log and the counter agree.
	recs := e.counterRecords()
	if len(recs) != len(values) {
		t.Fatalf("%d counter records, %d increments", len(recs), len(values))
	}
	for i, g := range recs {
		if g != values[i] {
			t.Fatalf("counter record %d says %d, increment gave %d", i, g, values[i])
		}
	}
	if L, _ := tr.Index().Counter(); L != e.value() {
		t.Fatalf("index says %d, counter %d", L, e.value())
	}
}

func TestAdvanceRecoversAfterAFailedIncrement(t *testing.T) {
	e := newCountEnv(t)
	f := &flaky{Counter: e.c}
	o := e.options()
	o.Counter = f
	tr := e.mustOpen(o) // 1
	ctx := context.Background()
	f.failNext.Store(true)
	if err := tr.Advance(ctx); err == nil {
		t.Fatal("Advance succeeded although the increment failed")
	}
	// The log says 2, the counter 1: the next round finishes the
	// increment, then makes its own.
	if err := tr.Advance(ctx); err != nil {
		t.Fatal(err)
	}
	if v := e.value(); v != 3 {
		t.Fatalf("counter %d, want 3", v)
	}
	if L, _ := tr.Index().Counter(); L != 3 {
		t.Fatalf("log says %d, want 3", L)
	}
	e.closeTracker(tr)
	if err := tr.Advance(ctx); err == nil {
		t.Error("Advance after Close succeeded")
	}
}

func TestAdvanceWithoutCounterDoesNothing(t *testing.T) {
	e := newEnv(t)
	tr := e.mustOpen(e.options())
	if err := tr.Advance(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ofOp(readLog(t, e.path), tamper.OpCounter); len(got) != 0 {
		t.Errorf("counter records without a counter: %+v", got)
	}
}

// Create never replaces a counter file that appeared meanwhile, and a
// temporary file a crash left beside the counter is removed when it is
// opened.
func TestFileCounterCreateExclusive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "counter")
	c, err := tamper.OpenFileCounter(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Increment(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = c.Create(context.Background())
	if code, _ := provider.CodeOf(err); code != provider.EALREADY {
		t.Fatalf("Create over an existing counter: %v, want EALREADY", err)
	}
	if v, err := c.Read(context.Background()); err != nil || v != 1 {
		t.Fatalf("counter %d, %v after a refused Create, want 1", v, err)
	}
	tmp := filepath.Join(dir, ".counter.tmp-123")
	if err := os.WriteFile(tmp, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tamper.OpenFileCounter(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temporary file: %v", err)
	}
}

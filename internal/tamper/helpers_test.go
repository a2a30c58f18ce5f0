package tamper_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/tamper"
)

// t0 is the fixed time of every test record.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixedClock struct{}

func (fixedClock) Now() time.Time { return t0 }

// testLog is a real *audit.Log that counts the counter records appended
// through it.
type testLog struct {
	*audit.Log
	appends atomic.Int64 // audit.counter records whose append started
}

// AppendSync counts the counter records, then appends through the real
// log (whose observer the tracker attached).
func (l *testLog) AppendSync(ctx context.Context, r audit.Record) (audit.Record, error) {
	if r.Op == tamper.OpCounter {
		l.appends.Add(1)
	}
	return l.Log.AppendSync(ctx, r)
}

// env is a state directory with its audit log.
type env struct {
	t      *testing.T
	state  string
	path   string
	opened int // OpenLog calls
	log    *testLog
	seg    int64 // segment size; 0: the default
}

func (e *env) logOptions() []audit.Option {
	opts := []audit.Option{audit.WithClock(fixedClock{})}
	if e.seg != 0 {
		opts = append(opts, audit.WithSegmentSize(e.seg))
	}
	return opts
}

func newEnv(t *testing.T) *env {
	t.Helper()
	state := t.TempDir()
	return &env{t: t, state: state, path: filepath.Join(state, "audit", "audit.jsonl")}
}

func (e *env) options() tamper.Options {
	return tamper.Options{
		StateDir: e.state,
		LogPath:  e.path,
		OpenLog: func() (tamper.Log, error) {
			e.opened++
			l, err := audit.Open(e.path, e.logOptions()...)
			if err != nil {
				return nil, err
			}
			e.log = &testLog{Log: l}
			return e.log, nil
		},
		Clock: func() time.Time { return t0 },
	}
}

// open opens a tracker with o (from e.options, possibly changed); the
// test's cleanup closes it and its log.
func (e *env) open(o tamper.Options) (*tamper.Tracker, error) {
	e.t.Helper()
	tr, err := openStarted(e, o)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { e.closeTracker(tr) })
	return tr, nil
}

// theKey is the tests' audit key.
var theKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// openStarted is what the daemon does: tamper.Open, Verify with its key,
// the key attached to the log (a start checkpoint), tamper.Start.
func openStarted(e *env, o tamper.Options) (*tamper.Tracker, error) {
	ctx := context.Background()
	tr, err := tamper.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	s := testSigner{theKey}
	err = tr.Verify(ctx, s.PublicKey())
	if err == nil {
		err = e.log.SetSigner(s, 0, 0)
	}
	if err == nil {
		err = tr.Start(ctx, s)
	}
	if err != nil {
		if cerr := e.log.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return tr, nil
}

// testSigner signs checkpoints and snapshots with a fixed key; like the
// daemon's signer (the provider's message bound), it refuses a message
// over 64 KiB.
type testSigner struct{ key ed25519.PrivateKey }

// maxSignedMessage is the daemon's bound on a message to sign.
const maxSignedMessage = 64 << 10

func (s testSigner) KeyRef() string { return "keystored/audit/checkpoint@1" }
func (s testSigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	if len(msg) > maxSignedMessage {
		return nil, fmt.Errorf("message over %d bytes", maxSignedMessage)
	}
	return ed25519.Sign(s.key, msg), nil
}
func (s testSigner) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// stopCleanly stops as the daemon does: the index snapshot, the log
// closed (its stop checkpoint), then the stop mark.
func (e *env) stopCleanly(tr *tamper.Tracker) {
	e.t.Helper()
	if err := tr.SnapshotNow(); err != nil {
		e.t.Fatal(err)
	}
	if err := e.log.Close(); err != nil {
		e.t.Fatal(err)
	}
	if err := tr.Stopped(e.log.Checkpoint()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) mustOpen(o tamper.Options) *tamper.Tracker {
	e.t.Helper()
	tr, err := e.open(o)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	return tr
}

// closeTracker closes tr and its log (a second call does nothing), and
// then cuts the log's stop checkpoint off: a crash-like end, after which
// records appended (appendRaw) are what a crashed daemon leaves, not
// records forged after a clean stop.
func (e *env) closeTracker(tr *tamper.Tracker) {
	defer e.dropStop()
	e.t.Helper()
	if err := tr.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
		e.t.Errorf("Tracker.Close: %v", err)
	}
	if l, ok := tr.Log().(*testLog); ok {
		if err := l.Close(); err != nil {
			e.t.Errorf("log Close: %v", err)
		}
	}
}

func rec(op, key string, gen uint64, result string) audit.Record {
	return audit.Record{Time: t0, Op: op, Key: key, Gen: gen, Result: result, Caller: audit.Caller{UID: 1, GID: 1, PID: 1}}
}

func intent(op, key string, gen uint64) audit.Record { return rec(op, key, gen, "ok") }

func applied(key string, gen uint64) audit.Record { return rec(tamper.OpApplied, key, gen, "ok") }

// appendVia appends records through the tracker's log (the observer sees
// them).
func appendVia(t *testing.T, tr *tamper.Tracker, rs ...audit.Record) {
	t.Helper()
	for _, r := range rs {
		if _, err := tr.Log().AppendSync(context.Background(), r); err != nil {
			t.Fatalf("AppendSync %s: %v", r.Op, err)
		}
	}
}

// appendRaw appends records to the log at path with no tracker: records
// written after the last snapshot (a crash), or by someone else.
func (e *env) appendRaw(rs ...audit.Record) {
	t := e.t
	t.Helper()
	l, err := audit.Open(e.path, e.logOptions()...)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	for _, r := range rs {
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// dropStop removes the log's last line when it is a stop checkpoint.
func (e *env) dropStop() {
	t := e.t
	t.Helper()
	data, err := os.ReadFile(e.path)
	if err != nil {
		return // no log (a test removed it)
	}
	ls := bytes.SplitAfter(data, []byte("\n"))
	if n := len(ls); n >= 2 && bytes.Contains(ls[n-2], []byte(`"op":"audit.checkpoint"`)) && bytes.Contains(ls[n-2], []byte(`"detail":"stop `)) {
		writeFile(t, e.path, bytes.Join(ls[:n-2], nil))
	}
}

// appendSigned is appendRaw with the daemon's key on the log: each record
// is followed by a checkpoint that covers it.
func (e *env) appendSigned(rs ...audit.Record) {
	t := e.t
	t.Helper()
	l, err := audit.Open(e.path, e.logOptions()...)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	if err := l.SetSigner(testSigner{theKey}, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if err := l.CheckpointNow(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// readLog returns the log's records.
func readLog(t *testing.T, path string) []audit.Record {
	t.Helper()
	var out []audit.Record
	if _, err := audit.WalkLog(path, audit.Checkpoint{}, func(r audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("WalkLog: %v", err)
	}
	return out
}

// ofOp returns the records of rs with op.
func ofOp(rs []audit.Record, op string) []audit.Record {
	var out []audit.Record
	for _, r := range rs {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

func wantErr(t *testing.T, err, target error, code provider.Code, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", target)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q does not wrap %q", err, target)
	}
	if c, ok := provider.CodeOf(err); !ok || c != code {
		t.Fatalf("error %q has code %v, want %v", err, c, code)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

func wantExpected(t *testing.T, x *tamper.Index, id string, gen uint64, app, found bool) {
	t.Helper()
	g, a, f := x.Expected(id)
	if g != gen || a != app || f != found {
		t.Errorf("Expected(%q) = (%d, %v, %v), want (%d, %v, %v)", id, g, a, f, gen, app, found)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

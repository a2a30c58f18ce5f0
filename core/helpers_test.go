package core_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/testseed"
)

var (
	testSeed  = []byte("keystored core test seed 0123456")
	epoch     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	appA      = core.Caller{App: "app-a", UID: 1001}
	appB      = core.Caller{App: "app-b", UID: 1002}
	operator  = core.Caller{App: "ops", Operator: true}
	errFailed = errors.New("audit sink broken")
)

// recorder is an AuditSink that keeps events and can be made to fail.
type recorder struct {
	mu        sync.Mutex
	events    []core.Event
	commits   []core.Event
	notes     []core.Event
	fail      bool
	failNotes bool // Note fails while the other methods work
	notReady  bool
	refuseAll bool // Commit fails while Ready and Record work
	// onCommit, when set, sees every committed event (after the commit).
	onCommit func(core.Event)
}

func (r *recorder) Ready(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.notReady || r.fail {
		return errFailed
	}
	return nil
}

func (r *recorder) Commit(_ context.Context, e core.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail || r.refuseAll {
		return errFailed
	}
	r.commits = append(r.commits, e)
	if r.onCommit != nil {
		r.onCommit(e)
	}
	return nil
}

func (r *recorder) Record(_ context.Context, e core.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errFailed
	}
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) Note(_ context.Context, e core.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail || r.failNotes {
		return errFailed
	}
	r.notes = append(r.notes, e)
	return nil
}

// notesOf returns the notes of op.
func (r *recorder) notesOf(op core.Op) []core.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []core.Event
	for _, e := range r.notes {
		if e.Op == op {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) all() []core.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]core.Event(nil), r.events...)
}

func (r *recorder) last(t *testing.T) core.Event {
	t.Helper()
	ev := r.all()
	if len(ev) == 0 {
		t.Fatal("no audit events")
	}
	return ev[len(ev)-1]
}

type env struct {
	ks    *core.Keystore
	st    core.Storage
	audit *recorder
	clock *clock.Fake
	p     provider.Provider
}

type envOption func(*core.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, storage.NewMemory(), p, opts...)
}

func newEnvWith(t *testing.T, st core.Storage, p provider.Provider, opts ...envOption) *env {
	t.Helper()
	e := &env{st: st, audit: &recorder{}, clock: clock.NewFake(epoch), p: p}
	o := core.Config{Storage: st, Provider: p, Clock: e.clock, Audit: e.audit}
	for _, f := range opts {
		f(&o)
	}
	ks, err := core.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	e.ks = ks
	return e
}

func mustID(t testing.TB, s string) core.KeyID {
	t.Helper()
	id, err := provider.ParseKeyID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) create(t *testing.T, c core.Caller, id string, a core.Algorithm) core.KeyID {
	t.Helper()
	kid := mustID(t, id)
	if _, err := e.ks.Create(context.Background(), c, kid, core.CreateOptions{Algorithm: a}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return kid
}

func codeOf(err error) provider.Code {
	if err == nil {
		return 0
	}
	c, ok := provider.CodeOf(err)
	if !ok {
		return 255
	}
	return c
}

func wantCode(t *testing.T, what string, err error, want provider.Code) {
	t.Helper()
	if got := codeOf(err); got != want {
		t.Fatalf("%s: got %v (%v), want %v", what, provider.Code(got), err, want)
	}
}

var ctx = context.Background()

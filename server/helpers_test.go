package server

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
)

// fakeAudit is an in-memory AuditLog whose writes can be made to fail.
// The core's notes (keys.applied, keys.rollback-detected: records of
// their own, not a request's) are kept apart in notes, so that recs holds
// one record per request as the tests count them.
type fakeAudit struct {
	mu         sync.Mutex
	recs       []audit.Record
	notes      []audit.Record
	seq        uint64
	synced     map[uint64]bool // seqs written by AppendSync
	failAppend atomic.Bool
	failReady  atomic.Bool
}

var errDiskFull = errors.New("fake audit: no space left on device")

func (f *fakeAudit) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	if f.failAppend.Load() {
		return audit.Record{}, errDiskFull
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	r.Seq = f.seq
	if r.Op == "keys.applied" || r.Op == "keys.rollback-detected" {
		f.notes = append(f.notes, r)
		return r, nil
	}
	f.recs = append(f.recs, r)
	return r, nil
}

// notesOf returns the core's notes (records of their own) of op.
func (f *fakeAudit) notesOf(op string) []audit.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []audit.Record
	for _, r := range f.notes {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

// AppendSync is Append, remembering that the record was asked to be
// durable before the call returned.
func (f *fakeAudit) AppendSync(ctx context.Context, r audit.Record) (audit.Record, error) {
	r, err := f.Append(ctx, r)
	if err != nil {
		return r, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.synced == nil {
		f.synced = map[uint64]bool{}
	}
	f.synced[r.Seq] = true
	return r, nil
}

// wasSynced reports whether record seq was written by AppendSync.
func (f *fakeAudit) wasSynced(seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.synced[seq]
}

func (f *fakeAudit) Ready(context.Context) error {
	if f.failReady.Load() {
		return errDiskFull
	}
	return nil
}

// setBroken makes every write fail, as an unwritable log does.
func (f *fakeAudit) setBroken(b bool) {
	f.failAppend.Store(b)
	f.failReady.Store(b)
}

func (f *fakeAudit) records() []audit.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]audit.Record(nil), f.recs...)
}

func (f *fakeAudit) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recs)
}

// waitFor waits (bounded) until the log holds at least n records: records
// of calls the transport refused are written when the call ends, just
// after the client has its answer.
func (f *fakeAudit) waitFor(t *testing.T, n int) []audit.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.count() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return f.records()
}

// last returns the last record.
func (f *fakeAudit) last(t *testing.T) audit.Record {
	t.Helper()
	r := f.records()
	if len(r) == 0 {
		t.Fatal("no audit record")
	}
	return r[len(r)-1]
}

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var testSeed = []byte("server-test-seed-0123456789")

type envOpts struct {
	identity *Identity // nil: this process's uid is app "alice", others denied
	insecure bool      // the testseed provider instead of the software one
	wrap     func(provider.Provider) provider.Provider
	anchors  *Anchors
	limits   Limits
	storage  core.Storage // nil: a fresh Memory
	quotas   core.Quotas
	sched    Scheduler
	advance  func(context.Context) error // Config.Advance
	gens     core.Generations            // Config.Generations
	log      AuditLog                    // nil: the env's fakeAudit
}

type env struct {
	srv     *Server
	st      core.Storage
	mem     *storage.Memory
	audit   *fakeAudit
	clock   *clock.Fake
	sock    string
	conn    *grpc.ClientConn
	keys    keystorev1.KeysClient
	store   keystorev1.StoreClient
	anchors keystorev1.TrustAnchorsClient
}

// myUID is this test process's uid, as the kernel reports it to the server.
func myUID() uint32 { return uint32(os.Getuid()) }

// aliceIdentity maps this process's uid to app "alice" and denies others.
func aliceIdentity(t testing.TB) Identity {
	t.Helper()
	id, err := NewIdentity(map[uint32]string{myUID(): "alice"}, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// shortDir returns a short temporary directory (Unix socket paths are
// limited to 107 bytes; t.TempDir paths can be longer).
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kss")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	})
	return d
}

func newProvider(t testing.TB, insecureSeed bool) provider.Provider {
	t.Helper()
	if insecureSeed {
		p, err := testseed.NewInsecure(testSeed)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	kek := make([]byte, 32)
	for i := range kek {
		kek[i] = byte(i + 7)
	}
	p, err := software.New(software.Config{KEK: secret.New(kek)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	e := &env{audit: &fakeAudit{}, clock: clock.NewFake(testTime)}
	e.st = o.storage
	if e.st == nil {
		e.mem = storage.NewMemory()
		e.st = e.mem
	}
	p := newProvider(t, o.insecure)
	if o.wrap != nil {
		p = o.wrap(p)
	}
	var id Identity
	if o.identity != nil {
		id = *o.identity
	} else {
		id = aliceIdentity(t)
	}
	var log AuditLog = e.audit
	if o.log != nil {
		log = o.log
	}
	srv, err := New(context.Background(), Config{Storage: e.st, Provider: p, Clock: e.clock, Audit: log,
		Identity: id, Anchors: o.anchors, Limits: o.limits, Quotas: o.quotas, Scheduler: o.sched, Advance: o.advance, Generations: o.gens})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.sock = filepath.Join(shortDir(t), "s.sock")
	l, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := srv.NewGRPCServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(gs, l) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	})
	e.conn = dial(t, e.sock)
	e.keys = keystorev1.NewKeysClient(e.conn)
	e.store = keystorev1.NewStoreClient(e.conn)
	e.anchors = keystorev1.NewTrustAnchorsClient(e.conn)
	return e
}

func dial(t testing.TB, sock string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("closing client: %v", err)
		}
	})
	return conn
}

// codeOfRPC returns the keystored code of an RPC error as a client sees it.
func codeOfRPC(err error) provider.Code {
	c, ok := provider.CodeOf(rpcerr.FromStatus(err))
	if !ok {
		return 0
	}
	return c
}

// wantCode fails unless err carries code want.
func wantCode(t *testing.T, what string, err error, want provider.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got success, want %v", what, want)
	}
	if got := codeOfRPC(err); got != want {
		t.Fatalf("%s: got %v (%v), want %v", what, got, err, want)
	}
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var bg = context.Background()

// operator is an in-process operator caller, to set up keys of other apps.
var operator = core.Caller{App: "ops", Operator: true}

// createFor creates a key of any app in-process (bypassing the RPC).
func (e *env) createFor(t *testing.T, id string, alg provider.Algorithm) {
	t.Helper()
	kid, err := provider.ParseKeyID(id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Keystore().Create(bg, operator, kid, core.CreateOptions{Algorithm: alg}); err != nil {
		t.Fatal(err)
	}
}

// rawCodec sends and receives raw bytes, to put malformed messages on
// the wire.
type rawCodec struct{}

type rawMsg struct{ b []byte }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMsg).b = data.Materialize()
	return nil
}

// invokeRaw calls method with body as the request's wire bytes.
func invokeRaw(conn *grpc.ClientConn, method string, body []byte) error {
	var out rawMsg
	return conn.Invoke(bg, method, &rawMsg{b: body}, &out, grpc.ForceCodecV2(rawCodec{}))
}

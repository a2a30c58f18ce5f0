package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

func TestIdentityResolve(t *testing.T) {
	withConfig, err := NewIdentity(map[uint32]string{1001: "billing", 1002: "web", 0: "root-app"}, []uint32{0, 1003}, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	uidMode, err := NewIdentity(map[uint32]string{1001: "billing"}, nil, UnmappedUID)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		id       Identity
		uid      uint32
		app      string
		operator bool
		denied   bool
	}{
		{"default: uid 1000", DefaultIdentity(), 1000, "uid-1000", false, false},
		{"default: uid 0 is operator", DefaultIdentity(), 0, "uid-0", true, false},
		{"default: max uid", DefaultIdentity(), 4294967294, "uid-4294967294", false, false},
		{"config: mapped", withConfig, 1001, "billing", false, false},
		{"config: mapped operator", withConfig, 0, "root-app", true, false},
		{"config: unmapped operator", withConfig, 1003, "uid-1003", true, false},
		{"config: unmapped denied", withConfig, 1004, "", false, true},
		{"config uid mode: unmapped", uidMode, 1004, "uid-1004", false, false},
		{"config uid mode: uid 0 is not an operator unless listed", uidMode, 0, "uid-0", false, false},
	}
	for _, c := range cases {
		got := c.id.Resolve(PeerInfo{UID: c.uid, GID: 7, PID: 42})
		if got.App != c.app || got.Operator != c.operator || got.Denied != c.denied || got.UID != c.uid || got.GID != 7 || got.PID != 42 {
			t.Errorf("%s: Resolve = %+v, want app %q operator %v denied %v", c.name, got, c.app, c.operator, c.denied)
		}
	}
}

// TestGeneratedNamesNeverCollide: a configured app ID of the generated
// form would let an unlisted uid (or an operator without an app) act as
// that app. The attacks of issue 9: with unmapped = "uid" and
// 1002 = "uid-1005", uid 1005 used uid 1002's keys; with 1004 = "uid-0",
// uid 1004 used root's. Each such map is refused, naming the app and uid;
// a uid naming its own generated name is allowed.
func TestGeneratedNamesNeverCollide(t *testing.T) {
	attacks := []struct {
		name      string
		apps      map[uint32]string
		ops       []uint32
		u         Unmapped
		victim    uint32 // the uid the configured name belongs to
		intruder  uint32 // the uid that would get the same app
		wantInErr string
	}{
		{"unlisted uid takes a configured app", map[uint32]string{1002: "uid-1005"}, nil, UnmappedUID, 1002, 1005, "uid 1005 would use uid 1002's keys"},
		{"app takes root's generated name", map[uint32]string{1004: "uid-0"}, []uint32{0}, UnmappedDeny, 0, 1004, "uid 0 would use uid 1004's keys"},
		{"app takes an operator's generated name", map[uint32]string{7: "uid-1003"}, []uint32{1003}, UnmappedDeny, 7, 1003, `"uid-1003" of uid 7`},
		{"non-canonical generated form", map[uint32]string{7: "uid-0042"}, nil, UnmappedUID, 7, 42, "reserved"},
		{"reserved prefix", map[uint32]string{7: "uid-web"}, nil, UnmappedUID, 7, 7, "reserved"},
	}
	for _, a := range attacks {
		id, err := NewIdentity(a.apps, a.ops, a.u)
		if err == nil {
			v, i := id.Resolve(PeerInfo{UID: a.victim}), id.Resolve(PeerInfo{UID: a.intruder})
			t.Errorf("%s: NewIdentity accepted %v (uid %d is app %q, uid %d is app %q)", a.name, a.apps, a.victim, v.App, a.intruder, i.App)
			continue
		}
		if code, _ := provider.CodeOf(err); code != provider.EINVAL || !strings.Contains(err.Error(), a.wantInErr) {
			t.Errorf("%s: error %v (code %v), want EINVAL mentioning %q", a.name, err, code, a.wantInErr)
		}
	}
	// A uid may name its own generated app (an explicit form of the
	// default), and apps merely containing "uid" are fine.
	id, err := NewIdentity(map[uint32]string{1005: "uid-1005", 1006: "uid", 1007: "my-uid-1"}, []uint32{0}, UnmappedUID)
	if err != nil {
		t.Fatalf("NewIdentity refused a uid's own generated name: %v", err)
	}
	seen := map[string]uint32{}
	for _, uid := range []uint32{0, 1, 1005, 1006, 1007, 10050, 4294967294} {
		app := id.Resolve(PeerInfo{UID: uid}).App
		if other, dup := seen[app]; dup {
			t.Errorf("uids %d and %d share app %q", other, uid, app)
		}
		seen[app] = uid
	}
}

func TestNewIdentityRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		apps map[uint32]string
		ops  []uint32
		u    Unmapped
	}{
		{"bad app", map[uint32]string{1: "Bad App"}, nil, UnmappedDeny},
		{"app with slash", map[uint32]string{1: "a/b"}, nil, UnmappedDeny},
		{"empty app", map[uint32]string{1: ""}, nil, UnmappedDeny},
		{"operator twice", nil, []uint32{5, 5}, UnmappedDeny},
		{"no unmapped policy", nil, nil, 0},
	} {
		if _, err := NewIdentity(c.apps, c.ops, c.u); err == nil {
			t.Errorf("%s: NewIdentity succeeded", c.name)
		}
	}
	for _, s := range []string{"", "allow", "DENY"} {
		if _, err := ParseUnmapped(s); err == nil {
			t.Errorf("ParseUnmapped(%q) succeeded", s)
		}
	}
}

// TestPeerCredentials: the server reads the caller's uid, gid and pid from
// the kernel; with the default map this process is app uid-N.
func TestPeerCredentials(t *testing.T) {
	def := DefaultIdentity()
	e := newEnv(t, envOpts{identity: &def})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	r := e.audit.last(t)
	wantApp := "uid-" + strconv.FormatUint(uint64(myUID()), 10)
	if r.Caller.UID != int64(os.Getuid()) || r.Caller.GID != int64(os.Getgid()) || r.Caller.PID != int64(os.Getpid()) || r.Caller.App != wantApp {
		t.Fatalf("caller %+v, want uid %d gid %d pid %d app %s", r.Caller, os.Getuid(), os.Getgid(), os.Getpid(), wantApp)
	}
	if r.Key != wantApp+"/sig/k" {
		t.Fatalf("key %q, want %s/sig/k", r.Key, wantApp)
	}
	if r.Caller.Operator != (os.Getuid() == 0) {
		t.Fatalf("operator = %v for uid %d", r.Caller.Operator, os.Getuid())
	}
}

// TestNotYoursEqualsNotExists: for a non-operator, another app's existing
// key and another app's missing key give the same code and message (up to
// the name the caller itself sent), for every key RPC.
func TestNotYoursEqualsNotExists(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createFor(t, "bob/sig/exists", provider.Ed25519)
	e.createFor(t, "bob/enc/exists", provider.XChaCha20Poly1305)
	type rpc func(key string) error
	k := e.keys
	// A well-formed envelope (of alice's own key), so that unseal gets as
	// far as the caller check.
	_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/own"})
	mustOK(t, "Create", err)
	se, err := k.Seal(bg, &keystorev1.SealRequest{Key: "enc/own", Plaintext: []byte("p")})
	mustOK(t, "Seal", err)
	sealed := se.GetSealed()
	rpcs := map[string]rpc{
		"Get": func(key string) error {
			_, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: key})
			return err
		},
		"Rotate": func(key string) error {
			_, err := k.Rotate(bg, &keystorev1.RotateKeyRequest{Key: key})
			return err
		},
		"Revoke": func(key string) error {
			_, err := k.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: key})
			return err
		},
		"RevokeVersion": func(key string) error {
			_, err := k.RevokeVersion(bg, &keystorev1.RevokeKeyVersionRequest{Key: key, Version: 1})
			return err
		},
		"Destroy": func(key string) error {
			_, err := k.Destroy(bg, &keystorev1.DestroyKeyRequest{Key: key})
			return err
		},
		"SetPolicy": func(key string) error {
			_, err := k.SetPolicy(bg, &keystorev1.SetKeyPolicyRequest{Key: key})
			return err
		},
		"PublicKey": func(key string) error {
			_, err := k.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: key})
			return err
		},
		"Sign": func(key string) error {
			_, err := k.Sign(bg, &keystorev1.SignRequest{Key: key, Message: []byte("m")})
			return err
		},
		"Verify": func(key string) error {
			_, err := k.Verify(bg, &keystorev1.VerifyRequest{Key: key, Version: 1, Message: []byte("m"), Signature: make([]byte, 64)})
			return err
		},
		"Seal": func(key string) error {
			_, err := k.Seal(bg, &keystorev1.SealRequest{Key: key, Plaintext: []byte("p")})
			return err
		},
		"Unseal": func(key string) error {
			_, err := k.Unseal(bg, &keystorev1.UnsealRequest{Key: key, Sealed: sealed})
			return err
		},
		"Rewrap": func(key string) error {
			_, err := k.Rewrap(bg, &keystorev1.RewrapRequest{Key: key, Sealed: sealed})
			return err
		},
		"Create": func(key string) error {
			_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: key, Algorithm: "ed25519"})
			return err
		},
	}
	snap := e.mem.Snapshot()
	for name, call := range rpcs {
		for _, purpose := range []string{"sig", "enc"} {
			existing, missing := "bob/"+purpose+"/exists", "bob/"+purpose+"/missing"
			e1, e2 := call(existing), call(missing)
			if codeOfRPC(e1) != provider.EPERM || codeOfRPC(e2) != provider.EPERM {
				t.Fatalf("%s: existing → %v, missing → %v; want EPERM for both", name, e1, e2)
			}
			m1 := strings.ReplaceAll(e1.Error(), existing, "KEY")
			m2 := strings.ReplaceAll(e2.Error(), missing, "KEY")
			if m1 != m2 {
				t.Fatalf("%s: messages differ:\n  %s\n  %s", name, m1, m2)
			}
		}
	}
	_, err = k.List(bg, &keystorev1.ListKeysRequest{App: "bob"})
	wantCode(t, "List of another app", err, provider.EPERM)
	_, err = k.List(bg, &keystorev1.ListKeysRequest{App: "nobody"})
	wantCode(t, "List of a missing app", err, provider.EPERM)
	if len(snap) != len(e.mem.Snapshot()) {
		t.Fatal("denied calls changed the state")
	}
}

// TestOperatorManagesOtherApps: an operator may use the full form for any
// app and lists every app's keys.
func TestOperatorManagesOtherApps(t *testing.T) {
	id, err := NewIdentity(map[uint32]string{myUID(): "ops"}, []uint32{myUID()}, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{identity: &id})
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "web/sig/k", Algorithm: "ed25519"})
	mustOK(t, "operator Create for web", err)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/own"})
	mustOK(t, "operator Create own", err)
	lr, err := e.keys.List(bg, &keystorev1.ListKeysRequest{})
	mustOK(t, "List", err)
	if len(lr.GetKeys()) != 2 || lr.GetKeys()[0].GetId() != "ops/sig/own" || lr.GetKeys()[1].GetId() != "web/sig/k" {
		t.Fatalf("operator List = %v", lr.GetKeys())
	}
	if r := e.audit.last(t); !r.Caller.Operator || r.Caller.App != "ops" {
		t.Fatalf("record caller %+v", r.Caller)
	}
}

// TestInsecureHeader: on the INSECURE provider every response, errors
// included, carries keystored-insecure: true, and keys say insecure.
func TestInsecureHeader(t *testing.T) {
	for _, insecureMode := range []bool{true, false} {
		e := newEnv(t, envOpts{insecure: insecureMode})
		var md metadata.MD
		cr, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"}, grpc.Header(&md))
		mustOK(t, "Create", err)
		if got := md.Get(InsecureHeader); insecureMode != (len(got) == 1 && got[0] == "true") {
			t.Fatalf("insecure=%v: header %q = %q", insecureMode, InsecureHeader, got)
		}
		if cr.GetKey().GetInsecure() != insecureMode {
			t.Fatalf("insecure=%v: KeyMetadata.insecure = %v", insecureMode, cr.GetKey().GetInsecure())
		}
		md = nil
		_, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "sig/missing"}, grpc.Header(&md))
		wantCode(t, "Get missing", err, provider.ENOENT)
		if got := md.Get(InsecureHeader); insecureMode != (len(got) == 1 && got[0] == "true") {
			t.Fatalf("insecure=%v: header on an error = %q", insecureMode, got)
		}
		md = nil
		_, err = e.store.List(bg, &keystorev1.ListValuesRequest{}, grpc.Header(&md))
		mustOK(t, "store List", err)
		if got := md.Get(InsecureHeader); insecureMode != (len(got) == 1) {
			t.Fatalf("insecure=%v: header on Store.List = %q", insecureMode, got)
		}
	}
}

// TestConnectionLimits: the listener refuses a connection over the
// per-uid limit before gRPC sees it and frees the slot when a connection
// closes, however it closes.
func TestConnectionLimits(t *testing.T) {
	pc := newPeerCreds(ConnLimits{Total: 10, PerUID: 2})
	sock := filepath.Join(shortDir(t), "c.sock")
	raw, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan string, 10)
	ll := &limitListener{Listener: raw, creds: pc, refused: func(r string) { refused <- r }}
	defer ll.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	s1, s2 := <-accepted, <-accepted
	conn, info, err := pc.ServerHandshake(s1)
	if err != nil || conn != s1 {
		t.Fatalf("ServerHandshake: %v", err)
	}
	pi := info.(PeerInfo)
	if pi.UID != myUID() || pi.PID != int32(os.Getpid()) || pi.GID != uint32(os.Getgid()) {
		t.Fatalf("peer info %+v, want this process", pi)
	}
	c3 := dial()
	if r := <-refused; !strings.Contains(r, "limit of 2") {
		t.Fatalf("refusal reason %q", r)
	}
	if n, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatalf("refused connection read %d bytes", n)
	}
	if pc.open() != 2 {
		t.Fatalf("open = %d, want 2", pc.open())
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s1.Close() // a second Close must not free the slot twice
	if pc.open() != 1 {
		t.Fatalf("open after close (twice) = %d, want 1", pc.open())
	}
	dial()
	s4 := <-accepted
	if pc.open() != 2 {
		t.Fatalf("open = %d, want 2", pc.open())
	}
	for _, c := range []net.Conn{s2, s4} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if pc.open() != 0 {
		t.Fatalf("open = %d after closing all, want 0", pc.open())
	}
	// A connection that is not a Unix socket has no peer credentials.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, err := pc.ServerHandshake(a); err == nil {
		t.Fatal("handshake on a pipe succeeded")
	}
}

// TestConnectionLimitThroughServer: a second connection of a uid with a
// limit of one fails as Unavailable and is counted; the first keeps
// working.
func TestConnectionLimitThroughServer(t *testing.T) {
	e := newEnv(t, envOpts{limits: Limits{MaxConnectionsPerUID: 1}})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create on the first connection", err)
	second := keystorev1.NewKeysClient(dial(t, e.sock))
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	_, err = second.Get(ctx, &keystorev1.GetKeyRequest{Key: "sig/k"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("second connection: %v, want Unavailable", err)
	}
	_, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "sig/k"})
	mustOK(t, "Get on the first connection", err)
	families, err := e.srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var refusedCount float64
	for _, f := range families {
		if f.GetName() == MetricRefused {
			refusedCount = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if refusedCount < 1 {
		t.Fatalf("%s = %v, want at least 1", MetricRefused, refusedCount)
	}
}

// TestIdentityIgnoresClientAddress: a client whose own socket is bound to a
// path that looks like an identity (";uid=0;", a newline) is still the uid
// the kernel reports: nothing is parsed from strings.
func TestIdentityIgnoresClientAddress(t *testing.T) {
	def := DefaultIdentity()
	e := newEnv(t, envOpts{identity: &def})
	local := filepath.Join(shortDir(t), ";uid=0;app=ops;\n")
	conn, err := grpc.NewClient("passthrough:///keystored",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return net.DialUnix("unix", &net.UnixAddr{Name: local, Net: "unix"}, &net.UnixAddr{Name: e.sock, Net: "unix"})
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cr, err := keystorev1.NewKeysClient(conn).Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	want := "uid-" + strconv.FormatUint(uint64(myUID()), 10) + "/sig/k"
	if cr.GetKey().GetId() != want {
		t.Fatalf("key %q, want %q", cr.GetKey().GetId(), want)
	}
	if r := e.audit.last(t); r.Caller.UID != int64(myUID()) || r.Caller.PID != int64(os.Getpid()) {
		t.Fatalf("caller %+v", r.Caller)
	}
}

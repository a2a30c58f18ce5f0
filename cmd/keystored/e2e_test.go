package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// TestNoFlags: with no flags the daemon runs on the software provider in
// ./keystore-state, listens on keystore-state/keystored.sock, says so and
// shows a keystorectl example.
func TestNoFlags(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{NoDefaults: true})
	out := d.Stdout()
	for _, want := range []string{
		"listening on keystore-state/keystored.sock (provider software, state keystore-state)",
		"keystorectl --socket keystore-state/keystored.sock create app/demo --alg ed25519",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout %q lacks %q", out, want)
		}
	}
	if m := fileMode(t, filepath.Join(d.State, "kek")); m.Perm() != 0o600 || !m.IsRegular() {
		t.Errorf("KEK file mode %v, want -rw-------", m)
	}
	if m := fileMode(t, d.State); m.Perm() != 0o700 {
		t.Errorf("state (socket) dir mode %v, want 0700", m)
	}
	if m := fileMode(t, d.Socket); m&fs.ModeSocket == 0 || m.Perm() != 0o600 {
		t.Errorf("socket mode %v, want srw-------", m)
	}
	keys, _, _ := clients(t, d)
	cr, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "app/demo", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	if want := "uid-" + strconv.Itoa(os.Getuid()) + "/app/demo"; cr.GetKey().GetId() != want {
		t.Errorf("key id %q, want %q (default identity)", cr.GetKey().GetId(), want)
	}
	d.Stop()
	if _, err := os.Lstat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket still there after a clean stop: %v", err)
	}
	if !strings.Contains(d.Stderr(), "keystored stopped") {
		t.Errorf("logs lack the stop line:\n%s", d.Stderr())
	}
}

// TestSocketFromEnv: $KEYSTORE_SOCKET names the socket.
func TestSocketFromEnv(t *testing.T) {
	dir := t.TempDir()
	d := daemontest.Start(t, daemontest.Options{Dir: dir, NoDefaults: true, Env: []string{"KEYSTORE_SOCKET=run/k.sock"}})
	if !strings.Contains(d.Stdout(), "listening on run/k.sock") {
		t.Errorf("stdout %q", d.Stdout())
	}
	if m := fileMode(t, filepath.Join(dir, "run")); m.Perm() != 0o700 {
		t.Errorf("socket dir mode %v", m)
	}
	d.Stop()
}

// TestRestart: stop, start again on the same state: every key, version and
// state is there, old sealed data unseals, old signatures verify, values
// are kept, and the audit chain continues.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	keys, store, _ := clients(t, d)
	ctx := t.Context()
	msg := []byte("signed before the restart")

	_, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	sig1, err := keys.Sign(ctx, &keystorev1.SignRequest{Key: "sig/k", Message: msg})
	mustOK(t, "Sign", err)
	_, err = keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: "sig/k"})
	mustOK(t, "Rotate", err)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create enc", err)
	sealed1, err := keys.Seal(ctx, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte("one"), Aad: []byte("a")})
	mustOK(t, "Seal", err)
	_, err = keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: "enc/k"})
	mustOK(t, "Rotate enc", err)
	sealed2, err := keys.Seal(ctx, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte("two")})
	mustOK(t, "Seal v2", err)
	_, err = keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: "enc/k"})
	mustOK(t, "Rotate enc again", err)
	_, err = keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: "enc/k", Version: 2})
	mustOK(t, "RevokeVersion", err)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/old", Algorithm: "ed25519"})
	mustOK(t, "Create old", err)
	_, err = keys.Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: "sig/old"})
	mustOK(t, "Revoke", err)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/gone", Algorithm: "ed25519"})
	mustOK(t, "Create gone", err)
	_, err = keys.Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: "sig/gone"})
	mustOK(t, "Revoke gone", err)
	_, err = keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: "sig/gone"})
	mustOK(t, "Destroy", err)
	_, err = store.Put(ctx, &keystorev1.PutValueRequest{Name: "cfg", Value: []byte("kept")})
	mustOK(t, "Put", err)
	before, err := keys.List(ctx, &keystorev1.ListKeysRequest{})
	mustOK(t, "List", err)
	d.Stop()
	if _, err := audit.VerifyFile(filepath.Join(state, auditFile)); err != nil {
		t.Fatalf("audit log after the first run: %v", err)
	}
	first := len(requestRecords(t, filepath.Join(state, auditFile)))

	d2 := daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	keys, store, _ = clients(t, d2)
	after, err := keys.List(ctx, &keystorev1.ListKeysRequest{})
	mustOK(t, "List after restart", err)
	// A version's seal count resumes from its durable reservation: never
	// lower than before, and otherwise the keys are as they were.
	beforeSeals, afterSeals := takeSeals(before), takeSeals(after)
	if !proto.Equal(before, after) {
		t.Fatalf("keys changed across the restart:\nbefore %v\nafter  %v", before, after)
	}
	if len(beforeSeals) == 0 {
		t.Fatal("no seal count in the listing")
	}
	for ref, n := range beforeSeals {
		if afterSeals[ref] < n {
			t.Errorf("%s: %d seals counted after the restart, %d before: the count went back", ref, afterSeals[ref], n)
		}
	}
	v, err := keys.Verify(ctx, &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: msg, Signature: sig1.GetSignature()})
	mustOK(t, "Verify v1", err)
	if !v.GetValid() {
		t.Fatal("a signature made before the restart no longer verifies")
	}
	un, err := keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: sealed1.GetSealed(), Aad: []byte("a")})
	mustOK(t, "Unseal v1", err)
	if string(un.GetPlaintext()) != "one" {
		t.Fatalf("Unseal v1 = %q", un.GetPlaintext())
	}
	_, err = keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: sealed2.GetSealed()})
	wantReason(t, "Unseal of a revoked version", err, provider.EKEYREVOKED)
	_, err = keys.Sign(ctx, &keystorev1.SignRequest{Key: "sig/old", Message: msg})
	wantReason(t, "Sign with a revoked key", err, provider.EKEYREVOKED)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/gone", Algorithm: "ed25519"})
	wantReason(t, "Create of a destroyed key's ID", err, provider.EALREADY)
	s2, err := keys.Sign(ctx, &keystorev1.SignRequest{Key: "sig/k", Message: msg})
	mustOK(t, "Sign after restart", err)
	if s2.GetVersion() != 2 {
		t.Fatalf("Sign after restart used v%d, want 2", s2.GetVersion())
	}
	g, err := store.Get(ctx, &keystorev1.GetValueRequest{Name: "cfg"})
	mustOK(t, "Get value", err)
	if string(g.GetValue()) != "kept" {
		t.Fatalf("value = %q", g.GetValue())
	}
	d2.Stop()
	if _, err := audit.VerifyFile(filepath.Join(state, auditFile)); err != nil {
		t.Fatalf("audit log after the restart: %v", err)
	}
	if second := len(requestRecords(t, filepath.Join(state, auditFile))); second != first+8 {
		t.Fatalf("request records: %d then %d, want +8 (one per request of the second run)", first, second)
	}
}

// TestGracefulStop: SIGTERM while calls are in flight: the daemon finishes
// them and exits 0; every call either succeeds or is refused as
// Unavailable, and every success has its audit record.
func TestGracefulStop(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	keys, _, _ := clients(t, d)
	_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create", err)
	var (
		mu          sync.Mutex
		successes   int
		afterSignal int // successes returned after SIGTERM was sent
		signalled   atomic.Bool
		others      []error
		started     = make(chan struct{}, 64)
		wg          sync.WaitGroup
	)
	big := make([]byte, 1<<20)
	for range 8 {
		wg.Go(func() {
			for i := 0; i < 10000; i++ {
				_, err := keys.Seal(t.Context(), &keystorev1.SealRequest{Key: "enc/k", Plaintext: big})
				mu.Lock()
				if err == nil {
					successes++
					if signalled.Load() {
						afterSignal++
					}
				} else if status.Code(err) != codes.Unavailable {
					others = append(others, err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
				select {
				case started <- struct{}{}:
				default:
				}
			}
		})
	}
	for range 16 {
		<-started
	}
	signalled.Store(true)
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := d.Wait(30 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit %d, %v after SIGTERM with calls in flight:\n%s", code, err, d.Logs())
	}
	wg.Wait()
	if len(others) > 0 {
		t.Fatalf("%d calls failed with something other than Unavailable, e.g. %v", len(others), others[0])
	}
	// Eight callers keep calls outstanding all the time: the calls the
	// daemon held when the signal came must have finished, not been cut.
	if afterSignal == 0 {
		t.Fatalf("no call completed after SIGTERM (%d before): in-flight calls were cut off", successes)
	}
	if _, err := audit.VerifyFile(filepath.Join(state, auditFile)); err != nil {
		t.Fatal(err)
	}
	if got, want := len(requestRecords(t, filepath.Join(state, auditFile))), successes+1; got != want {
		t.Fatalf("audit log holds %d request records, want %d (create, %d successful seals)", got, want, successes)
	}
}

// TestInsecureSeed: the INSECURE provider warns at every start, marks every
// response and key, is deterministic across daemons, and a state is never
// opened with the other kind of provider.
func TestInsecureSeed(t *testing.T) {
	seed := daemontest.InsecureSeed("000102030405060708090a0b0c0d0e0f")
	dir := t.TempDir()
	state := filepath.Join(dir, "insecure-state")
	// Without the second acknowledgement the daemon refuses before it
	// touches anything (issue 9: --insecure-test-seed alone ran anywhere).
	r := daemontest.Run(t, daemontest.Options{Dir: dir, State: state, Args: seed[:2]})
	if r.ExitCode != 2 || !strings.Contains(r.Stderr, "INSECURE") || !strings.Contains(r.Stderr, "--i-understand-this-is-insecure") {
		t.Errorf("--insecure-test-seed without --i-understand-this-is-insecure: exit %d, stderr:\n%s", r.ExitCode, r.Stderr)
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused daemon made its state directory: %v", err)
	}
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: seed})
	if !d.WaitStderr(insecureWarning) {
		t.Errorf("stderr lacks the warning %q:\n%s", insecureWarning, d.Stderr())
	}
	if !strings.Contains(d.Stdout(), "INSECURE") {
		t.Errorf("stdout does not say INSECURE: %q", d.Stdout())
	}
	keys, store, _ := clients(t, d)
	var hdr metadata.MD
	cr, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"}, grpc.Header(&hdr))
	mustOK(t, "Create", err)
	if got := hdr.Get("keystored-insecure"); len(got) != 1 || got[0] != "true" {
		t.Errorf("header keystored-insecure = %q, want [true]", got)
	}
	if !cr.GetKey().GetInsecure() {
		t.Error("KeyMetadata.insecure = false")
	}
	hdr = nil
	_, err = store.Get(t.Context(), &keystorev1.GetValueRequest{Name: "none"}, grpc.Header(&hdr))
	wantReason(t, "Get missing value", err, provider.ENOENT)
	if got := hdr.Get("keystored-insecure"); len(got) != 1 {
		t.Errorf("header on an error response = %q", got)
	}
	pk1, err := keys.PublicKey(t.Context(), &keystorev1.PublicKeyRequest{Key: "sig/k"})
	mustOK(t, "PublicKey", err)
	d.Stop()

	// The same seed in another state directory gives the same key.
	d2 := daemontest.Start(t, daemontest.Options{Dir: dir, State: filepath.Join(dir, "other"), Args: seed})
	keys2, _, _ := clients(t, d2)
	_, err = keys2.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create 2", err)
	pk2, err := keys2.PublicKey(t.Context(), &keystorev1.PublicKeyRequest{Key: "sig/k"})
	mustOK(t, "PublicKey 2", err)
	if !bytes.Equal(pk1.GetPublicKey(), pk2.GetPublicKey()) {
		t.Error("same seed, same key ID, different public keys")
	}
	d2.Stop()

	// An insecure state refuses the secure provider, and the reverse.
	r = daemontest.Run(t, daemontest.Options{Dir: dir, State: state})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "INSECURE provider") || !strings.Contains(r.Stderr, "hint:") {
		t.Errorf("secure daemon on an insecure state: exit %d, stderr:\n%s", r.ExitCode, r.Stderr)
	}
	secure := filepath.Join(dir, "secure-state")
	daemontest.Start(t, daemontest.Options{Dir: dir, State: secure}).Stop()
	r = daemontest.Run(t, daemontest.Options{Dir: dir, State: secure, Args: seed})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "secure provider") || !strings.Contains(r.Stderr, insecureWarning) {
		t.Errorf("insecure daemon on a secure state: exit %d, stderr:\n%s", r.ExitCode, r.Stderr)
	}
}

// TestSocketDirRefused: a symlinked, world-writable or foreign-owned socket
// directory stops the daemon before it serves.
func TestSocketDirRefused(t *testing.T) {
	base := publicDir(t)
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ dir, want string }{
		"symlink":        {filepath.Join(base, "link"), "symlink"},
		"world-writable": {open, "writable by group or others"},
	}
	if os.Geteuid() == 0 {
		foreign := filepath.Join(base, "foreign")
		if err := os.Mkdir(foreign, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(foreign, 54321, 54321); err != nil {
			t.Fatal(err)
		}
		cases["foreign-owned"] = struct{ dir, want string }{foreign, "owned by uid 54321"}
	} else {
		t.Log("not root: the foreign-owned case needs root to chown a directory; skipped")
	}
	for name, c := range cases {
		r := daemontest.Run(t, daemontest.Options{Socket: filepath.Join(c.dir, "ks.sock")})
		if r.ExitCode != 1 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and %q", name, r.ExitCode, r.Stderr, c.want)
		}
		if strings.Contains(r.Stdout, "listening") {
			t.Errorf("%s: daemon says it listens: %q", name, r.Stdout)
		}
	}
}

// TestSocketDirUntouched: --socket ks.sock in a 0755 working directory
// serves on a 0600 socket and leaves the directory's mode alone, while
// running and after the stop (issue 9: it was chmodded to 0700 and left).
func TestSocketDirUntouched(t *testing.T) {
	dir := publicDir(t)
	d := daemontest.Start(t, daemontest.Options{Dir: dir, Socket: "ks.sock"})
	if m := fileMode(t, dir); m.Perm() != 0o755 {
		t.Errorf("working directory mode %v while serving, want it left at 0755", m.Perm())
	}
	if m := fileMode(t, filepath.Join(dir, "ks.sock")); m.Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", m.Perm())
	}
	d.Stop()
	if m := fileMode(t, dir); m.Perm() != 0o755 {
		t.Errorf("working directory mode %v after the stop, want 0755", m.Perm())
	}
}

// TestSingleInstance: a second daemon on the same state is refused; after
// a SIGKILL the stale socket is replaced.
func TestSingleInstance(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	sock := filepath.Join(publicDir(t), "run", "ks.sock")
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Socket: sock})
	r := daemontest.Run(t, daemontest.Options{Dir: dir, State: state})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "another keystored is running") {
		t.Errorf("second daemon on one state: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	r = daemontest.Run(t, daemontest.Options{Dir: dir, State: filepath.Join(dir, "state2"), Socket: sock})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "another daemon is answering") {
		t.Errorf("second daemon on one socket: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	d.Kill()
	if m := fileMode(t, sock); m&fs.ModeSocket == 0 {
		t.Fatal("no stale socket after SIGKILL")
	}
	d2 := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Socket: sock})
	d2.Stop()
}

// TestMetricsEndpoint: --metrics-addr serves the server's registry.
func TestMetricsEndpoint(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{Args: []string{"--metrics-addr", "127.0.0.1:0", "--log-format", "json"}})
	m := regexp.MustCompile(`metrics on (http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(d.Stdout())
	if m == nil {
		t.Fatalf("no metrics line in %q", d.Stdout())
	}
	keys, _, _ := clients(t, d)
	_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = keys.Get(t.Context(), &keystorev1.GetKeyRequest{Key: "sig/none"})
	wantReason(t, "Get", err, provider.ENOENT)
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`keystored_requests_total{op="keys.create",result="ok"} 1`,
		`keystored_requests_total{op="keys.get",result="ENOENT"} 1`,
		`keystored_request_duration_seconds_bucket{op="keys.create",result="ok",le="+Inf"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !d.WaitStderr(`"msg":"keystored started"`) {
		t.Errorf("--log-format json: logs are not JSON:\n%s", d.Stderr())
	}
	d.Stop()
}

// stateHash hashes every file of the state directory except the audit log
// and the lock: what a refused request must not change.
func stateHash(t *testing.T, state string) string {
	t.Helper()
	h := sha256.New()
	var names []string
	err := filepath.WalkDir(state, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(state, p)
		if rel == "audit" && e.IsDir() {
			return filepath.SkipDir
		}
		if e.Type().IsRegular() && rel != ".lock" {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(state, n))
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestBadInput: hostile input through the real socket: each a typed error,
// no state change, and the daemon keeps serving.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	keys, store, anchors := clients(t, d)
	ctx := t.Context()
	_, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create enc", err)
	good, err := keys.Seal(ctx, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte("payload"), Aad: []byte("aad")})
	mustOK(t, "Seal", err)
	sig, err := keys.Sign(ctx, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
	mustOK(t, "Sign", err)
	before := stateHash(t, state)

	names := []string{
		"", "/", "//", "../../etc/passwd", "sig/../../../etc/passwd", "uid-0/../../x", "sig/..", "../sig", "./sig/k",
		"sig/k/", "/sig/k", "sig//k", "a/b/c/d", "SIG/K", "sig/K", "sig/ké", "sig/ｋ", "sig/\u202ek", "sig/k\x00",
		"sig/k\n", "sig/k\t", "sig/k;uid=0;", "sig/k k", "sig/k\\x", "-/k", "sig/.k", "sig/" + strings.Repeat("k", 65),
		strings.Repeat("a/", 300), "%2e%2e/k", "sig/k@1",
	}
	for _, n := range names {
		_, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: n, Algorithm: "ed25519"})
		wantReason(t, "Create "+strconvQuote(n), err, provider.EINVAL)
		_, err = keys.Sign(ctx, &keystorev1.SignRequest{Key: n, Message: []byte("m")})
		wantReason(t, "Sign "+strconvQuote(n), err, provider.EINVAL)
		_, err = store.Put(ctx, &keystorev1.PutValueRequest{Name: n, Value: []byte("v")})
		wantReason(t, "Put "+strconvQuote(n), err, provider.EINVAL)
		_, err = anchors.Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: n})
		wantReason(t, "anchor Verify "+strconvQuote(n), err, provider.EINVAL)
	}
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "rsa-4096"})
	wantReason(t, "unknown algorithm", err, provider.ENOTSUP)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: strings.Repeat("x", 10000)})
	wantReason(t, "huge algorithm name", err, provider.ENOTSUP)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "ed25519", Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: -1}})
	wantReason(t, "negative rotation period", err, provider.EINVAL)
	_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "ed25519", Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 1 << 62}})
	wantReason(t, "huge rotation period", err, provider.EINVAL)

	// Messages and AAD: empty is valid, over the bound is EMSGSIZE.
	_, err = keys.Sign(ctx, &keystorev1.SignRequest{Key: "sig/k"})
	mustOK(t, "Sign of an empty message", err)
	_, err = keys.Sign(ctx, &keystorev1.SignRequest{Key: "sig/k", Message: make([]byte, provider.MaxSignMessage+1)})
	wantReason(t, "Sign oversized", err, provider.EMSGSIZE)
	_, err = keys.Verify(ctx, &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: make([]byte, provider.MaxSignMessage+1), Signature: sig.GetSignature()})
	wantReason(t, "Verify oversized", err, provider.EMSGSIZE)
	_, err = keys.Seal(ctx, &keystorev1.SealRequest{Key: "enc/k", Plaintext: make([]byte, provider.MaxSealPlaintext+1)})
	wantReason(t, "Seal oversized plaintext", err, provider.EMSGSIZE)
	_, err = keys.Seal(ctx, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte("p"), Aad: make([]byte, provider.MaxAAD+1)})
	wantReason(t, "Seal oversized AAD", err, provider.EMSGSIZE)
	_, err = keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: good.GetSealed(), Aad: make([]byte, provider.MaxAAD+1)})
	wantReason(t, "Unseal oversized AAD", err, provider.EMSGSIZE)
	_, err = store.Put(ctx, &keystorev1.PutValueRequest{Name: "v", Value: make([]byte, 64<<10+1)})
	wantReason(t, "Put oversized value", err, provider.EMSGSIZE)

	// Versions.
	for _, v := range []int64{-1, -1 << 63, 1<<63 - 1, 1 << 32, 1<<32 + 5} {
		_, err := keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: "sig/k", Version: v})
		wantReason(t, "PublicKey version", err, provider.EINVAL)
		_, err = keys.Verify(ctx, &keystorev1.VerifyRequest{Key: "sig/k", Version: v, Signature: sig.GetSignature()})
		wantReason(t, "Verify version", err, provider.EINVAL)
		_, err = keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: "sig/k", Version: v})
		wantReason(t, "RevokeVersion version", err, provider.EINVAL)
	}
	_, err = keys.Verify(ctx, &keystorev1.VerifyRequest{Key: "sig/k", Version: 0, Signature: sig.GetSignature()})
	wantReason(t, "Verify version 0", err, provider.EINVAL)
	_, err = keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: "sig/k", Version: 0})
	wantReason(t, "RevokeVersion version 0", err, provider.EINVAL)
	_, err = keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: "sig/k", Version: 1<<32 - 1})
	wantReason(t, "RevokeVersion of an absent version", err, provider.ENOENT)

	// Garbage and damaged sealed blobs.
	for n := 0; n < 200; n++ {
		blob := bytes.Repeat([]byte{byte(n*7 + 1)}, n)
		_, err := keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: blob, Aad: []byte("aad")})
		wantReason(t, "Unseal of garbage", err, provider.EBADMSG)
	}
	for _, n := range []int{4096, 65536, provider.MaxSealed} {
		_, err := keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: make([]byte, n)})
		wantReason(t, "Unseal of zeros", err, provider.EBADMSG)
	}
	_, err = keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: make([]byte, provider.MaxSealed+1)})
	wantReason(t, "Unseal oversized", err, provider.EMSGSIZE)
	g := good.GetSealed()
	for i := range g {
		flipped := append([]byte(nil), g...)
		flipped[i] ^= 0x40
		_, err := keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: flipped, Aad: []byte("aad")})
		if r := reason(t, "Unseal flipped", err); r != "EBADMSG" && r != "ENOENT" && r != "EKEYREVOKED" {
			t.Fatalf("byte %d flipped: %s (%v)", i, r, err)
		}
		_, err = keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: g[:i], Aad: []byte("aad")})
		wantReason(t, "Unseal truncated", err, provider.EBADMSG)
	}
	_, err = keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: g, Aad: []byte("other")})
	wantReason(t, "Unseal with the wrong AAD", err, provider.EBADMSG)
	_, err = keys.Rewrap(ctx, &keystorev1.RewrapRequest{Key: "enc/k", Sealed: g[:20], Aad: []byte("aad")})
	wantReason(t, "Rewrap of a truncated blob", err, provider.EBADMSG)

	if after := stateHash(t, state); after != before {
		t.Fatal("hostile requests changed the state directory")
	}
	un, err := keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: g, Aad: []byte("aad")})
	mustOK(t, "Unseal after the barrage", err)
	if string(un.GetPlaintext()) != "payload" {
		t.Fatalf("Unseal = %q", un.GetPlaintext())
	}
	pk, err := keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: "sig/k"})
	mustOK(t, "PublicKey", err)
	if !ed25519.Verify(pk.GetPublicKey(), []byte("m"), sig.GetSignature()) {
		t.Fatal("signature does not verify")
	}
	d.Stop()
	if _, err := audit.VerifyFile(filepath.Join(state, auditFile)); err != nil {
		t.Fatalf("audit log: %v", err)
	}
}

func strconvQuote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

// TestIdentityRealUIDs: client processes under two other uids each use
// only their own keys and values; a third, unmapped uid is refused.
func TestIdentityRealUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run client processes under other uids (SysProcAttr.Credential); run the tests as root")
	}
	const gid = 4242 // the socket group; the clients' primary group
	base := publicDir(t)
	sock := filepath.Join(base, "run", "ks.sock")
	cfgDir := t.TempDir()
	cfg := writeFile(t, cfgDir, "keystored.toml", `
unmapped = "deny"
operators = [0]
socket_group = "4242"
[apps]
1001 = "alice"
1002 = "bob"
`, 0o600)
	d := daemontest.Start(t, daemontest.Options{Socket: sock, Args: []string{"--config", cfg}})
	if m := fileMode(t, filepath.Dir(sock)); m.Perm() != 0o750 {
		t.Errorf("socket dir mode %v, want 0750", m)
	}
	if m := fileMode(t, sock); m.Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", m)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(base, "client")
	copyFile(t, exe, client, 0o755)
	run := func(uid uint32, script string) string {
		t.Helper()
		cmd := exec.Command(client)
		cmd.Dir = "/"
		cmd.Env = []string{clientEnv + "=1", "KEYSTORED_TEST_SOCKET=" + sock, "KEYSTORED_TEST_SCRIPT=" + script}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("client as uid %d: %v\n%s", uid, err, stderr.String())
		}
		return string(out)
	}
	check := func(uid uint32, script, want string) {
		t.Helper()
		if got := run(uid, script); got != want {
			t.Errorf("uid %d: %s\n got  %s\n want %s", uid, script, got, want)
		}
	}
	check(1001, "create sig/a ed25519;sign sig/a;sign alice/sig/a;get sig/a;put token alice-secret;getv token",
		"ok;ok;ok;ok:alice/sig/a;ok;ok:alice-secret")
	check(1002, "create sig/b ed25519;sign alice/sig/a;get alice/sig/a;get alice/sig/none;sign sig/a;getv token;listv;list",
		"ok;EPERM;EPERM;EPERM;ENOENT;ENOENT;ok;ok:bob/sig/b")
	check(1002, "put token bob-secret;getv token", "ok;ok:bob-secret")
	check(1001, "sign bob/sig/b;get bob/sig/b;getv token;list;listv", "EPERM;EPERM;ok:alice-secret;ok:alice/sig/a;ok:token")
	check(1003, "create sig/c ed25519;list;getv token;put x y", "EPERM;EPERM;EPERM;EPERM")
	// Operator (root) sees both apps' keys, but its Store namespace is its own.
	keys, store, _ := clients(t, d)
	l, err := keys.List(t.Context(), &keystorev1.ListKeysRequest{})
	mustOK(t, "operator List", err)
	if len(l.GetKeys()) != 2 { // not the daemon's own audit key: that needs --app keystored
		t.Errorf("operator lists %v", l.GetKeys())
	}
	_, err = store.Get(t.Context(), &keystorev1.GetValueRequest{Name: "token"})
	wantReason(t, "operator Get of an app's value", err, provider.ENOENT)
	d.Stop()
	recs := auditRecords(t, filepath.Join(d.State, auditFile))
	uids := map[int64]int{}
	for _, r := range recs {
		uids[r.Caller.UID]++
		if r.Caller.UID == 1003 && (r.Result != "EPERM" || r.Caller.App != "") {
			t.Errorf("unmapped uid's record %+v", r)
		}
	}
	// Each uid's successful create also wrote a keys.applied record.
	if uids[1001] != 12 || uids[1002] != 11 || uids[1003] != 4 {
		t.Errorf("audit records per uid = %v, want 1001:12 1002:11 1003:4", uids)
	}
}

// requestRecords is auditRecords without the daemon's own records: the
// log's ("audit.checkpoint", …), the core's notes ("keys.applied") and
// those of the daemon's own key (keystored/audit/checkpoint, made at the
// first start): one record per request remains.
func requestRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	var out []audit.Record
	for _, r := range auditRecords(t, path) {
		if strings.HasPrefix(r.Op, "audit.") || r.Op == "keys.applied" || strings.HasPrefix(r.Key, core.ReservedApp+"/") {
			continue
		}
		out = append(out, r)
	}
	return out
}

func auditRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n")) {
		r, err := audit.ParseLine(line)
		if err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestProviderPlugin: --provider-plugin runs the pinned software plugin;
// a wrong pin is refused before the daemon serves.
func TestProviderPlugin(t *testing.T) {
	bin, pin := pinnedPlugin(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	args := []string{"--provider-plugin", bin, "--provider-sha256", pin,
		"--provider-arg", "--kek-file=" + filepath.Join(dir, "plugin-kek")}
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: args})
	if !strings.Contains(d.Stdout(), "provider plugin keystore-plugin-software") {
		t.Errorf("stdout %q does not name the plugin", d.Stdout())
	}
	keys, _, _ := clients(t, d)
	_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create through the plugin", err)
	s, err := keys.Sign(t.Context(), &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
	mustOK(t, "Sign through the plugin", err)
	v, err := keys.Verify(t.Context(), &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: []byte("m"), Signature: s.GetSignature()})
	mustOK(t, "Verify", err)
	if !v.GetValid() {
		t.Fatal("plugin signature does not verify")
	}
	d.Stop()

	bad := append([]string(nil), args...)
	bad[3] = strings.Repeat("0", 64)
	r := daemontest.Run(t, daemontest.Options{Dir: dir, State: state, Args: bad})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "provider plugin") {
		t.Errorf("wrong pin: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
}

// TestInsecurePluginNeedsAck: a plugin that announces itself insecure (the
// testseed plugin, which needs --insecure of its own) is refused by the
// daemon without --i-understand-this-is-insecure, before the state is
// made; with it, the daemon serves and warns.
func TestInsecurePluginNeedsAck(t *testing.T) {
	bin, pin := pinnedPlugin(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-testseed")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	args := []string{"--provider-plugin", bin, "--provider-sha256", pin,
		"--provider-arg", "--insecure", "--provider-arg", "--seed", "--provider-arg", "000102030405060708090a0b0c0d0e0f"}
	r := daemontest.Run(t, daemontest.Options{Dir: dir, State: state, Args: args})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "announces itself insecure") || !strings.Contains(r.Stderr, "--i-understand-this-is-insecure") {
		t.Errorf("insecure plugin without the acknowledgement: exit %d, stderr:\n%s", r.ExitCode, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "keystore", "MANIFEST")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused daemon initialised the keystore: %v", err)
	}
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: append(args, "--i-understand-this-is-insecure")})
	keys, _, _ := clients(t, d)
	cr, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create through the insecure plugin", err)
	if !cr.GetKey().GetInsecure() {
		t.Error("a key of the insecure plugin is not marked insecure")
	}
	d.Stop()
	// Checked once the daemon has exited: its stderr is copied by its own
	// goroutine and may lag behind the stdout line that said it is ready.
	if !strings.Contains(d.Stderr(), insecurePluginWarning) {
		t.Errorf("stderr lacks %q:\n%s", insecurePluginWarning, d.Stderr())
	}
}

// TestNoCoreDumps: the daemon and its plugin turn core dumps off
// (RLIMIT_CORE 0/0 and PR_SET_DUMPABLE 0) although they were started with
// a core limit that allows dumps (issue 9, item 7: a dump held the KEK and
// the private keys). The dumpable flag is read the kernel's way: the
// files of /proc/<pid> of a non-dumpable process are owned by root:root
// instead of its effective uid and gid, so the daemon runs with a gid that
// is not 0. --insecure-allow-core-dumps keeps the daemon dumpable (and
// warns), while the plugin still turns dumps off itself.
func TestNoCoreDumps(t *testing.T) {
	var cred *syscall.Credential
	gid := uint32(os.Getegid())
	if os.Geteuid() == 0 {
		gid = 65534 // root's files would be root:root either way
		cred = &syscall.Credential{Uid: 0, Gid: gid}
	}
	if gid == 0 {
		t.Skip("the test process's gid is 0 but it is not root: the /proc ownership check cannot tell dumpable from not")
	}
	allowCores(t)
	bin, pin := pinnedPlugin(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	for _, allow := range []bool{false, true} {
		dir := t.TempDir()
		args := []string{"--provider-plugin", bin, "--provider-sha256", pin,
			"--provider-arg", "--kek-file=" + filepath.Join(dir, "plugin-kek")}
		if allow {
			args = append(args, "--insecure-allow-core-dumps")
		}
		d := daemontest.Start(t, daemontest.Options{Dir: dir, Args: args, Credential: cred})
		plug := childOf(t, d.Pid())
		daemonDumpable := procDumpable(t, d.Pid(), gid)
		if daemonDumpable != allow {
			t.Errorf("allow=%v: the daemon's dumpable flag is %v", allow, daemonDumpable)
		}
		if soft, hard := coreLimit(t, d.Pid()); !allow && (soft != "0" || hard != "0") {
			t.Errorf("the daemon's core limit is %s/%s, want 0/0", soft, hard)
		} else if allow && soft == "0" {
			t.Errorf("with --insecure-allow-core-dumps the daemon's core limit is %s/%s", soft, hard)
		}
		if procDumpable(t, plug, gid) {
			t.Errorf("allow=%v: the plugin process %d is dumpable", allow, plug)
		}
		if soft, hard := coreLimit(t, plug); soft != "0" || hard != "0" {
			t.Errorf("allow=%v: the plugin's core limit is %s/%s, want 0/0", allow, soft, hard)
		}
		if allow && !d.WaitStderr(coreDumpWarning) || !allow && strings.Contains(d.Stderr(), coreDumpWarning) {
			t.Errorf("allow=%v: the warning %q in stderr: %v", allow, coreDumpWarning, !allow)
		}
		d.Stop()
	}
}

// allowCores raises the test process's RLIMIT_CORE (inherited by the
// daemon) so that a process that did not turn dumps off would keep a
// non-zero limit; restored when t ends.
func allowCores(t *testing.T) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &old); err != nil {
		t.Fatal(err)
	}
	want := syscall.Rlimit{Cur: 1 << 30, Max: max(old.Max, 1<<30)}
	if os.Geteuid() != 0 {
		want = syscall.Rlimit{Cur: min(old.Max, 1<<30), Max: old.Max}
	}
	if want.Cur == 0 {
		t.Skip("RLIMIT_CORE's hard limit is 0 and the test is not root: a daemon that left it alone would pass")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &want); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &old); err != nil {
			t.Errorf("restoring RLIMIT_CORE: %v", err)
		}
	})
}

// procDumpable reports whether process pid, whose effective gid is gid
// (not 0), is dumpable: the kernel gives /proc/<pid>/status the process's
// own uid and gid when it is, root's when it is not.
func procDumpable(t *testing.T, pid int, gid uint32) bool {
	t.Helper()
	status := fmt.Sprintf("/proc/%d/status", pid)
	data, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Gid:\s+\d+\s+(\d+)`).FindSubmatch(data)
	if m == nil || string(m[1]) != strconv.FormatUint(uint64(gid), 10) {
		t.Fatalf("%s: effective gid %q, want %d", status, m, gid)
	}
	fi, err := os.Stat(status)
	if err != nil {
		t.Fatal(err)
	}
	switch g := fi.Sys().(*syscall.Stat_t).Gid; g {
	case gid:
		return true
	case 0:
		return false
	default:
		t.Fatalf("%s is owned by gid %d: neither the process's (%d) nor root's", status, g, gid)
		return false
	}
}

// coreLimit returns the soft and hard "Max core file size" of pid.
func coreLimit(t *testing.T, pid int) (soft, hard string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Max core file size\s+(\S+)\s+(\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("/proc/%d/limits has no core line:\n%s", pid, data)
	}
	return string(m[1]), string(m[2])
}

// childOf returns the pid of the one child process of pid.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	want := "\nPPid:\t" + strconv.Itoa(pid) + "\n"
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err == nil && strings.Contains(string(data), want) {
			kids = append(kids, n)
		}
	}
	if len(kids) != 1 {
		t.Fatalf("process %d has children %v, want exactly one (the plugin)", pid, kids)
	}
	return kids[0]
}

// TestStateRootChangedWhileRunning: a state directory made 0777 while the
// daemon runs is noticed at the next key creation (EIO, the message names
// the directory; nothing is created), existing keys keep signing, and
// once the mode is fixed creation works again.
func TestStateRootChangedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	keys, _, _ := clients(t, d)
	_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/old", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err = keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "ed25519"})
	wantReason(t, "Create under a 0777 state directory", err, provider.EIO)
	if err != nil && !strings.Contains(err.Error(), "is now writable by group or others") {
		t.Errorf("error %q does not say what changed", err)
	}
	_, err = keys.Sign(t.Context(), &keystorev1.SignRequest{Key: "sig/old", Message: []byte("m")})
	mustOK(t, "Sign with an existing key", err)
	if err := os.Chmod(state, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "ed25519"})
	mustOK(t, "Create after the fix", err)
	d.Stop()
}

// takeSeals clears the seal counts of a listing's versions and returns
// them by "<key>@<version>" (decrypt versions only).
func takeSeals(l *keystorev1.ListKeysResponse) map[string]uint64 {
	out := map[string]uint64{}
	for _, k := range l.GetKeys() {
		for _, v := range k.GetVersions() {
			if v.GetSealLimit() > 0 {
				out[k.GetId()+"@"+strconv.FormatUint(uint64(v.GetVersion()), 10)] = v.GetSeals()
				v.Seals = 0
			}
		}
	}
	return out
}

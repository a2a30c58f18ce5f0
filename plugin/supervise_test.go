package plugin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// killPlugin SIGKILLs c's plugin process, waits until the client has
// reaped it, and returns its pid.
func killPlugin(t testing.TB, c *Client) int {
	t.Helper()
	in := c.cur.Load()
	if in == nil || in.run == nil || in.run.processID() <= 0 {
		t.Fatal("no plugin process")
	}
	pid := in.run.processID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	select {
	case <-in.run.exited:
	case <-time.After(time.Minute): // only turns a hang into a failure
		t.Fatalf("plugin process %d was not reaped after SIGKILL", pid)
	}
	return pid
}

// openKeystore opens a keystore on memory storage backed by p.
func openKeystore(t testing.TB, p provider.Provider) *core.Keystore {
	t.Helper()
	ks, err := core.Open(t.Context(), core.Config{
		Storage:  storage.NewMemory(),
		Provider: p,
		Clock:    clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Audit:    core.DiscardAudit{},
	})
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	return ks
}

var testCaller = core.Caller{App: "app"}

// TestCrashMidStream kills the software plugin with SIGKILL while a stream
// of signs runs through a keystore backed by it. Calls that fail fail
// with EUNAVAILABLE from the lost connection (not from the 10-minute
// call timeout, so nothing hung); the next calls restart the plugin; every
// key made before the crash still signs, verifies and unseals (the
// handles live in the keystore's storage, the KEK in the plugin's file).
func TestCrashMidStream(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	c := softwarePlugin(t, Config{CallTimeout: 10 * time.Minute, Logger: testLogger(logs)})
	ks := openKeystore(t, c)
	ctx := t.Context()

	const nkeys = 6
	ids := make([]core.KeyID, nkeys)
	for i := range ids {
		id, err := provider.NewKeyID("app", "stream", fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Create(ctx, testCaller, id, core.CreateOptions{Algorithm: provider.Ed25519}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		ids[i] = id
	}
	aeadID, err := provider.NewKeyID("app", "stream", "aead")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Create(ctx, testCaller, aeadID, core.CreateOptions{Algorithm: provider.XChaCha20Poly1305}); err != nil {
		t.Fatal(err)
	}
	sealed, err := ks.Seal(ctx, testCaller, aeadID, []byte("sealed before the crash"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}

	const workers = 4
	var (
		mu        sync.Mutex
		ok        int
		okAfter   int
		failures  []error
		killed    bool
		killedPid int
		wg        sync.WaitGroup
		stopOnce  sync.Once
	)
	stop := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[(w+i)%nkeys]
				msg := []byte(fmt.Sprintf("message %d/%d", w, i))
				sig, err := ks.Sign(ctx, testCaller, id, msg)
				if err == nil {
					err = ks.Verify(ctx, testCaller, id, sig.Version, msg, sig.Signature)
				}
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err)
				case killed:
					okAfter++
				default:
					ok++
				}
				if !killed && ok >= 100 {
					killed = true
					killedPid = killPlugin(t, c)
				}
				if killed && okAfter >= 100 {
					stopOnce.Do(func() { close(stop) })
					mu.Unlock()
					return
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	select {
	case <-stop:
	default:
		t.Fatalf("the stream never recovered: %d signs before the kill, %d after, %d failures", ok, okAfter, len(failures))
	}
	t.Logf("%d signs before SIGKILL, %d after, %d failed calls", ok, okAfter, len(failures))
	for _, err := range failures {
		if !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("a call failed with %q, want EUNAVAILABLE", err)
		}
		if strings.Contains(err.Error(), "did not answer") {
			t.Errorf("a call hung until the call timeout: %q", err)
		}
	}
	if pid := c.pid(); pid == killedPid || pid == 0 {
		t.Errorf("plugin pid after restart = %d, killed %d", pid, killedPid)
	}
	// Every key still signs and verifies, under the stored public key too.
	for _, id := range ids {
		msg := []byte("after the restart")
		sig, err := ks.Sign(ctx, testCaller, id, msg)
		if err != nil {
			t.Fatalf("sign %s after restart: %v", id, err)
		}
		pk, err := ks.PublicKey(ctx, testCaller, id, sig.Version)
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pk.Key, msg, sig.Signature) {
			t.Errorf("signature of %s after the restart does not verify", id)
		}
	}
	pt, err := ks.Unseal(ctx, testCaller, aeadID, sealed.Data, []byte("aad"))
	if err != nil || string(pt.Plaintext) != "sealed before the crash" {
		t.Errorf("unseal after restart = %q, %v", pt, err)
	}
	if !strings.Contains(string(logs.Bytes()), "restart") {
		t.Errorf("the host log does not mention the restart:\n%s", logs.Bytes())
	}
}

// misbehavePlugin launches the misbehave test plugin in mode.
func misbehavePlugin(t testing.TB, mode string, cfg Config) *Client {
	t.Helper()
	_, _, mb := binaries(t)
	cfg.Args = append([]string{mode}, cfg.Args...)
	return launch(t, mb, cfg)
}

// TestInFlightCallFailsWhenPluginDies: a call the plugin will never answer
// fails with EUNAVAILABLE as soon as the process is killed, long before
// the call timeout; the next call restarts the plugin.
func TestInFlightCallFailsWhenPluginDies(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{CallTimeout: 10 * time.Minute})
	ref := signRef(t, "misbehave")
	errc := make(chan error, 1)
	go func() {
		_, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("hang"))
		errc <- err
	}()
	// Make sure the plugin is up and serving other calls meanwhile.
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Fatal(err)
	}
	old := killPlugin(t, c)
	select {
	case err := <-errc:
		checkCode(t, err, provider.EUNAVAILABLE)
		if strings.Contains(err.Error(), "did not answer") {
			t.Errorf("the in-flight call ran into the call timeout: %q", err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatal("the in-flight call did not return after the plugin died")
	}
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Fatalf("sign after the restart: %v", err)
	}
	if c.pid() == old {
		t.Error("the plugin was not restarted")
	}
}

// TestHangBoundedByCallTimeout: a plugin that never answers costs the
// caller CallTimeout, then EUNAVAILABLE; the plugin is not restarted for
// it.
func TestHangBoundedByCallTimeout(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{CallTimeout: 200 * time.Millisecond})
	ref := signRef(t, "misbehave")
	pid := c.pid()
	_, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("hang"))
	checkCode(t, err, provider.EUNAVAILABLE)
	if !strings.Contains(err.Error(), "did not answer within 200ms") {
		t.Errorf("error %q does not name the call timeout", err)
	}
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Errorf("sign after a timed-out call: %v", err)
	}
	if c.pid() != pid {
		t.Error("the plugin was restarted after a timeout")
	}
}

// TestOversizedReplyRefused: replies over MaxReply (gRPC's receive bound)
// and over the contract's bounds are refused with EIO; the connection
// survives.
func TestOversizedReplyRefused(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{})
	ref := signRef(t, "misbehave")
	for _, tc := range []struct{ msg, want string }{
		{"huge", fmt.Sprintf("reply over %d bytes refused", DefaultMaxReply)},
		{"sig+1", fmt.Sprintf("returned a signature of %d bytes", provider.MaxSignature+1)},
	} {
		sig, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte(tc.msg))
		if sig != nil {
			t.Errorf("%s: got %d bytes", tc.msg, len(sig))
		}
		checkCode(t, err, provider.EIO)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to say %q", tc.msg, err, tc.want)
		}
	}
	pid := c.pid()
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Errorf("sign after refused replies: %v", err)
	}
	if c.pid() != pid {
		t.Error("the plugin was restarted")
	}
	// A smaller MaxReply applies from the first reply (Info).
	_, _, mb := binaries(t)
	_, err := Launch(t.Context(), Config{Path: mb, SHA256: sha256File(t, mb), PrivateDir: privDir(t), Args: []string{"serve"}, MaxReply: 32})
	checkCode(t, err, provider.EIO)
}

// TestCoolDownAfterRepeatedCrashes: a plugin that dies on every call is
// restarted MaxRestarts-1 times, then the client refuses for CoolDown.
func TestCoolDownAfterRepeatedCrashes(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{MaxRestarts: 2, RestartBackoff: time.Millisecond, CoolDown: time.Hour})
	ref := signRef(t, "misbehave")
	for i := 1; i <= 2; i++ {
		_, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("crash"))
		checkCode(t, err, provider.EUNAVAILABLE)
	}
	for i := 0; i < 2; i++ {
		_, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine"))
		checkCode(t, err, provider.EUNAVAILABLE)
		if !strings.Contains(err.Error(), "failed 2 times; next attempt after") {
			t.Errorf("error %q does not announce the cool-down", err)
		}
	}
	if c.pid() != 0 {
		t.Error("a plugin process runs during the cool-down")
	}
}

// TestRestartAfterServedCrashResetsFailures: crashes separated by
// successful calls never reach the cool-down.
func TestRestartAfterServedCrashResetsFailures(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{MaxRestarts: 2, RestartBackoff: time.Millisecond, CoolDown: time.Hour})
	ref := signRef(t, "misbehave")
	for i := 0; i < 4; i++ {
		if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		_, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("crash"))
		checkCode(t, err, provider.EUNAVAILABLE)
	}
}

// TestRestartRefusesChangedInfo: a restarted plugin that announces
// another Info (here Secure flips) is refused.
func TestRestartRefusesChangedInfo(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "flip", Config{RestartBackoff: time.Millisecond})
	ref := signRef(t, "misbehave")
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Fatal(err)
	}
	killPlugin(t, c)
	for i := 0; i < 2; i++ {
		_, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine"))
		checkCode(t, err, provider.EUNAVAILABLE)
		if !strings.Contains(err.Error(), "describes itself differently") {
			t.Errorf("error %q does not say why the restart was refused", err)
		}
	}
	info, _ := c.Info(t.Context())
	if !info.Secure {
		t.Error("the client's Info changed")
	}
}

// TestRestartEnv: a restart runs with Config.RestartEnv, not Env (here
// the plugin reports the variable in Info, so a restart with another value
// is refused as a changed Info); the same value restarts fine.
func TestRestartEnv(t *testing.T) {
	t.Parallel()
	ref := signRef(t, "misbehave")
	same := misbehavePlugin(t, "serve", Config{RestartBackoff: time.Millisecond,
		Env: []string{"KEYSTORE_TEST_VISIBLE=x"}, RestartEnv: []string{"KEYSTORE_TEST_VISIBLE=x"}})
	killPlugin(t, same)
	if _, err := same.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Fatalf("restart with the same environment: %v", err)
	}
	other := misbehavePlugin(t, "serve", Config{RestartBackoff: time.Millisecond,
		Env: []string{"KEYSTORE_TEST_VISIBLE=at-launch"}, RestartEnv: []string{"KEYSTORE_TEST_VISIBLE=at-restart"}})
	killPlugin(t, other)
	_, err := other.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine"))
	checkCode(t, err, provider.EUNAVAILABLE)
	if !strings.Contains(err.Error(), "describes itself differently") {
		t.Errorf("restart with RestartEnv: %v; want it refused as a changed Info (it saw RestartEnv)", err)
	}
}

// TestCloseStopsPlugin: Close kills the plugin, empties the private
// directory, and later calls fail with EUNAVAILABLE.
func TestCloseStopsPlugin(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{})
	pid, root := c.pid(), c.dir.path
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
		t.Errorf("private directory %s after Close: %v, %v; want it empty", root, entries, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plugin process %d after Close: kill(0) = %v, want ESRCH", pid, err)
	}
	_, err := c.Sign(t.Context(), signRef(t, "misbehave"), provider.Handle("h"), []byte("fine"))
	checkCode(t, err, provider.EUNAVAILABLE)
}

// TestCancelledRestartIsNotAFailure: callers that give up while the
// plugin is being restarted do not push the client into its cool-down.
func TestCancelledRestartIsNotAFailure(t *testing.T) {
	t.Parallel()
	// A 1 ns backoff lets the cancelled callers reach the start itself.
	c := misbehavePlugin(t, "serve", Config{MaxRestarts: 2, RestartBackoff: 1, CoolDown: time.Hour})
	ref := signRef(t, "misbehave")
	killPlugin(t, c)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for i := 0; i < 5; i++ {
		_, err := c.Sign(cancelled, ref, provider.Handle("h"), []byte("fine"))
		checkCode(t, err, provider.EUNAVAILABLE)
	}
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Fatalf("sign after cancelled restarts: %v", err)
	}
}

// TestStatus: Status follows the plugin: running, down once it dies,
// running again after a restart (counted), cooling down after
// MaxRestarts failed starts, closed after Close.
func TestStatus(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{MaxRestarts: 2, RestartBackoff: time.Millisecond, CoolDown: time.Hour})
	ref := signRef(t, "misbehave")
	want := func(state State, restarts uint64) {
		t.Helper()
		if s := c.Status(); s.State != state || s.Restarts != restarts {
			t.Errorf("Status = %v (%d restarts), want %v (%d)", s.State, s.Restarts, state, restarts)
		}
	}
	want(StateRunning, 0)
	killPlugin(t, c)
	want(StateDown, 0)
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil {
		t.Fatal(err)
	}
	want(StateRunning, 1)
	for range 2 {
		_, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("crash"))
		checkCode(t, err, provider.EUNAVAILABLE)
	}
	if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err == nil {
		t.Fatal("a call succeeded during the cool-down")
	}
	if s := c.Status(); s.State != StateCoolingDown {
		t.Errorf("Status after repeated crashes = %v, want %v", s.State, StateCoolingDown)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if s := c.Status(); s.State != StateClosed {
		t.Errorf("Status after Close = %v, want %v", s.State, StateClosed)
	}
	if got := State(0).String(); got != "invalid-state(0)" {
		t.Errorf("State(0) = %q", got)
	}
}

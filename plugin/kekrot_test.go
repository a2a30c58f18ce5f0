package plugin

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
	"github.com/nexus-os/keystored/providers/software"
)

const (
	kekA = "0123456789abcdef"
	kekB = "fedcba9876543210"
)

// fakeRotator is a fakeProvider that rotates its KEK: Begin puts next
// first in its KEKs, Commit keeps the first alone (unless told to
// misbehave). It counts the rotation calls that reach it.
type fakeRotator struct {
	*fakeProvider
	mu        sync.Mutex
	keks      []string
	next      string            // what Begin returns
	rewrapped []byte            // what RewrapHandle returns
	stuck     bool              // Begin and Commit leave the KEKs as they are
	calls     int               // rotation calls that reached the provider
	refs      []provider.KeyRef // RewrapHandle's refs
}

func newFakeRotator() *fakeRotator {
	return &fakeRotator{fakeProvider: newFake(nil), keks: []string{kekA}, next: kekB, rewrapped: []byte("rewrapped")}
}

func (f *fakeRotator) Info(context.Context) (provider.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.info
	i.KEKs = slices.Clone(f.keks)
	return i, nil
}

func (f *fakeRotator) BeginKEKRotation(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.stuck && len(f.keks) == 1 {
		f.keks = []string{f.next, f.keks[0]}
	}
	return f.next, nil
}

func (f *fakeRotator) RewrapHandle(_ context.Context, ref provider.KeyRef, _ provider.Handle) (provider.Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.refs = append(f.refs, ref)
	return slices.Clone(f.rewrapped), nil
}

func (f *fakeRotator) CommitKEKRotation(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.stuck {
		f.keks = f.keks[:1]
	}
	return nil
}

func (f *fakeRotator) rotationCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func keksOf(t *testing.T, p provider.Provider) []string {
	t.Helper()
	i, err := p.Info(t.Context())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return i.KEKs
}

// TestKEKRotationCapability: a provider that implements
// provider.KEKRotator is announced as such (kek_rotation) and its client
// is one; a provider that does not is neither, its plugin answers the
// rotation RPCs with ENOTSUP, and the core's rotation over it is ENOTSUP
// before it does anything. A *Client itself is never a KEKRotator:
// Provider adds it, for the software plugin binary and not the testseed
// one.
func TestKEKRotationCapability(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	if _, ok := TestClient(t, newFakeRotator()).(provider.KEKRotator); !ok {
		t.Error("the client of a KEKRotator is not one")
	}
	plain := newFake(nil)
	p := TestClient(t, plain)
	if _, ok := p.(provider.KEKRotator); ok {
		t.Error("the client of a provider that cannot rotate is a KEKRotator")
	}
	s := &server{p: plain}
	if w, err := s.Info(ctx, &providerpb.InfoRequest{}); err != nil || w.GetKekRotation() {
		t.Errorf("Info of a provider that cannot rotate: kek_rotation %v, %v", w.GetKekRotation(), err)
	}
	if w, err := (&server{p: newFakeRotator()}).Info(ctx, &providerpb.InfoRequest{}); err != nil || !w.GetKekRotation() {
		t.Errorf("Info of a KEKRotator: kek_rotation %v, %v", w.GetKekRotation(), err)
	}
	ref := refToWire(signRef(t, "fake"))
	for name, call := range map[string]func() error{
		"begin": func() error { _, err := s.BeginKEKRotation(ctx, &providerpb.BeginKEKRotationRequest{}); return err },
		"rewrap": func() error {
			_, err := s.RewrapHandle(ctx, &providerpb.RewrapHandleRequest{Ref: ref, Handle: []byte("h")})
			return err
		},
		"commit": func() error { _, err := s.CommitKEKRotation(ctx, &providerpb.CommitKEKRotationRequest{}); return err },
	} {
		if err := rpcerr.FromStatus(call()); !errorsIsCode(err, provider.ENOTSUP) {
			t.Errorf("%s on a plugin whose provider cannot rotate: %v, want ENOTSUP", name, err)
		}
	}
	ks := openKeystore(t, p)
	if _, err := ks.RotateKEK(ctx, core.Caller{Operator: true}); !errorsIsCode(err, provider.ENOTSUP) {
		t.Errorf("RotateKEK over a plugin that cannot rotate: %v, want ENOTSUP", err)
	}

	sw := softwarePlugin(t, Config{})
	if _, ok := any(sw).(provider.KEKRotator); ok {
		t.Error("*Client is a KEKRotator")
	}
	if _, ok := sw.Provider().(provider.KEKRotator); !ok {
		t.Error("the software plugin's Provider() is not a KEKRotator")
	}
	if _, ok := testseedPlugin(t, Config{}).Provider().(provider.KEKRotator); ok {
		t.Error("the testseed plugin's Provider() is a KEKRotator")
	}
}

// TestKEKRotationAcrossTheWire: the client adopts the KEKs the plugin
// announces after Begin ([next, current]) and Commit ([next]); requests
// are checked on both sides before the provider sees them (a bad ref, a
// handle over the bound); replies outside the contract are EIO on the
// side that gets them (an invalid next KEK or a rewrapped handle of a bad
// size from the provider; KEKs after Begin or Commit that the contract
// does not allow), and the client's KEKs then stay as they were.
func TestKEKRotationAcrossTheWire(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ref := signRef(t, "fake")
	big := make([]byte, provider.MaxHandle+1)

	f := newFakeRotator()
	p := TestClient(t, f)
	rot := p.(provider.KEKRotator)
	if _, err := rot.RewrapHandle(ctx, ref, big); !errorsIsCode(err, provider.EINVAL) {
		t.Errorf("client: rewrap of a handle over the bound = %v, want EINVAL", err)
	}
	s := &server{p: f}
	for name, req := range map[string]*providerpb.RewrapHandleRequest{
		"no ref":             {Handle: []byte("h")},
		"bad ref":            {Ref: &providerpb.KeyRef{KeyId: "x"}, Handle: []byte("h")},
		"handle over bound":  {Ref: refToWire(ref), Handle: big},
		"unannounced use 99": {Ref: &providerpb.KeyRef{KeyId: ref.ID.String(), Version: 1, Algorithm: "ed25519", Use: 99, Provider: "fake"}, Handle: []byte("h")},
	} {
		_, err := s.RewrapHandle(ctx, req)
		if err := rpcerr.FromStatus(err); !errorsIsCode(err, provider.EINVAL) {
			t.Errorf("server: rewrap with %s = %v, want EINVAL", name, err)
		}
	}
	if n := f.rotationCalls(); n != 0 {
		t.Fatalf("the provider saw %d bad rotation requests", n)
	}

	next, err := rot.BeginKEKRotation(ctx)
	if err != nil || next != kekB || !slices.Equal(keksOf(t, p), []string{kekB, kekA}) {
		t.Fatalf("Begin = %q, %v; KEKs %q; want %s and [%s %s]", next, err, keksOf(t, p), kekB, kekB, kekA)
	}
	h, err := rot.RewrapHandle(ctx, ref, provider.Handle("old"))
	if err != nil || string(h) != "rewrapped" || len(f.refs) != 1 || f.refs[0] != ref {
		t.Fatalf("Rewrap = %q, %v; the provider saw %v", h, err, f.refs)
	}
	if err := rot.CommitKEKRotation(ctx); err != nil || !slices.Equal(keksOf(t, p), []string{kekB}) {
		t.Fatalf("Commit = %v; KEKs %q, want [%s]", err, keksOf(t, p), kekB)
	}

	// The provider's replies outside the contract, refused by the plugin.
	for name, bad := range map[string]func(*fakeRotator){
		"an invalid next KEK":         func(f *fakeRotator) { f.next = "NOT-HEX" },
		"an empty rewrapped handle":   func(f *fakeRotator) { f.rewrapped = nil },
		"a rewrapped handle too long": func(f *fakeRotator) { f.rewrapped = big },
	} {
		f := newFakeRotator()
		bad(f)
		rot := TestClient(t, f).(provider.KEKRotator)
		var err error
		if strings.Contains(name, "KEK") {
			_, err = rot.BeginKEKRotation(ctx)
		} else {
			_, err = rot.RewrapHandle(ctx, ref, provider.Handle("h"))
		}
		if !errorsIsCode(err, provider.EIO) {
			t.Errorf("provider returning %s: %v, want EIO", name, err)
		}
	}
	// A plugin whose KEKs do not change as the contract says: EIO, and
	// the client keeps the KEKs it knew.
	stuck := newFakeRotator()
	stuck.stuck = true
	sp := TestClient(t, stuck)
	if _, err := sp.(provider.KEKRotator).BeginKEKRotation(ctx); !errorsIsCode(err, provider.EIO) || !slices.Equal(keksOf(t, sp), []string{kekA}) {
		t.Errorf("Begin that adds no KEK: %v, KEKs %q; want EIO and [%s]", err, keksOf(t, sp), kekA)
	}
	stuck = newFakeRotator()
	sp = TestClient(t, stuck)
	if _, err := sp.(provider.KEKRotator).BeginKEKRotation(ctx); err != nil {
		t.Fatal(err)
	}
	stuck.mu.Lock()
	stuck.stuck = true
	stuck.mu.Unlock()
	if err := sp.(provider.KEKRotator).CommitKEKRotation(ctx); !errorsIsCode(err, provider.EIO) || !slices.Equal(keksOf(t, sp), []string{kekB, kekA}) {
		t.Errorf("Commit that keeps the old KEK: %v, KEKs %q; want EIO and [%s %s]", err, keksOf(t, sp), kekB, kekA)
	}
}

// TestRestartAcrossKEKRotation: the software plugin binary, killed while
// its KEK file rotates under it (by another software provider over the
// same file, as a plugin that did a Begin or a Commit but died before its
// reply leaves it), is restarted and accepted with its new KEKs, which
// the client adopts: [next, current] after a Begin, [next] after a
// Commit. A plugin restarted over a KEK file that holds none of the KEKs
// it held before is refused.
func TestRestartAcrossKEKRotation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kekPath := filepath.Join(t.TempDir(), "kek")
	c := softwarePluginOver(t, kekPath)
	p := c.Provider()
	ref := signRef(t, software.Name)
	g, err := p.Generate(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	cur := keksOf(t, p)
	sign := func(what string) {
		t.Helper()
		// The first call after a kill may find the connection lost
		// (EUNAVAILABLE); the next restarts the plugin.
		var err error
		for range 3 {
			if _, err = p.Sign(ctx, ref, g.Handle, []byte("m")); err == nil {
				return
			}
		}
		t.Fatalf("%s: sign: %v", what, err)
	}

	other, err := software.New(software.Config{KEKFile: kekPath})
	if err != nil {
		t.Fatal(err)
	}
	rot := other.(provider.KEKRotator)
	next, err := rot.BeginKEKRotation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killPlugin(t, c)
	sign("after a Begin")
	if got, want := keksOf(t, p), append([]string{next}, cur...); !slices.Equal(got, want) {
		t.Fatalf("KEKs after a restart mid rotation = %q, want %q", got, want)
	}
	// The restarted plugin rewraps under the next KEK, which the other
	// provider then commits.
	if g.Handle, err = p.(provider.KEKRotator).RewrapHandle(ctx, ref, g.Handle); err != nil {
		t.Fatalf("rewrap through the restarted plugin: %v", err)
	}
	if err := rot.CommitKEKRotation(ctx); err != nil {
		t.Fatal(err)
	}
	killPlugin(t, c)
	sign("after a Commit")
	if got := keksOf(t, p); !slices.Equal(got, []string{next}) {
		t.Fatalf("KEKs after a restart after the commit = %q, want [%s]", got, next)
	}

	// Another KEK altogether: none of the handles would open.
	if err := os.Remove(kekPath); err != nil {
		t.Fatal(err)
	}
	if _, err := software.New(software.Config{KEKFile: kekPath, Create: true}); err != nil {
		t.Fatal(err)
	}
	killPlugin(t, c)
	var last error
	for range 3 {
		_, last = p.Sign(ctx, ref, g.Handle, []byte("m"))
	}
	checkCode(t, last, provider.EUNAVAILABLE)
	if !strings.Contains(last.Error(), "none of the KEKs") {
		t.Errorf("restart over another KEK: %v; want it refused for holding none of the KEKs", last)
	}
	if got := keksOf(t, p); !slices.Equal(got, []string{next}) {
		t.Errorf("KEKs after a refused restart = %q, want [%s]", got, next)
	}
}

// killAt is a keystore's view of the software plugin (Client.Provider)
// that kills the plugin process at one step of a KEK rotation: the n-th
// call of a step ("begin", "rewrap", "commit"), either before the call
// reaches the plugin (which the client then restarts) or after the
// plugin did it, the reply lost (the call fails with EUNAVAILABLE, as
// over a connection lost before the reply).
type killAt struct {
	provider.Provider
	t      *testing.T
	c      *Client
	step   string
	n      int
	after  bool
	calls  int
	killed bool
}

// kill runs call as step, killing the plugin when it is the one.
func (k *killAt) kill(step string, call func() error) error {
	if step != k.step {
		return call()
	}
	k.calls++
	if k.calls != k.n {
		return call()
	}
	k.killed = true
	if !k.after {
		killPlugin(k.t, k.c)
		return call()
	}
	if err := call(); err != nil {
		return err
	}
	killPlugin(k.t, k.c)
	return provider.Errorf(provider.EUNAVAILABLE, "lost the connection to the plugin before its reply to %s", step)
}

func (k *killAt) BeginKEKRotation(ctx context.Context) (next string, err error) {
	err = k.kill("begin", func() (err error) {
		next, err = k.Provider.(provider.KEKRotator).BeginKEKRotation(ctx)
		return err
	})
	return next, err
}

func (k *killAt) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (nh provider.Handle, err error) {
	err = k.kill("rewrap", func() (err error) {
		nh, err = k.Provider.(provider.KEKRotator).RewrapHandle(ctx, ref, h)
		return err
	})
	return nh, err
}

func (k *killAt) CommitKEKRotation(ctx context.Context) error {
	return k.kill("commit", func() error { return k.Provider.(provider.KEKRotator).CommitKEKRotation(ctx) })
}

// TestKEKRotationPluginKilled: a keystore over the software plugin
// binary rotates its KEK over five keys while the plugin is killed: in
// the middle of the rewraps, before a call (the client restarts the
// plugin, which holds both KEKs, and the rotation completes) or after one
// (the reply lost: the rotation fails before its commit); after its Begin
// or its Commit took effect, the reply lost. Keys sign after each
// failure, and a rerun in the same keystore completes: every key signs
// under the new KEK alone, the KEK file holds it and no next KEK file is
// left.
func TestKEKRotationPluginKilled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		step  string
		n     int
		after bool
	}{{"rewrap", 3, false}, {"rewrap", 3, true}, {"begin", 1, true}, {"commit", 1, true}} {
		name := tc.step + "-before"
		if tc.after {
			name = tc.step + "-reply-lost"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			kekPath := filepath.Join(t.TempDir(), "kek")
			c := softwarePluginOver(t, kekPath)
			k := &killAt{Provider: c.Provider(), t: t, c: c, step: tc.step, n: tc.n, after: tc.after}
			ks := openKeystore(t, k)
			op := core.Caller{Operator: true}
			var ids []core.KeyID
			for _, name := range []string{"a", "b", "c", "d", "e"} {
				id, err := provider.NewKeyID("app", "kek", name)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ks.Create(ctx, testCaller, id, core.CreateOptions{Algorithm: provider.Ed25519}); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			usable := func(what string) {
				t.Helper()
				for _, id := range ids {
					if _, err := ks.Sign(ctx, testCaller, id, []byte("m")); err != nil {
						t.Fatalf("%s: sign with %s: %v", what, id, err)
					}
				}
			}
			old := keksOf(t, c)
			r, err := ks.RotateKEK(ctx, op)
			if !k.killed {
				t.Fatalf("the plugin was not killed at %s #%d", tc.step, tc.n)
			}
			if !tc.after {
				if err != nil || !r.Committed || r.Rewrapped != len(ids) {
					t.Fatalf("rotation with the plugin killed before a rewrap: %+v, %v; want it to complete", r, err)
				}
			} else {
				if err == nil || r.Committed {
					t.Fatalf("rotation with a lost reply to %s: %+v, %v; want a failure before the commit", tc.step, r, err)
				}
				usable("after the failed rotation")
				r, err = ks.RotateKEK(ctx, op)
				if err != nil || !r.Committed {
					t.Fatalf("rerun: %+v, %v; want it committed", r, err)
				}
			}
			if r.To == "" || r.To == old[0] {
				t.Fatalf("rotation to %q from %q", r.To, old[0])
			}
			usable("after the rotation")
			if got := keksOf(t, c); !slices.Equal(got, []string{r.To}) {
				t.Fatalf("KEKs after the rotation = %q, want [%s]", got, r.To)
			}
			if _, err := os.Lstat(kekPath + software.NextKEKSuffix); !os.IsNotExist(err) {
				t.Fatalf("next KEK file left after the rotation: %v", err)
			}
			st, err := ks.KEKStatus(ctx, op)
			if err != nil || st.Current != r.To || st.Pending != "" {
				t.Fatalf("KEK status after the rotation: %+v, %v", st, err)
			}
			// A plugin started afresh over the KEK file holds the new KEK.
			fresh, err := software.New(software.Config{KEKFile: kekPath})
			if err != nil {
				t.Fatal(err)
			}
			if got := keksOf(t, fresh); !slices.Equal(got, []string{r.To}) {
				t.Fatalf("KEK file holds %q, want [%s]", got, r.To)
			}
		})
	}
}

// softwarePluginOver launches the software plugin binary over the KEK file
// kekPath, restarting it without delay.
func softwarePluginOver(t *testing.T, kekPath string) *Client {
	t.Helper()
	sw, _, _ := binaries(t)
	return launch(t, sw, Config{Args: []string{"--kek-file", kekPath}, Env: newStateEnv, RestartBackoff: time.Millisecond})
}

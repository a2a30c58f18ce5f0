package core_test

// Attacks on the promise that an import wrapping key dies at its expiry,
// and on the one-time rule under races (issue 12 attacker review).

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

type importKeyCounter interface{ ImportKeys() int }

// a cancelled request context at the moment expired tokens are
// swept makes Destroy fail; the token is marked used with h=nil, so the
// provider's wrapping private key is never forgotten.
func TestWrappingKeyExpiredWrappingKeyOutlivesExpiry(t *testing.T) {
	e := newEnv(t)
	cnt := e.p.(importKeyCounter)
	id := mustID(t, "app-a/imp/x")
	for i := 0; i < 3; i++ {
		if _, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("provider wrapping keys after 3 ImportParameters: %d", cnt.ImportKeys())
	e.clock.Advance(2 * time.Minute)
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.ks.Sweep(cctx, operator, core.SweepOptions{})
	t.Logf("Sweep with a cancelled ctx: %v", err)
	// Every later path that should forget them:
	if _, err := e.ks.Sweep(ctx, operator, core.SweepOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(48 * time.Hour)
	if _, err := e.ks.Sweep(ctx, operator, core.SweepOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("provider wrapping keys 2 days later (expected 0): %d", cnt.ImportKeys())
	if n := cnt.ImportKeys(); n != 0 {
		t.Errorf("BUG: %d expired wrapping private keys still in provider memory", n)
	}
}

// ATTACK 1b: the same through Import's own error path: a token spent, the
// key check fails after spend, ctx is done -> wrapping key never forgotten.
type lateCancel struct {
	context.Context
	n *int
}

func (c lateCancel) Err() error {
	*c.n++
	if *c.n > 1 { // admit's check passes, every later one fails
		return context.Canceled
	}
	return nil
}
func (c lateCancel) Done() <-chan struct{} { return nil }

func TestWrappingKeyImportErrorPathLeaksWrappingKey(t *testing.T) {
	e := newEnv(t)
	cnt := e.p.(importKeyCounter)
	id := mustID(t, "app-a/imp/y")
	// a generated key of the same name is created after the token was issued
	r := e.importRequest(t, appA, id, provider.AES256GCM, fixedAESKey)
	if _, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.AES256GCM}); err != nil {
		t.Fatal(err)
	}
	n := 0
	_, err := e.ks.Import(lateCancel{context.Background(), &n}, appA, id, r)
	t.Logf("Import: %v (ctx.Err calls %d)", err, n)
	if !errors.Is(err, provider.ErrPermission) {
		t.Fatalf("want EPERM, got %v", err)
	}
	e.clock.Advance(48 * time.Hour)
	if _, err := e.ks.Sweep(ctx, operator, core.SweepOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("provider wrapping keys after the failed import and 2 days (expected 0): %d", cnt.ImportKeys())
	if cnt.ImportKeys() != 0 {
		t.Errorf("BUG: wrapping private key of a spent token never forgotten")
	}
}

// ATTACK 1c: no sweep or ImportParameters between a token's expiry and
// expiry+MaxImportTTL: expired() deletes the unused token in its first
// case without returning it, so its wrapping key is never forgotten.
func TestWrappingKeyLateSweepDropsTokenWithoutForgetting(t *testing.T) {
	e := newEnv(t)
	cnt := e.p.(importKeyCounter)
	id := mustID(t, "app-a/imp/z")
	if _, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour + 24*time.Hour) // expiry + MaxImportTTL
	if _, err := e.ks.Sweep(ctx, operator, core.SweepOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("core tokens %d, provider wrapping keys %d (expected 0)", core.ImportTableLen(e.ks), cnt.ImportKeys())
	if cnt.ImportKeys() != 0 {
		t.Errorf("BUG: token deleted from the core table, its wrapping private key left in the provider")
	}
}

// many concurrent Imports of one token; and imports racing a
// revoke of the key they add versions to.
func TestWrappingKeyImportRaces(t *testing.T) {
	e := newEnv(t)
	id := mustID(t, "app-a/imp/race")
	r := e.importRequest(t, appA, id, provider.AES256GCM, fixedAESKey)
	const n = 32
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() { <-start; _, err := e.ks.Import(ctx, appA, id, r); errs <- err }()
	}
	close(start)
	ok, already := 0, 0
	for i := 0; i < n; i++ {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, provider.ErrAlready):
			already++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	t.Logf("one token, %d concurrent imports: %d ok, %d EALREADY", n, ok, already)
	if ok != 1 {
		t.Errorf("BUG: %d imports succeeded with one token", ok)
	}
	// import vs revoke
	reqs := make([]core.ImportRequest, 8)
	for i := range reqs {
		reqs[i] = e.importRequest(t, appA, id, provider.AES256GCM, fixedAESKey)
	}
	done := make(chan error, len(reqs))
	for i := range reqs {
		go func(r core.ImportRequest) { _, err := e.ks.Import(ctx, appA, id, r); done <- err }(reqs[i])
	}
	if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	for range reqs {
		if err := <-done; err != nil && !errors.Is(err, provider.ErrKeyRevoked) {
			t.Errorf("import racing revoke: %v", err)
		}
	}
	m, err := e.ks.Get(ctx, appA, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != core.StateRevoked {
		t.Errorf("BUG: key state %v after revoke", m.State)
	}
	for _, v := range m.Versions {
		if v.State != core.VersionRevoked && v.State != core.VersionDestroyed {
			t.Errorf("BUG: version %d is %v after the key was revoked", v.Version, v.State)
		}
	}
	t.Logf("after revoke: %d versions, key %v", len(m.Versions), m.State)
}

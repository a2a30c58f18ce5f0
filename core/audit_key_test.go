package core_test

import (
	"time"

	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// A sign or seal refused by a bound, before any lookup, still records the
// key ID it named (core.Event: Key is "" only for list, sweep, or an ID
// that did not parse).
func TestOversizeInputIsAuditedWithItsKey(t *testing.T) {
	e := newEnv(t)
	sid := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	did := e.create(t, appA, "app-a/d/k", provider.XChaCha20Poly1305)
	_, err := e.ks.Sign(ctx, appA, sid, make([]byte, provider.MaxSignMessage+1))
	wantCode(t, "sign over the bound", err, provider.EMSGSIZE)
	if ev := e.audit.last(t); ev.Op != core.OpSign || ev.Key != sid.String() || ev.Result != provider.EMSGSIZE {
		t.Errorf("sign event: got op %v key %q result %v, want sign %q EMSGSIZE", ev.Op, ev.Key, ev.Result, sid)
	}
	_, err = e.ks.Seal(ctx, appA, did, make([]byte, provider.MaxSealPlaintext+1), nil)
	wantCode(t, "seal over the bound", err, provider.EMSGSIZE)
	if ev := e.audit.last(t); ev.Op != core.OpSeal || ev.Key != did.String() || ev.Result != provider.EMSGSIZE {
		t.Errorf("seal event: got op %v key %q result %v, want seal %q EMSGSIZE", ev.Op, ev.Key, ev.Result, did)
	}
}

// A rewrap that auto-rotates the key commits the rotation with the
// rewrap's own event (op, caller, time, key), as a sign or seal does; a
// sink that writes its record at Commit must get a complete event.
func TestRewrapAutoRotationCommitsItsEvent(t *testing.T) {
	e := newEnv(t)
	id := e.create(t, appA, "app-a/d/k", provider.XChaCha20Poly1305)
	sealed, err := e.ks.Seal(ctx, appA, id, []byte("pt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{RotationPeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	if s, err := e.ks.Rewrap(ctx, appA, id, sealed.Data, nil); err != nil || s.Version != 2 {
		t.Fatalf("auto-rotating rewrap: v%d %v", s.Version, err)
	}
	e.audit.mu.Lock()
	got := e.audit.commits[len(e.audit.commits)-1]
	e.audit.mu.Unlock()
	if got.Op != core.OpRewrap || got.Caller != appA || !got.Time.Equal(e.clock.Now()) ||
		got.Key != id.String() || got.Version != 2 || got.Detail != "auto-rotated" {
		t.Errorf("commit of the auto-rotation: got %+v, want op rewrap, caller %v, time %v, key %s, v2, auto-rotated",
			got, appA, e.clock.Now(), id)
	}
	if ev := e.audit.last(t); ev.Op != core.OpRewrap || ev.Version != 2 || ev.Detail != "auto-rotated" {
		t.Errorf("rewrap event: got %+v, want rewrap v2 auto-rotated", ev)
	}
}

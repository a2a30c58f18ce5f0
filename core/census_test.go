package core_test

import (
	"context"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// TestCensus: keys are counted by app and state, a damaged metadata file
// as unreadable, and the census writes no audit event.
func TestCensus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, appA, "app-a/sig/k1", provider.Ed25519)
	revoked := e.create(t, appA, "app-a/sig/k2", provider.Ed25519)
	destroyed := e.create(t, appA, "app-a/enc/k3", provider.XChaCha20Poly1305)
	e.create(t, appB, "app-b/sig/k1", provider.Ed25519)
	broken := e.create(t, appB, "app-b/sig/broken", provider.Ed25519)
	for _, id := range []core.KeyID{revoked, destroyed} {
		if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.ks.Destroy(ctx, appA, destroyed); err != nil {
		t.Fatal(err)
	}
	// A fresh keystore over the same storage (no cached entry), with one
	// metadata file damaged.
	if err := e.st.WriteFile(core.MetaPath(broken), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	e2 := newEnvWith(t, e.st, e.p)
	events := len(e2.audit.all())
	c, err := e2.ks.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Apps["app-a"], c.Apps["app-b"]
	if len(c.Apps) != 2 || a.ByState[core.StateActive] != 1 || a.ByState[core.StateRevoked] != 1 ||
		a.ByState[core.StateDestroyed] != 1 || a.Unreadable != 0 ||
		b.ByState[core.StateActive] != 1 || b.Unreadable != 1 {
		t.Errorf("Census = %+v, want app-a 1 active, 1 revoked, 1 destroyed; app-b 1 active, 1 unreadable", c)
	}
	if n := len(e2.audit.all()); n != events {
		t.Errorf("Census wrote %d audit events, want none", n-events)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e2.ks.Census(cctx); err == nil {
		t.Error("Census ran with a cancelled context")
	}
}

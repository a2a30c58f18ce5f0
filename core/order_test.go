package core_test

import (
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// docs/lifecycle.md, "Order of checks": bounds and syntax come before any
// lookup, so a malformed argument is EINVAL whatever the key's state.
func TestSyntaxBeforeLookup(t *testing.T) {
	e := newEnv(t)
	missing := mustID(t, "app-a/s/missing")
	revoked := e.create(t, appA, "app-a/s/revoked", provider.Ed25519)
	if _, err := e.ks.Revoke(ctx, appA, revoked); err != nil {
		t.Fatal(err)
	}
	for _, id := range []core.KeyID{missing, revoked} {
		_, err := e.ks.RevokeVersion(ctx, appA, id, 0)
		wantCode(t, "revoke-version 0 of "+id.String(), err, provider.EINVAL)
		_, err = e.ks.SetPolicy(ctx, appA, id, core.Policy{RotationPeriod: time.Second})
		wantCode(t, "set-policy with a 1s period on "+id.String(), err, provider.EINVAL)
	}
}

// A caller whose app ID is not a valid segment may list nothing (EPERM),
// never a path built from it.
func TestListRefusesInvalidCallerApp(t *testing.T) {
	e := newEnv(t)
	e.create(t, appA, "app-a/s/k", provider.Ed25519)
	for _, app := range []string{"", "app-a/s", "../app-a", "App-A"} {
		_, err := e.ks.List(ctx, core.Caller{App: app}, core.ListOptions{})
		wantCode(t, "list as "+app, err, provider.EPERM)
	}
}

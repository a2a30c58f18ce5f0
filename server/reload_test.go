package server

import (
	"sync"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// TestReloadSwapsIdentityAndAnchors: after Reload, new requests resolve
// the caller with the new map (the same uid is now another app) and see
// the new anchors; a refused Reload (zero Identity) leaves the previous
// configuration in place (issue 9, item 12: SIGHUP reloads the config).
func TestReloadSwapsIdentityAndAnchors(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	if _, err := e.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"}); err != nil {
		t.Fatal(err)
	}
	bob, err := NewIdentity(map[uint32]string{myUID(): "bob"}, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(bob, testAnchors(t)); err != nil {
		t.Fatal(err)
	}
	cr, err := e.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	if err != nil {
		t.Fatalf("Create after the reload: %v", err)
	}
	if got := cr.GetKey().GetId(); got != "bob/sig/k" {
		t.Errorf("after the reload the caller's key is %q, want bob/sig/k", got)
	}
	_, err = e.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: "alice/sig/k"})
	wantCode(t, "Get of the old app's key after the reload", err, provider.EPERM)
	l, err := e.anchors.ListAnchors(ctx, &keystorev1.ListAnchorsRequest{})
	if err != nil || len(l.GetAnchors()) != 1 || l.GetAnchors()[0].GetName() != "release" {
		t.Errorf("anchors after the reload: %v, %v; want [release]", l.GetAnchors(), err)
	}

	// A refused reload changes nothing.
	if err := e.srv.Reload(Identity{}, nil); err == nil {
		t.Fatal("Reload accepted the zero Identity")
	}
	g, err := e.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: "sig/k"})
	if err != nil || g.GetKey().GetId() != "bob/sig/k" {
		t.Errorf("after a refused reload: %v, %v; want bob's key", g.GetKey().GetId(), err)
	}
	if e.srv.Anchors().Len() != 1 || e.srv.Identity().Resolve(PeerInfo{UID: myUID()}).App != "bob" {
		t.Error("a refused reload changed the configuration")
	}
}

// TestReloadUnderLoad: reloads racing with requests are free of data
// races (run with -race) and every request is served.
func TestReloadUnderLoad(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := aliceIdentity(t)
	bob, err := NewIdentity(map[uint32]string{myUID(): "bob"}, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := e.keys.List(t.Context(), &keystorev1.ListKeysRequest{})
				if err != nil {
					t.Errorf("List during reloads: %v", err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		id := alice
		if i%2 == 1 {
			id = bob
		}
		if err := e.srv.Reload(id, nil); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

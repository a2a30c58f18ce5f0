package core_test

import (
	"errors"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// A metadata write that fails after its rename (the directory fsync) may
// leave the new state on disk. The keystore must then act on what storage
// holds, not on what it had in memory: a revoke reported as failed whose
// metadata did land must not leave the key signing until a restart.
func TestFailedWriteAfterRenameFollowsStorage(t *testing.T) {
	mem := storage.NewMemory()
	base := newEnv(t)
	e := newEnvWith(t, mem, base.p)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	meta := "keystore/app-a/s/k~meta.json"
	mem.SetHook(func(s storage.Step, path string) error {
		if s == storage.StepDirFsync && path == "keystore/app-a/s" {
			return errors.New("fsync failed")
		}
		return nil
	})
	_, err := e.ks.Revoke(ctx, appA, id)
	wantCode(t, "revoke with a failing directory fsync", err, provider.EIO)
	mem.SetHook(nil)
	if _, ok := mem.Snapshot()[meta]; !ok {
		t.Fatalf("%s missing", meta)
	}
	// Storage now says revoked (Memory applies the rename before the
	// directory fsync); so must this keystore and a reopened one.
	reopened := newEnvWith(t, mem, base.p)
	m, err := reopened.ks.Get(ctx, appA, id)
	if err != nil || m.State != core.StateRevoked {
		t.Fatalf("reopened: state %v, %v; want revoked", m.State, err)
	}
	_, err = e.ks.Sign(ctx, appA, id, []byte("msg"))
	wantCode(t, "sign after the revoke landed on storage", err, provider.EKEYREVOKED)
	m, err = e.ks.Get(ctx, appA, id)
	if err != nil || m.State != core.StateRevoked {
		t.Fatalf("same keystore: state %v, %v; want revoked", m.State, err)
	}
}

// A write that fails before its rename changes nothing: the key keeps
// working from memory, without a reload.
func TestFailedWriteBeforeRenameChangesNothing(t *testing.T) {
	mem := storage.NewMemory()
	base := newEnv(t)
	e := newEnvWith(t, mem, base.p)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	mem.SetHook(func(s storage.Step, path string) error {
		if s == storage.StepWrite {
			return errors.New("no space left on device")
		}
		return nil
	})
	_, err := e.ks.Revoke(ctx, appA, id)
	wantCode(t, "revoke with a failing write", err, provider.EIO)
	mem.SetHook(nil)
	if _, err := e.ks.Sign(ctx, appA, id, []byte("msg")); err != nil {
		t.Fatalf("sign after a revoke that did not land: %v", err)
	}
	m, err := e.ks.Get(ctx, appA, id)
	if err != nil || m.State != core.StateActive {
		t.Fatalf("state %v, %v; want active", m.State, err)
	}
}

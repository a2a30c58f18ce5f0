package core_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// TestHandlesInline: a create or a rotate writes one file, the key's file
// <name>~meta.json, which holds the new version's handle; a key written by
// an older version (its directory, handle files) keeps working, in place,
// and its next version is inline; a destroy drops the inline handles and
// removes the files.
func TestHandlesInline(t *testing.T) {
	mem := storage.NewMemory()
	e := newEnvWith(t, mem, newEnv(t).p)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	files := func() []string {
		var out []string
		for p := range mem.Snapshot() {
			if strings.HasPrefix(p, "keystore/app-a/s/k") {
				out = append(out, strings.TrimPrefix(p, "keystore/app-a/s/"))
			}
		}
		slices.Sort(out)
		return out
	}
	if got := files(); len(got) != 1 || got[0] != "k~meta.json" {
		t.Fatalf("files of a new key: %v, want k~meta.json only", got)
	}
	if b := e.readFile(t, metaFile(id)); !bytes.Contains(b, []byte(`"handle":"`)) {
		t.Fatalf("meta.json holds no handle: %s", b)
	}

	// As an older version wrote it; then rotated by this one.
	if err := core.LegacyHandles(mem, id); err != nil {
		t.Fatal(err)
	}
	e = newEnvWith(t, mem, e.p)
	sig1, err := e.ks.Sign(ctx, appA, id, []byte("m"))
	if err != nil {
		t.Fatalf("sign with a handle file: %v", err)
	}
	if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.ReadFile(handleFile(id, 2)); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("rotate wrote v2.handle: %v", err)
	}
	if got := files(); !slices.Equal(got, []string{"k/meta.json", "k/v1.handle"}) {
		t.Fatalf("files of a rotated legacy key: %v, want its directory's meta.json and v1.handle (changed in place)", got)
	}
	e = newEnvWith(t, mem, e.p)
	if err := e.ks.Verify(ctx, appA, id, 1, []byte("m"), sig1.Signature); err != nil {
		t.Fatalf("verify with v1 (handle file): %v", err)
	}
	if s, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil || s.Version != 2 {
		t.Fatalf("sign with v2 (inline): %+v, %v", s, err)
	}
	if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Destroy(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if got := files(); len(got) != 1 || got[0] != "k/meta.json" {
		t.Fatalf("files of a destroyed key: %v, want k/meta.json only", got)
	}
	if b := e.readFile(t, core.LegacyMetaPath(id)); bytes.Contains(b, []byte(`"handle"`)) {
		t.Fatalf("meta.json of a destroyed key holds a handle: %s", b)
	}
}

// TestChangeVisibleOnlyAfterCommit: a lifecycle change's metadata is
// prepared (temporary file written and fsynced) while the audit sink
// commits, but renamed into place only after the commit returned; a
// refused commit leaves nothing visible.
func TestChangeVisibleOnlyAfterCommit(t *testing.T) {
	mem := storage.NewMemory()
	var mu sync.Mutex
	var trace []string
	mem.SetHook(func(s storage.Step, p string) error {
		if strings.HasSuffix(p, "~meta.json") {
			mu.Lock()
			trace = append(trace, s.String())
			mu.Unlock()
		}
		return nil
	})
	e := newEnvWith(t, mem, newEnv(t).p)
	e.audit.onCommit = func(core.Event) {
		mu.Lock()
		trace = append(trace, "commit")
		mu.Unlock()
	}
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	for _, op := range []func() error{
		func() error { _, err := e.ks.Rotate(ctx, appA, id); return err },
		func() error { _, err := e.ks.Revoke(ctx, appA, id); return err },
		func() error { _, err := e.ks.Destroy(ctx, appA, id); return err },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	got := append([]string(nil), trace...)
	mu.Unlock()
	// Every rename follows a commit that no earlier rename used.
	renames, commits := 0, 0
	for _, s := range got {
		switch s {
		case "commit":
			commits++
		case "rename":
			renames++
			if renames > commits {
				t.Fatalf("rename %d before commit %d: %v", renames, renames, got)
			}
		}
	}
	if commits != 4 || renames != 4 {
		t.Fatalf("%d commits, %d renames (%v), want 4 each", commits, renames, got)
	}

	// A refused commit: nothing visible.
	e.audit.mu.Lock()
	e.audit.refuseAll = true
	e.audit.mu.Unlock()
	_, err := e.ks.Create(ctx, appA, mustID(t, "app-a/s/refused"), core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create with the commit refused", err, provider.EIO)
	if _, err := mem.ReadFile("keystore/app-a/s/refused~meta.json"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("key file of a refused create: %v", err)
	}
}

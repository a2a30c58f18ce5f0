package core_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// A key is one file in its purpose directory (<name>~meta.json); keys made
// before (legacy keys: a <name>/ directory with meta.json) are listed,
// counted and changed where they are, side by side with key files.
func TestLegacyAndKeyFilesSideBySide(t *testing.T) {
	mem := storage.NewMemory()
	base := newEnv(t)
	e := newEnvWith(t, mem, base.p, withQuotas(core.Quotas{Default: core.Quota{Keys: 4}}))
	a := e.create(t, appA, "app-a/s/a", provider.Ed25519)
	b := e.create(t, appA, "app-a/s/b", provider.Ed25519)
	c := e.create(t, appA, "app-a/s/c", provider.Ed25519)
	if err := core.LegacyLayout(mem, b); err != nil {
		t.Fatal(err)
	}
	if err := core.LegacyHandles(mem, c); err != nil {
		t.Fatal(err)
	}
	// Entries that are no key: ignored.
	for _, junk := range []string{"keystore/app-a/s/notes.txt", "keystore/app-a/s/Bad~meta.json", "keystore/app-a/s/~meta.json",
		"keystore/app-a/s/x~meta.json.bak"} {
		if err := mem.WriteFile(junk, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	e = newEnvWith(t, mem, base.p, withQuotas(core.Quotas{Default: core.Quota{Keys: 4}}))
	page, err := e.ks.List(ctx, appA, core.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []core.KeyID
	for _, m := range page.Keys {
		got = append(got, m.ID)
	}
	if !slices.Equal(got, []core.KeyID{a, b, c}) || len(page.Unreadable) != 0 {
		t.Fatalf("listing %+v, want a, b (legacy), c (legacy, handle files)", page)
	}
	cen, err := e.ks.Census(ctx)
	if err != nil || cen.Apps["app-a"].ByState[core.StateActive] != 3 || cen.Apps["app-a"].Unreadable != 0 {
		t.Fatalf("census %+v, %v; want 3 active", cen, err)
	}
	// The quota counts both forms: one more key fits, then EDQUOT.
	e.create(t, appA, "app-a/s/d", provider.Ed25519)
	_, err = e.ks.Create(ctx, appA, mustID(t, "app-a/s/e"), core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create past the quota", err, provider.EDQUOT)

	// A legacy key's changes rewrite its meta.json in place.
	for _, id := range []core.KeyID{b, c} {
		if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
		if _, err := mem.ReadFile(core.MetaPath(id)); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("a change of legacy key %s wrote its key file: %v", id, err)
		}
	}
	// Create-if-absent sees legacy keys.
	for _, id := range []core.KeyID{a, b, c} {
		_, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519})
		wantCode(t, "re-create of "+id.String(), err, provider.EALREADY)
	}
	e = newEnvWith(t, mem, base.p)
	for _, id := range []core.KeyID{b, c} {
		m, err := e.ks.Get(ctx, appA, id)
		if err != nil || m.State != core.StateRevoked || m.Current != 2 {
			t.Fatalf("legacy key %s after a restart: %+v, %v; want revoked at v2", id, m, err)
		}
		_, err = e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519})
		wantCode(t, "re-create of legacy key "+id.String()+" after a restart", err, provider.EALREADY)
	}
}

// A key present both as a key file and as a legacy meta.json (planted, or
// a bug) is refused, naming both files; a create of it too.
func TestKeyStoredTwiceIsRefused(t *testing.T) {
	mem := storage.NewMemory()
	e := newEnvWith(t, mem, newEnv(t).p)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	e.create(t, appA, "app-a/s/other", provider.Ed25519)
	keyFile := mem.Snapshot()[core.MetaPath(id)]
	if err := core.LegacyLayout(mem, id); err != nil {
		t.Fatal(err)
	}
	if err := mem.WriteFile(core.MetaPath(id), keyFile); err != nil {
		t.Fatal(err)
	}
	e = newEnvWith(t, mem, e.p)
	_, err := e.ks.Get(ctx, appA, id)
	wantCode(t, "get of a key stored twice", err, provider.EIO)
	for _, p := range []string{core.MetaPath(id), core.LegacyMetaPath(id)} {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not name %s", err, p)
		}
	}
	_, err = e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create of a key stored twice", err, provider.EIO)
	page, err := e.ks.List(ctx, appA, core.ListOptions{})
	if err != nil || len(page.Keys) != 1 || len(page.Unreadable) != 1 || page.Unreadable[0].ID != id {
		t.Fatalf("listing %+v, %v; want other, and k once as unreadable", page, err)
	}
}

// A legacy key directory without meta.json (an old create that crashed
// before its metadata was written) holds no key: it is not listed or
// counted, and a create of its ID writes the key file beside it.
func TestCrashedLegacyCreateIsNoKey(t *testing.T) {
	dir := t.TempDir()
	e := openDirEnv(t, dir, nil)
	e.create(t, appA, "app-a/s/other", provider.Ed25519)
	closeDirEnv(t, e)
	if err := os.Mkdir(filepath.Join(dir, "keystore", "app-a", "s", "k"), 0o700); err != nil {
		t.Fatal(err)
	}
	e = openDirEnv(t, dir, nil)
	defer closeDirEnv(t, e)
	id := mustID(t, "app-a/s/k")
	if m, err := e.ks.Get(ctx, appA, id); codeOf(err) != provider.ENOENT {
		t.Fatalf("get of an empty legacy directory: %+v, %v; want ENOENT", m, err)
	}
	page, err := e.ks.List(ctx, appA, core.ListOptions{})
	if err != nil || len(page.Keys) != 1 || len(page.Unreadable) != 0 {
		t.Fatalf("listing %+v, %v; want other only", page, err)
	}
	e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(core.MetaPath(id)))); err != nil {
		t.Fatalf("key file of the create: %v", err)
	}
	if _, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil {
		t.Fatal(err)
	}
	page, err = e.ks.List(ctx, appA, core.ListOptions{})
	if err != nil || len(page.Keys) != 2 || len(page.Unreadable) != 0 {
		t.Fatalf("listing %+v, %v; want k and other", page, err)
	}
}

package core_test

import (
	"fmt"
	"io/fs"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// readDirCounter counts the directory reads of a storage.
type readDirCounter struct {
	core.Storage
	n atomic.Int64
}

func (r *readDirCounter) ReadDir(name string) ([]fs.DirEntry, error) {
	r.n.Add(1)
	return r.Storage.ReadDir(name)
}

func listAll(t *testing.T, e *env, c core.Caller, o core.ListOptions) []string {
	t.Helper()
	var got []string
	for pages := 0; ; pages++ {
		p, err := e.ks.List(ctx, c, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range p.Keys {
			got = append(got, m.ID.String())
		}
		if p.NextPageToken == "" {
			return got
		}
		o.PageToken = p.NextPageToken
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
	}
}

// List and Census are served from the key index: built once from storage
// (keys made by an earlier keystore over the same storage), kept current
// by creates (more than one merge of pending IDs, a new app, names that
// sort between the indexed ones), and no page reads a directory.
func TestListIndexFollowsStorageAndCreates(t *testing.T) {
	st := &readDirCounter{Storage: storage.NewMemory()}
	p := newEnv(t).p
	first := newEnvWith(t, st, p)
	var want []string
	for i := 0; i < 20; i += 2 {
		id := fmt.Sprintf("app-b/p/k%03d", i)
		first.create(t, operator, id, provider.Ed25519)
		want = append(want, id)
	}
	e := newEnvWith(t, st, p) // a restart: the index comes from storage
	if got := listAll(t, e, operator, core.ListOptions{PageSize: 3}); !slices.Equal(got, want) {
		t.Fatalf("list after restart = %v, want %v", got, want)
	}
	for i := 1; i < 20; i += 2 {
		id := fmt.Sprintf("app-b/p/k%03d", i)
		e.create(t, operator, id, provider.Ed25519)
		want = append(want, id)
	}
	for i := 0; i < 300; i++ { // > maxPending: merged on add, then on read
		id := fmt.Sprintf("app-a/q/k%03d", i)
		e.create(t, operator, id, provider.Ed25519)
		want = append(want, id)
	}
	e.create(t, operator, "app-a/p/z", provider.Ed25519)
	want = append(want, "app-a/p/z")
	slices.Sort(want) // segments here hold no '-' or '.' in a place where it matters
	before := st.n.Load()
	if got := listAll(t, e, operator, core.ListOptions{PageSize: 7}); !slices.Equal(got, want) {
		t.Fatalf("list after creates = %d keys %v..., want %d", len(got), got[:min(5, len(got))], len(want))
	}
	if got := listAll(t, e, appA, core.ListOptions{PageSize: 50}); len(got) != 301 || got[0] != "app-a/p/z" {
		t.Fatalf("app-a's list = %d keys starting %v, want 301 from app-a/p/z", len(got), got[:1])
	}
	c, err := e.ks.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := c.Apps["app-a"].ByState[core.StateActive], c.Apps["app-b"].ByState[core.StateActive]; a != 301 || b != 20 {
		t.Fatalf("census: app-a %d, app-b %d active keys, want 301 and 20", a, b)
	}
	if n := st.n.Load() - before; n != 0 {
		t.Fatalf("List pages and Census read %d directories, want 0 (served from the index)", n)
	}
}

// readCounter counts the file reads of a storage.
type readCounter struct {
	core.Storage
	n atomic.Int64
}

func (r *readCounter) ReadFile(name string) ([]byte, error) {
	r.n.Add(1)
	return r.Storage.ReadFile(name)
}

// An attacker's flood of requests on keys that do not exist (many times
// the cache's size) evicts none of the keys in use: they are signed with
// afterwards without one read of storage.
func TestCacheFloodOfAbsentKeysEvictsNothing(t *testing.T) {
	st := &readCounter{Storage: storage.NewMemory()}
	e := newEnvWith(t, st, newEnv(t).p, func(o *core.Config) { o.CacheSize = 64 })
	var ids []core.KeyID
	for i := range 16 {
		ids = append(ids, e.create(t, appA, fmt.Sprintf("app-a/p/k%02d", i), provider.Ed25519))
	}
	for _, id := range ids {
		if _, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5000 {
		_, err := e.ks.Sign(ctx, appA, mustID(t, fmt.Sprintf("app-a/p/guess%05d", i)), []byte("m"))
		wantCode(t, "sign of a key that does not exist", err, provider.ENOENT)
		if i%500 == 0 {
			for _, id := range ids { // the keys stay in use
				if _, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	before := st.n.Load()
	for _, id := range ids {
		if _, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.n.Load() - before; n != 0 {
		t.Fatalf("signing the %d keys in use after the flood read storage %d times: the flood evicted them", len(ids), n)
	}
}

// The same flood with the cache nearly full of keys in use, made of
// every kind of lookup an attacker can send on names that do not exist
// (Sign, Revoke, Rotate, Destroy), some of them concurrent: no key in
// use is evicted, because room is made only for keys that exist.
func TestCacheFloodOfAbsentKeysOnFullCache(t *testing.T) {
	st := &readCounter{Storage: storage.NewMemory()}
	e := newEnvWith(t, st, newEnv(t).p, func(o *core.Config) { o.CacheSize = 256 })
	var ids []core.KeyID
	for i := range 48 { // a fifth of the cache's size: no shard is full of them
		ids = append(ids, e.create(t, appA, fmt.Sprintf("app-a/p/k%02d", i), provider.Ed25519))
	}
	signAll := func() {
		t.Helper()
		for _, id := range ids {
			if _, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil {
				t.Fatal(err)
			}
		}
	}
	signAll()
	const workers, each = 4, 1500
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				id, err := provider.ParseKeyID(fmt.Sprintf("app-a/p/guess%d-%05d", w, i))
				if err != nil {
					errs <- err
					return
				}
				switch i % 4 {
				case 0:
					_, err = e.ks.Sign(ctx, appA, id, []byte("m"))
				case 1:
					_, err = e.ks.Revoke(ctx, appA, id)
				case 2:
					_, err = e.ks.Rotate(ctx, appA, id)
				default:
					_, err = e.ks.Destroy(ctx, appA, id)
				}
				if codeOf(err) != provider.ENOENT {
					errs <- fmt.Errorf("%s on %s: %v, want ENOENT", []string{"sign", "revoke", "rotate", "destroy"}[i%4], id, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < workers; {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
			i++
		default:
			signAll() // the keys stay in use during the flood
		}
	}
	before := st.n.Load()
	signAll()
	if n := st.n.Load() - before; n != 0 {
		t.Fatalf("signing the %d keys in use after the flood read storage %d times: the flood evicted them", len(ids), n)
	}
}

// A key whose create is under way when the index is first built (its
// file renamed into place after the walk passed) is in the index: a
// listing after the create names it. (A KEK rotation lists the keys to
// rewrap this way; a key left out kept its handle under the retired KEK.)
func TestIndexBuiltDuringACreate(t *testing.T) {
	mem := storage.NewMemory()
	e := newEnvWith(t, mem, newEnv(t).p)
	e.create(t, appA, "app-a/s/before", provider.Ed25519)
	e = newEnvWith(t, mem, e.p) // index not built yet
	id := mustID(t, "app-a/s/during")
	reached, release := make(chan struct{}), make(chan struct{})
	mem.SetHook(func(s storage.Step, path string) error {
		if s == storage.StepRename && path == core.MetaPath(id) {
			close(reached)
			<-release
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519})
		done <- err
	}()
	<-reached
	// The first listing walks the tree: the new key's file is not there.
	page, err := e.ks.List(ctx, appA, core.ListOptions{})
	if err != nil || len(page.Keys) != 1 {
		t.Fatalf("listing during the create: %+v, %v; want before only", page, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mem.SetHook(nil)
	page, err = e.ks.List(ctx, appA, core.ListOptions{})
	if err != nil || len(page.Keys) != 2 || page.Keys[1].ID != id {
		t.Fatalf("listing after the create: %+v, %v; want before and during", page, err)
	}
}

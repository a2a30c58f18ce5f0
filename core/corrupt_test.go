package core_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// A torn, truncated or edited file is reported as EIO naming the key,
// never used, and never stops other keys from working: every single-byte
// flip and every truncation of a key's file (<name>~meta.json, which holds
// the handles of the versions made now), of a legacy key's meta.json and
// of its v1.handle (a version's handle file, as older versions wrote it),
// for a key of each algorithm.
func TestCorruptedFilesAreDetected(t *testing.T) {
	for _, a := range alg.Default().Names() {
		for _, file := range []string{"key file", "meta.json", "v1.handle"} {
			t.Run(string(a)+"/"+file, func(t *testing.T) {
				mem := storage.NewMemory()
				e := newEnvWith(t, mem, newEnv(t).p)
				victim := e.create(t, appA, "app-a/s/victim", a)
				good := e.create(t, appA, "app-a/s/good", a)
				path := core.MetaPath(victim)
				if file != "key file" {
					// A legacy key: its directory's meta.json (with
					// inline handles) or its v1.handle.
					legacy := core.LegacyLayout
					if file == "v1.handle" {
						legacy = core.LegacyHandles
					}
					for _, id := range []core.KeyID{victim, good} {
						if err := legacy(mem, id); err != nil {
							t.Fatal(err)
						}
					}
					path = "keystore/app-a/s/victim/" + file
				}
				orig := mem.Snapshot()[path]
				if len(orig) == 0 {
					t.Fatalf("no %s", path)
				}
				// An HPKE key decrypts a message sealed to it beforehand.
				msgs := map[core.KeyID]core.HPKEMessage{}
				spec, _ := alg.Default().Lookup(a)
				if spec.Use == provider.UseAsymmetricDecrypt {
					for _, id := range []core.KeyID{victim, good} {
						m, err := e.ks.Get(ctx, appA, id)
						if err != nil {
							t.Fatal(err)
						}
						enc, ct := sealTo(t, spec.KEMID, spec.KDFID, spec.AEADID, m.Versions[0].PublicKey, nil, nil, []byte("m"))
						msgs[id] = core.HPKEMessage{Enc: enc, Ciphertext: ct}
					}
				}
				use := func(e *env, id core.KeyID) error {
					switch spec.Use {
					case provider.UseSign:
						_, err := e.ks.Sign(ctx, appA, id, []byte("m"))
						return err
					case provider.UseMAC:
						_, err := e.ks.MAC(ctx, appA, id, []byte("m"))
						return err
					case provider.UseAsymmetricDecrypt:
						_, err := e.ks.Decrypt(ctx, appA, id, 1, msgs[id])
						return err
					}
					_, err := e.ks.Seal(ctx, appA, id, []byte("m"), nil)
					return err
				}
				damage := []func(i int) []byte{
					func(i int) []byte { b := append([]byte(nil), orig...); b[i] ^= 0x01; return b },
					func(i int) []byte { return append([]byte(nil), orig[:i]...) },
				}
				for i := range orig {
					for d, f := range damage {
						bad := f(i)
						if err := mem.Corrupt(path, func([]byte) []byte { return bad }); err != nil {
							t.Fatal(err)
						}
						// A fresh keystore reads the files again.
						e2 := newEnvWith(t, mem, e.p)
						err := use(e2, victim)
						if codeOf(err) != provider.EIO || !strings.Contains(err.Error(), "app-a/s/victim") {
							t.Fatalf("damage %d at offset %d of %s: %v, want EIO naming the key", d, i, file, err)
						}
						if i%64 != 0 {
							continue
						}
						if err := use(e2, good); err != nil {
							t.Fatalf("other key broken by damage at %d: %v", i, err)
						}
						p, err := e2.ks.List(ctx, appA, core.ListOptions{})
						wantKeys, wantBad := 1, 1
						if file == "v1.handle" {
							wantKeys, wantBad = 2, 0 // a handle is read on use, not on listing
						}
						if err != nil || len(p.Keys) != wantKeys || len(p.Unreadable) != wantBad {
							t.Fatalf("list with a corrupted key: %d keys, %d unreadable, %v", len(p.Keys), len(p.Unreadable), err)
						}
					}
				}
			})
		}
	}
}

// Files copied to another key's place are refused: meta.json (with its
// inline handles) and handle files are bound to their path, and the
// provider binds handles to the KeyRef.
func TestFilesMovedBetweenKeysAreRefused(t *testing.T) {
	mem := storage.NewMemory()
	e := newEnvWith(t, mem, newEnv(t).p)
	a := e.create(t, appA, "app-a/s/a", provider.Ed25519)
	b := e.create(t, appB, "app-b/s/b", provider.Ed25519)
	if _, err := e.ks.Rotate(ctx, appA, a); err != nil {
		t.Fatal(err)
	}
	inline := mem.Snapshot()
	// The handle files of keys written by an older version.
	for _, id := range []core.KeyID{a, b} {
		if err := core.LegacyHandles(mem, id); err != nil {
			t.Fatal(err)
		}
	}
	snap := mem.Snapshot()
	snap["inline/keystore/app-a/s/a~meta.json"] = inline["keystore/app-a/s/a~meta.json"]
	moves := []struct{ from, to string }{
		{"keystore/app-a/s/a/v1.handle", "keystore/app-b/s/b/v1.handle"},
		{"keystore/app-a/s/a/v1.handle", "keystore/app-a/s/a/v2.handle"},
		{"keystore/app-a/s/a/meta.json", "keystore/app-b/s/b/meta.json"},
		{"inline/keystore/app-a/s/a~meta.json", "keystore/app-b/s/b/meta.json"},
	}
	moveFiles(t, mem, e, snap, moves, a, b)
}

// Key files (<name>~meta.json) copied to another key's place are refused
// too: to another app's key file, to a key file in the same purpose
// directory, and a legacy meta.json copied to a key file's place.
func TestKeyFilesMovedBetweenKeysAreRefused(t *testing.T) {
	mem := storage.NewMemory()
	e := newEnvWith(t, mem, newEnv(t).p)
	a := e.create(t, appA, "app-a/s/a", provider.Ed25519)
	b := e.create(t, appB, "app-b/s/b", provider.Ed25519)
	c := e.create(t, appA, "app-a/s/c", provider.Ed25519)
	snap := mem.Snapshot()
	if err := core.LegacyHandles(mem, c); err != nil {
		t.Fatal(err)
	}
	snap["legacy/keystore/app-a/s/c/meta.json"] = mem.Snapshot()["keystore/app-a/s/c/meta.json"]
	mem2 := storage.NewMemory()
	for p, d := range snap {
		if !strings.HasPrefix(p, "legacy/") {
			if err := mem2.WriteFile(p, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	moves := []struct{ from, to string }{
		{"keystore/app-a/s/a~meta.json", "keystore/app-b/s/b~meta.json"},
		{"keystore/app-a/s/c~meta.json", "keystore/app-a/s/a~meta.json"},
		{"legacy/keystore/app-a/s/c/meta.json", "keystore/app-a/s/a~meta.json"},
	}
	moveFiles(t, mem2, e, snap, moves, a, b)
}

// moveFiles copies each move's file (from snap) over its target in mem,
// which must then be refused on use by a fresh keystore; target a or b by
// the target's app.
func moveFiles(t *testing.T, mem *storage.Memory, e *env, snap map[string][]byte, moves []struct{ from, to string }, a, b core.KeyID) {
	t.Helper()
	for _, m := range moves {
		t.Run(m.from+"->"+m.to, func(t *testing.T) {
			orig := snap[m.to]
			if err := mem.WriteFile(m.to, snap[m.from]); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := mem.WriteFile(m.to, orig); err != nil {
					t.Fatal(err)
				}
			}()
			e2 := newEnvWith(t, mem, e.p)
			target := b
			c := appB
			if strings.HasPrefix(m.to, "keystore/app-a") {
				target, c = a, appA
			}
			_, err := e2.ks.Sign(ctx, c, target, []byte("m"))
			wantCode(t, "sign with a moved file", err, provider.EIO)
		})
	}
}

// 64 goroutines sign, seal, unseal, rotate and revoke-version one key:
// versions never go back and every acknowledged blob unseals.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	sid := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	did := e.create(t, appA, "app-a/d/k", provider.XChaCha20Poly1305)
	var wg sync.WaitGroup
	type sealedBlob struct {
		b []byte
		v core.Version
	}
	results := make(chan sealedBlob, 64*20)
	errs := make(chan error, 64*20)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var lastSig, lastSeal core.Version
			for i := 0; i < 20; i++ {
				switch (g + i) % 4 {
				case 0:
					s, err := e.ks.Sign(ctx, appA, sid, []byte("m"))
					if err != nil {
						errs <- err
						continue
					}
					if s.Version < lastSig {
						errs <- provider.Errorf(provider.EIO, "sign version went back")
					}
					lastSig = s.Version
				case 1:
					s, err := e.ks.Seal(ctx, appA, did, []byte{byte(g), byte(i)}, []byte("aad"))
					if err != nil {
						errs <- err
						continue
					}
					if s.Version < lastSeal {
						errs <- provider.Errorf(provider.EIO, "seal version went back")
					}
					lastSeal = s.Version
					results <- sealedBlob{s.Data, s.Version}
				case 2:
					if g%16 == 0 {
						if _, err := e.ks.Rotate(ctx, appA, did); err != nil {
							errs <- err
						}
						if _, err := e.ks.Rotate(ctx, appA, sid); err != nil {
							errs <- err
						}
					}
				case 3:
					if _, err := e.ks.Get(ctx, appA, sid); err != nil {
						errs <- err
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for r := range results {
		u, err := e.ks.Unseal(ctx, appA, did, r.b, []byte("aad"))
		if err != nil || u.Version != r.v || len(u.Plaintext) != 2 {
			t.Fatalf("acknowledged blob does not unseal: %v", err)
		}
	}
}

// A keystore whose key cache is smaller than its key set still serves
// every key correctly, concurrently.
func TestSmallKeyCache(t *testing.T) {
	e := newEnv(t, func(o *core.Config) { o.CacheSize = 4 })
	var ids []core.KeyID
	for i := 0; i < 20; i++ {
		ids = append(ids, e.create(t, appA, "app-a/s/k"+string(rune('a'+i)), provider.Ed25519))
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := range ids {
				id := ids[(i+g)%len(ids)]
				s, err := e.ks.Sign(ctx, appA, id, []byte("m"))
				if err != nil {
					t.Error(err)
					return
				}
				if err := e.ks.Verify(ctx, appA, id, s.Version, []byte("m"), s.Signature); err != nil {
					t.Error(err)
					return
				}
				if g == 0 && i%5 == 0 {
					if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	for _, id := range ids {
		if _, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519}); codeOf(err) != provider.EALREADY {
			t.Fatalf("re-create of %s after eviction: %v", id, err)
		}
	}
}

// Symlinks and hard links planted inside the state directory are refused:
// one app's folder linked to another's, a key's files hard-linked into
// another key.
func TestPlantedLinksAreRefused(t *testing.T) {
	setup := func(t *testing.T) (string, *env) {
		dir := t.TempDir()
		e := openDirEnv(t, dir, nil)
		a := e.create(t, appA, "app-a/s/k", provider.Ed25519)
		b := e.create(t, appB, "app-b/s/k", provider.Ed25519)
		closeDirEnv(t, e)
		legacyDir(t, dir, a, b) // handle files, to plant links at
		return dir, e
	}
	t.Run("app folder symlinked to another app", func(t *testing.T) {
		dir, _ := setup(t)
		a := filepath.Join(dir, "keystore", "app-a")
		if err := os.RemoveAll(a); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(dir, "keystore", "app-b"), a); err != nil {
			t.Fatal(err)
		}
		e := openDirEnv(t, dir, nil)
		defer closeDirEnv(t, e)
		_, err := e.ks.Sign(ctx, appA, mustID(t, "app-a/s/k"), []byte("m"))
		wantCode(t, "sign through a symlinked app folder", err, provider.EIO)
		if _, err := e.ks.Sign(ctx, appB, mustID(t, "app-b/s/k"), []byte("m")); err != nil {
			t.Fatalf("the real app's key: %v", err)
		}
		// Creating through the link is refused too, and writes nothing.
		_, err = e.ks.Create(ctx, appA, mustID(t, "app-a/s/new"), core.CreateOptions{Algorithm: provider.Ed25519})
		wantCode(t, "create through a symlinked app folder", err, provider.EIO)
		for _, f := range []string{"new", "new~meta.json"} {
			if _, err := os.Stat(filepath.Join(dir, "keystore", "app-b", "s", f)); !os.IsNotExist(err) {
				t.Fatalf("create wrote %s through the link: %v", f, err)
			}
		}
	})
	t.Run("key files hard-linked from another key", func(t *testing.T) {
		dir, _ := setup(t)
		for _, f := range []string{"meta.json", "v1.handle"} {
			dst := filepath.Join(dir, "keystore", "app-a", "s", "k", f)
			if err := os.Remove(dst); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(filepath.Join(dir, "keystore", "app-b", "s", "k", f), dst); err != nil {
				t.Fatal(err)
			}
		}
		e := openDirEnv(t, dir, nil)
		defer closeDirEnv(t, e)
		_, err := e.ks.Sign(ctx, appA, mustID(t, "app-a/s/k"), []byte("m"))
		wantCode(t, "sign with hard-linked files", err, provider.EIO)
		_, err = e.ks.Sign(ctx, appB, mustID(t, "app-b/s/k"), []byte("m"))
		wantCode(t, "the source of the hard link is refused too (two links)", err, provider.EIO)
	})
	t.Run("key file hard-linked from another key's", func(t *testing.T) {
		dir := t.TempDir()
		e := openDirEnv(t, dir, nil)
		a := e.create(t, appA, "app-a/s/k", provider.Ed25519)
		b := e.create(t, appA, "app-a/s/other", provider.Ed25519)
		closeDirEnv(t, e)
		dst := filepath.Join(dir, filepath.FromSlash(core.MetaPath(a)))
		if err := os.Remove(dst); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(dir, filepath.FromSlash(core.MetaPath(b))), dst); err != nil {
			t.Fatal(err)
		}
		e = openDirEnv(t, dir, nil)
		defer closeDirEnv(t, e)
		_, err := e.ks.Sign(ctx, appA, a, []byte("m"))
		wantCode(t, "sign with a hard-linked key file", err, provider.EIO)
		_, err = e.ks.Sign(ctx, appA, b, []byte("m"))
		wantCode(t, "the source of the hard link is refused too (two links)", err, provider.EIO)
	})
}

// 64 goroutines sign, seal, unseal, rotate and revoke one key: versions
// never go back, and once Revoke has returned every operation that starts
// fails with EKEYREVOKED; before that an operation either succeeds or
// already sees the revocation.
func TestConcurrentRevoke(t *testing.T) {
	// Up to 64×30/5 rotations per key: above the default versions quota.
	e := newEnv(t, withQuotas(core.Quotas{Default: core.Quota{VersionsPerKey: 1000}}))
	sid := e.create(t, appA, "app-a/s/r", provider.Ed25519)
	did := e.create(t, appA, "app-a/d/r", provider.XChaCha20Poly1305)
	var revoked atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			last := map[core.KeyID]core.Version{}
			for i := 0; i < 30; i++ {
				after := revoked.Load()
				var err error
				var v core.Version
				var id core.KeyID
				switch (g + i) % 5 {
				case 0:
					var s core.Signature
					id = sid
					s, err = e.ks.Sign(ctx, appA, sid, []byte("m"))
					v = s.Version
				case 1:
					var s core.Sealed
					id = did
					s, err = e.ks.Seal(ctx, appA, did, []byte("p"), nil)
					v = s.Version
					if err == nil {
						if _, uerr := e.ks.Unseal(ctx, appA, did, s.Data, nil); uerr != nil && codeOf(uerr) != provider.EKEYREVOKED {
							errs <- uerr
							return
						}
					}
				case 2:
					_, err = e.ks.Rotate(ctx, appA, did)
				case 3:
					_, err = e.ks.Rotate(ctx, appA, sid)
				case 4:
					if g == 7 && i == 12 {
						for _, id := range []core.KeyID{sid, did} {
							if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
								errs <- err
								return
							}
						}
						revoked.Store(true)
					}
					continue
				}
				switch {
				case err == nil && after:
					errs <- fmt.Errorf("goroutine %d: operation succeeded after the revocation was acknowledged", g)
					return
				case err != nil && codeOf(err) != provider.EKEYREVOKED:
					errs <- err
					return
				}
				if v != 0 {
					if v < last[id] {
						errs <- fmt.Errorf("goroutine %d: %s version went back from %d to %d", g, id, last[id], v)
						return
					}
					last[id] = v
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !revoked.Load() {
		t.Fatal("the revocation never ran")
	}
}

// Destroy removes a handle file whose content is damaged (the material
// cannot be named to the provider anyway) and says so in the audit event,
// but refuses to destroy blind when a handle file cannot be read at all
// (an I/O error or a planted link): the material may be intact.
func TestDestroyWithDamagedOrUnreadableHandle(t *testing.T) {
	t.Run("damaged", func(t *testing.T) {
		mem := storage.NewMemory()
		e := newEnvWith(t, mem, newEnv(t).p)
		id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
		if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
		if err := core.LegacyHandles(mem, id); err != nil { // a handle file, as older versions wrote
			t.Fatal(err)
		}
		if err := mem.Corrupt("keystore/app-a/s/k/v1.handle", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }); err != nil {
			t.Fatal(err)
		}
		e2 := newEnvWith(t, mem, e.p)
		if _, err := e2.ks.Destroy(ctx, appA, id); err != nil {
			t.Fatalf("destroy with a damaged handle: %v", err)
		}
		if ev := e2.audit.last(t); ev.Detail != "corrupted handle removed: app-a/s/k@1" {
			t.Fatalf("audit detail %q", ev.Detail)
		}
		if _, ok := mem.Snapshot()["keystore/app-a/s/k/v1.handle"]; ok {
			t.Fatal("damaged handle file left behind")
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		dir := t.TempDir()
		e := openDirEnv(t, dir, nil)
		id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
		if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
		closeDirEnv(t, e)
		legacyDir(t, dir, id)
		h := filepath.Join(dir, "keystore", "app-a", "s", "k", "v1.handle")
		if err := os.Rename(h, h+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(h+".real", h); err != nil {
			t.Fatal(err)
		}
		e = openDirEnv(t, dir, nil)
		defer closeDirEnv(t, e)
		_, err := e.ks.Destroy(ctx, appA, id)
		wantCode(t, "destroy with an unreadable handle", err, provider.EIO)
		if m, _ := e.ks.Get(ctx, appA, id); m.State != core.StateRevoked {
			t.Fatalf("key is %v after a refused destroy", m.State)
		}
	})
}

// legacyDir rewrites the keys ids in the state directory dir as a version
// from before inline handles wrote them (core.LegacyHandles).
func legacyDir(t *testing.T, dir string, ids ...core.KeyID) {
	t.Helper()
	st, err := storage.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := core.LegacyHandles(st, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

package core

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/testseed"
)

// Files copied across apps, purposes, keys and versions are refused, 100%:
// both as plain copies (the file checksum binds the path) and re-framed
// with a valid checksum for their new place (the provider binds the handle
// to its KeyRef; the metadata names its key). Handle files are those of
// keys as older versions wrote them; metadata files (key files, and
// legacy keys' meta.json) hold inline handles, and one re-framed to name
// its new key too is refused by the provider.
func TestFilesCopiedAcrossKeysAreRefused(t *testing.T) {
	p, err := testseed.NewInsecure([]byte("confusion test seed"))
	if err != nil {
		t.Fatal(err)
	}
	mem := storage.NewMemory()
	open := func() *Keystore {
		ks, err := Open(context.Background(), Config{Storage: mem, Provider: p, Clock: clock.NewFake(time.Unix(1e9, 0)), Audit: DiscardAudit{}})
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	ks := open()
	op := Caller{App: "ops", Operator: true}
	var ids []KeyID
	for _, s := range []string{"app-a/p/k", "app-b/p/k", "app-a/q/k", "app-a/p/j"} {
		id, err := provider.ParseKeyID(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Create(context.Background(), op, id, CreateOptions{Algorithm: provider.Ed25519}); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Rotate(context.Background(), op, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	inline := mem.Snapshot()
	type file struct {
		path string
		id   KeyID
		v    Version // 0 for metadata
	}
	// check loads the target file as a fresh keystore would: the
	// metadata of the key, and for a handle the provider's unwrap (a sign
	// with exactly that version's handle and KeyRef).
	check := func(t *testing.T, dst file) error {
		ks := open()
		_, rec, err := ks.readKey(context.Background(), dst.id)
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("key vanished")
		}
		if dst.v == 0 {
			return nil // metadata loaded fine: that is a failure to refuse
		}
		vr := rec.versions[dst.v-1]
		h, err := ks.handle(vr)
		if err != nil {
			return err
		}
		_, err = p.Sign(context.Background(), vr.ref, h, []byte("m"))
		return err
	}
	// attack copies every file of a group over every other one of the
	// group in mem (whose files are snap), as is and re-framed. A
	// metadata file copied is a key file as written now (from inline,
	// with its handles), to a key file's place or a legacy meta.json's.
	attack := func(t *testing.T, snap map[string][]byte, groups ...[]file) int {
		cases := 0
		for _, group := range groups {
			for _, src := range group {
				for _, dst := range group {
					if src == dst {
						continue
					}
					for _, reframe := range []bool{false, true} {
						data, from := snap[src.path], src.path
						if src.v == 0 {
							from = metaPath(src.id)
							data = inline[from]
						}
						if reframe {
							if src.v > 0 {
								h, err := decodeHandle(from, data)
								if err != nil {
									t.Fatal(err)
								}
								data = encodeHandle(dst.path, h)
							} else {
								var b metaBody
								if err := decodeChecked("meta", from, data, &b); err != nil {
									t.Fatal(err)
								}
								var err error
								if data, err = encodeChecked("meta", dst.path, b); err != nil {
									t.Fatal(err)
								}
							}
						}
						if err := mem.WriteFile(dst.path, data); err != nil {
							t.Fatal(err)
						}
						err := check(t, dst)
						if err == nil {
							t.Errorf("%s copied to %s (re-framed %v) was accepted", from, dst.path, reframe)
						} else if c, _ := provider.CodeOf(err); c != provider.EIO {
							t.Errorf("%s copied to %s (re-framed %v): %v, want EIO", from, dst.path, reframe, err)
						}
						if err := mem.WriteFile(dst.path, snap[dst.path]); err != nil {
							t.Fatal(err)
						}
						cases++
					}
				}
			}
		}
		// Metadata with its inline handles re-framed for another key and
		// naming it: the metadata loads, but no version's handle works.
		metas := groups[len(groups)-1]
		for _, src := range metas {
			for _, dst := range metas {
				if src == dst {
					continue
				}
				var b metaBody
				if err := decodeChecked("meta", metaPath(src.id), inline[metaPath(src.id)], &b); err != nil {
					t.Fatal(err)
				}
				b.ID = dst.id.String()
				data, err := encodeChecked("meta", dst.path, b)
				if err != nil {
					t.Fatal(err)
				}
				if err := mem.WriteFile(dst.path, data); err != nil {
					t.Fatal(err)
				}
				for v := Version(1); v <= 2; v++ {
					if err := check(t, file{dst.path, dst.id, v}); err == nil {
						t.Errorf("%s's inline handle of v%d, re-framed for %s, was accepted", src.path, v, dst.id)
					}
				}
				if err := mem.WriteFile(dst.path, snap[dst.path]); err != nil {
					t.Fatal(err)
				}
			}
		}
		return cases
	}

	// Keys as written now: one key file each.
	var keyFiles []file
	for _, id := range ids {
		keyFiles = append(keyFiles, file{metaPath(id), id, 0})
	}
	if cases, want := attack(t, inline, keyFiles), 2*4*3; cases != want {
		t.Fatalf("key files: %d cases, want %d", cases, want)
	}

	// Legacy keys: their directory's meta.json and handle files.
	for _, id := range ids {
		if err := LegacyHandles(mem, id); err != nil {
			t.Fatal(err)
		}
	}
	snap := mem.Snapshot()
	var handles, metas []file
	for _, id := range ids {
		metas = append(metas, file{legacyMetaPath(id), id, 0})
		for v := Version(1); v <= 2; v++ {
			handles = append(handles, file{handlePath(id, v), id, v})
		}
	}
	if cases, want := attack(t, snap, handles, metas), 2*(8*7+4*3); cases != want {
		t.Fatalf("legacy keys: %d cases, want %d", cases, want)
	}
}

package core

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/testseed"
)

// fuzzStore builds a keystore over the deterministic provider with one key
// of each algorithm, and returns valid artefacts to seed corpora with.
func fuzzStore(f *testing.F) (*Keystore, *storage.Memory, map[string][]byte) {
	f.Helper()
	p, err := testseed.NewInsecure([]byte("keystored fuzz seed"))
	if err != nil {
		f.Fatal(err)
	}
	mem := storage.NewMemory()
	ks, err := Open(context.Background(), Config{Storage: mem, Provider: p, Clock: clock.NewFake(time.Unix(1e9, 0)), Audit: DiscardAudit{}})
	if err != nil {
		f.Fatal(err)
	}
	op := Caller{App: "ops", Operator: true}
	seeds := map[string][]byte{}
	for _, a := range alg.Default().Names() {
		id, err := provider.NewKeyID("fuzz", "p", string(a))
		if err != nil {
			f.Fatal(err)
		}
		if _, err := ks.Create(context.Background(), op, id, CreateOptions{Algorithm: a}); err != nil {
			f.Fatal(err)
		}
		if _, err := ks.Rotate(context.Background(), op, id); err != nil {
			f.Fatal(err)
		}
		if spec, _ := ks.reg.Lookup(a); spec.Use == provider.UseDecrypt {
			b, err := ks.Seal(context.Background(), op, id, []byte("fuzz plaintext"), []byte("aad"))
			if err != nil {
				f.Fatal(err)
			}
			seeds["sealed/"+string(a)] = b.Data
		}
	}
	// One key as older versions wrote it, for the handle-file seeds.
	legacy, err := provider.NewKeyID("fuzz", "p", string(alg.Default().Names()[0]))
	if err != nil {
		f.Fatal(err)
	}
	if err := LegacyHandles(mem, legacy); err != nil {
		f.Fatal(err)
	}
	for name, data := range mem.Snapshot() {
		seeds[name] = data
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed set")
	}
	return ks, mem, seeds
}

// FuzzUnseal: any sealed input either fails with a typed error or is
// exactly a blob the keystore made (the provider is deterministic, so a
// different input that opens would be a forgery).
func FuzzUnseal(f *testing.F) {
	ks, _, seeds := fuzzStore(f)
	valid := map[string]bool{}
	n := 0
	for name, b := range seeds {
		if bytes.HasPrefix([]byte(name), []byte("sealed/")) {
			f.Add(b, []byte("aad"))
			valid[string(b)] = true
			n++
		}
	}
	if n == 0 {
		f.Fatal("no sealed seeds")
	}
	id, _ := provider.NewKeyID("fuzz", "p", string(provider.XChaCha20Poly1305))
	op := Caller{App: "ops", Operator: true}
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		for _, a := range []provider.Algorithm{provider.XChaCha20Poly1305, provider.ChaCha20Poly1305, provider.AES256GCM} {
			id, _ = provider.NewKeyID("fuzz", "p", string(a))
			pt, err := ks.Unseal(context.Background(), op, id, sealed, aad)
			if err != nil {
				if _, ok := provider.CodeOf(err); !ok || pt.Plaintext != nil {
					t.Fatalf("untyped error or output with error: %v", err)
				}
				continue
			}
			if !valid[string(sealed)] || string(aad) != "aad" {
				t.Fatalf("unseal accepted input the keystore never made")
			}
		}
	})
}

// FuzzParseEnvelope: the header parser never panics and what it accepts
// re-encodes to the same header bytes.
func FuzzParseEnvelope(f *testing.F) {
	_, _, seeds := fuzzStore(f)
	for name, b := range seeds {
		if bytes.HasPrefix([]byte(name), []byte("sealed/")) {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, body, err := parseEnvelope(data)
		if err != nil {
			if c, _ := provider.CodeOf(err); c != provider.EBADMSG {
				t.Fatalf("code %v", c)
			}
			return
		}
		if !bytes.Equal(append(h.appendTo(nil), body...), data) {
			t.Fatal("re-encoding differs")
		}
	})
}

// FuzzMetaFile: a meta.json or MANIFEST either fails with EIO or decodes to
// a record that encodes back to exactly the same bytes.
func FuzzMetaFile(f *testing.F) {
	ks, _, seeds := fuzzStore(f)
	n := 0
	for name, b := range seeds {
		if bytes.HasSuffix([]byte(name), []byte("meta.json")) { // key files and legacy ones
			f.Add(name, b)
			n++
		}
	}
	if n == 0 {
		f.Fatal("no meta seeds")
	}
	f.Fuzz(func(t *testing.T, path string, data []byte) {
		if len(data) > storage.MaxFileSize {
			return
		}
		var b metaBody
		if err := decodeChecked("meta", path, data, &b); err != nil {
			if c, _ := provider.CodeOf(err); c != provider.EIO {
				t.Fatalf("code %v", c)
			}
			return
		}
		id, err := provider.ParseKeyID(b.ID)
		if err != nil {
			return
		}
		rec, err := recordFromBody(id, path, &b, ks.reg, ks.info.Name)
		if err != nil {
			if c, _ := provider.CodeOf(err); c != provider.EIO {
				t.Fatalf("code %v", c)
			}
			return
		}
		out, err := encodeChecked("meta", path, rec.body())
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("accepted a file that does not re-encode to itself")
		}
	})
}

// FuzzHandleFile: the handle framing never panics; what it accepts
// re-encodes identically.
func FuzzHandleFile(f *testing.F) {
	_, _, seeds := fuzzStore(f)
	n := 0
	for name, b := range seeds {
		if bytes.HasSuffix([]byte(name), []byte(".handle")) {
			f.Add(name, b)
			n++
		}
	}
	if n == 0 {
		f.Fatal("no handle seeds")
	}
	f.Fuzz(func(t *testing.T, path string, data []byte) {
		h, err := decodeHandle(path, data)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeHandle(path, h), data) {
			t.Fatal("re-encoding differs")
		}
	})
}

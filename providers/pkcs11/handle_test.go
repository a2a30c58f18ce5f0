package pkcs11

import (
	"bytes"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// TestHandleBinding: a handle passes only under the ref it was made for;
// changing any field of the ref, or any byte of the handle, fails with EIO.
func TestHandleBinding(t *testing.T) {
	ref := mustRef(t, "k", 3, provider.Ed25519)
	id, err := idOf(ref)
	if err != nil {
		t.Fatal(err)
	}
	h := encodeHandle(id)
	if len(h) != handleSize || !bytes.HasPrefix(h, []byte(handleMagic)) {
		t.Fatalf("handle = %x, want %q ‖ 20-byte ID", h, handleMagic)
	}
	if got, err := checkHandleFor(ref, h); err != nil || got != id {
		t.Fatalf("checkHandleFor(own ref) = %x, %v", got, err)
	}
	other := func(edit func(*provider.KeyRef)) provider.KeyRef { r := ref; edit(&r); return r }
	otherID, err := provider.NewKeyID("test", "pkcs11", "other")
	if err != nil {
		t.Fatal(err)
	}
	for what, r := range map[string]provider.KeyRef{
		"key ID":    other(func(r *provider.KeyRef) { r.ID = otherID }),
		"version":   other(func(r *provider.KeyRef) { r.Version++ }),
		"algorithm": other(func(r *provider.KeyRef) { r.Algorithm = provider.Ed448 }),
		"use":       other(func(r *provider.KeyRef) { r.Use = provider.UseDecrypt }),
		"provider":  other(func(r *provider.KeyRef) { r.Provider = "pkcs11-b" }),
	} {
		_, err := checkHandleFor(r, h)
		wantCode(t, "handle under another "+what, err, provider.EIO)
	}
	for i := range h {
		bad := bytes.Clone(h)
		bad[i] ^= 1
		_, err := checkHandleFor(ref, bad)
		wantCode(t, "handle with a flipped bit", err, provider.EIO)
	}
	for _, bad := range []provider.Handle{nil, h[:len(h)-1], append(bytes.Clone(h), 0)} {
		_, err := checkHandleFor(ref, bad)
		wantCode(t, "handle of the wrong length", err, provider.EIO)
	}
	_, err = checkHandleFor(ref, make(provider.Handle, provider.MaxHandle+1))
	wantCode(t, "oversize handle", err, provider.EINVAL)
}

// FuzzCheckHandle: any bytes either fail or are exactly the ref's handle;
// nothing panics.
func FuzzCheckHandle(f *testing.F) {
	ref := mustRef(f, "k", 1, provider.AES256GCM)
	id, err := idOf(ref)
	if err != nil {
		f.Fatal(err)
	}
	good := encodeHandle(id)
	seeds := [][]byte{good, nil, []byte(handleMagic), good[:10], append(bytes.Clone(good), 1)}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		_, err := checkHandleFor(ref, h)
		if (err == nil) != bytes.Equal(h, good) {
			t.Fatalf("checkHandleFor(%x) = %v", h, err)
		}
	})
}

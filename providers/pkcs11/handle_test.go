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

// TestEd25519Point: the DER OCTET STRING form and the bare 32 bytes give
// the key; anything else fails with EIO.
func TestEd25519Point(t *testing.T) {
	key := bytes.Repeat([]byte{0xAB}, 32)
	for _, v := range [][]byte{append([]byte{0x04, 0x20}, key...), key} {
		got, err := ed25519Point(v)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("ed25519Point(%x) = %x, %v; want the key", v, got, err)
		}
	}
	bad := [][]byte{
		nil, {0x04}, {0x04, 0x20}, append([]byte{0x04, 0x21}, key...), append([]byte{0x03, 0x20}, key...),
		append([]byte{0x04, 0x20}, key[:31]...), append([]byte{0x04, 0x20}, append(key, 0)...), key[:31],
		append([]byte{0x04, 0x81, 0x20}, key...),
	}
	for _, v := range bad {
		if got, err := ed25519Point(v); err == nil {
			t.Errorf("ed25519Point(%x) = %x, want an error", v, got)
		} else {
			wantCode(t, "malformed CKA_EC_POINT", err, provider.EIO)
		}
	}
}

// FuzzEd25519Point: any CKA_EC_POINT value either fails or yields 32 bytes
// found in it; nothing panics.
func FuzzEd25519Point(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, s := range [][]byte{append([]byte{0x04, 0x20}, key...), key, {0x04, 0x20}, nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := ed25519Point(v)
		if err != nil {
			return
		}
		if len(got) != 32 || !bytes.HasSuffix(v, got) {
			t.Fatalf("ed25519Point(%x) = %x", v, got)
		}
	})
}

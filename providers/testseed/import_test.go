package testseed

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/provider"
)

// importDraw is the documented n-th import draw for ref (docs/testing.md):
// HKDF(seed, salt, "import" ‖ u64be(n) ‖ ref, l).
func importDraw(t *testing.T, seed []byte, n uint64, ref provider.KeyRef, l int) []byte {
	t.Helper()
	refBin, err := ref.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	info := append(binary.BigEndian.AppendUint64([]byte("import"), n), refBin...)
	b, err := hkdf.Key(sha256.New, seed, []byte(Salt), string(info), l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportDerivation: the wrapping key of the first NewImportKey is
// DeriveKeyPair of draw 1, its handle "KSI1" ‖ draw 2, and the handle of
// the key imported with it is wrapped with draw 3 as its nonce; a fresh
// provider making the same calls gives the same bytes, and a second
// wrapping key for the same wrap ref is another key.
func TestImportDerivation(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{0x42}, 32)
	target := goldenRef(t, provider.AES256GCM)
	wrap := provider.KeyRef{ID: target.ID, Version: 1, Algorithm: provider.HPKEX25519, Use: provider.UseAsymmetricDecrypt, Provider: Name}
	run := func() (provider.Generated, provider.Generated, provider.Generated) {
		p := newTest(t, goldenSeed)
		w1, err := p.NewImportKey(ctx, wrap)
		if err != nil {
			t.Fatal(err)
		}
		enc, ct, err := hpkeSeal(provider.HPKEX25519, w1.PublicKey, provider.ImportInfo(target.ID, target.Algorithm), nil, key)
		if err != nil {
			t.Fatal(err)
		}
		g, err := p.Import(ctx, target, wrap, w1.Handle, enc, ct)
		if err != nil {
			t.Fatalf("Import: %v", err)
		}
		w2, err := p.NewImportKey(ctx, wrap)
		if err != nil {
			t.Fatal(err)
		}
		return w1, g, w2
	}
	w1, g, w2 := run()
	kem, err := hpke.NewKEM(0x0020)
	if err != nil {
		t.Fatal(err)
	}
	want, err := kem.DeriveKeyPair(importDraw(t, goldenSeed, 1, wrap, 32))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w1.PublicKey, want.PublicKey().Bytes()) {
		t.Error("the first wrapping key is not DeriveKeyPair of import draw 1")
	}
	if wantH := append([]byte("KSI1"), importDraw(t, goldenSeed, 2, wrap, 16)...); !bytes.Equal(w1.Handle, wantH) {
		t.Errorf("the first wrapping key's handle is %x, want KSI1 ‖ import draw 2 (%x)", w1.Handle, wantH)
	}
	if len(g.Handle) < 36 || !bytes.Equal(g.Handle[12:36], importDraw(t, goldenSeed, 3, target, 24)) {
		t.Error("the imported key's wrap nonce is not import draw 3")
	}
	kek, err := InsecureKEK(goldenSeed)
	if err != nil {
		t.Fatal(err)
	}
	if m := unwrapIndependently(t, kek, target, g.Handle); !bytes.Equal(m, key) {
		t.Error("the imported key's handle does not unwrap to the imported key")
	}
	if bytes.Equal(w1.PublicKey, w2.PublicKey) || bytes.Equal(w1.Handle, w2.Handle) {
		t.Error("two wrapping keys for one wrap ref are the same key")
	}
	v1, h, v2 := run()
	if !bytes.Equal(w1.PublicKey, v1.PublicKey) || !bytes.Equal(w1.Handle, v1.Handle) ||
		!bytes.Equal(g.Handle, h.Handle) || !bytes.Equal(w2.PublicKey, v2.PublicKey) {
		t.Error("a fresh provider making the same import calls gives other bytes")
	}
}

// unwrapIndependently opens handle h of ref with x/crypto's
// XChaCha20-Poly1305 under kek (docs/testing.md, Handle).
func unwrapIndependently(t *testing.T, kek []byte, ref provider.KeyRef, h []byte) []byte {
	t.Helper()
	refBin, err := ref.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := chacha20poly1305.NewX(kek)
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Open(nil, h[12:36], h[36:], append([]byte("keystored/softkey/handle/v1"), refBin...))
	if err != nil {
		t.Fatalf("unwrap of %s: %v", ref, err)
	}
	return m
}

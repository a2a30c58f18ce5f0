package importkey

import (
	"context"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// counter is a deterministic Random: SHA-256 of a counter, so no two
// draws repeat.
func counter() Random {
	var n atomic.Uint64
	return func(_ provider.KeyRef, out []byte) error {
		for i := 0; i < len(out); i += sha256.Size {
			sum := sha256.Sum256(binary.BigEndian.AppendUint64(nil, n.Add(1)))
			copy(out[i:], sum[:])
		}
		return nil
	}
}

func keyRef(t testing.TB, name string, a provider.Algorithm) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID("app", "import", name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := alg.Default().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	return provider.KeyRef{ID: id, Version: 1, Algorithm: a, Use: s.Use, Provider: "soft"}
}

// wrapRef is the wrap KeyRef the core makes for the key of ref.
func wrapRef(ref provider.KeyRef, suite provider.Algorithm) provider.KeyRef {
	return provider.KeyRef{ID: ref.ID, Version: 1, Algorithm: suite, Use: provider.UseAsymmetricDecrypt, Provider: ref.Provider}
}

// seal wraps material to a wrapping public key of suite, as a client does.
func seal(t testing.TB, suite provider.Algorithm, pub, info, material []byte) (enc, ct []byte) {
	t.Helper()
	s, err := alg.Default().Lookup(suite)
	if err != nil {
		t.Fatal(err)
	}
	kem, kdf, aead, err := s.Suite()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	enc, snd, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		t.Fatal(err)
	}
	if ct, err = snd.Seal(nil, material); err != nil {
		t.Fatal(err)
	}
	return enc, ct
}

func wantCode(t testing.TB, what string, err error, want provider.Code) {
	t.Helper()
	if got, ok := provider.CodeOf(err); !ok || got != want {
		t.Fatalf("%s: got %v, want an error wrapping %s", what, err, want)
	}
}

func aesKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestOpenOnce: material sealed to a wrapping key opens once, for the key
// and algorithm of the info; the key is spent by the first Open whatever
// its outcome, and the table then holds nothing.
func TestOpenOnce(t *testing.T) {
	ctx := context.Background()
	for _, suite := range []provider.Algorithm{provider.HPKEX25519, provider.HPKEP256, provider.HPKEMLKEM768X25519} {
		t.Run(string(suite), func(t *testing.T) {
			tab := New(alg.Default(), counter())
			ref := keyRef(t, "aes", provider.AES256GCM)
			wrap := wrapRef(ref, suite)
			g, err := tab.New(ctx, wrap)
			if err != nil {
				t.Fatal(err)
			}
			if !IsHandle(g.Handle) || tab.Len() != 1 {
				t.Fatalf("handle %x (IsHandle %v), table of %d; want a KSI1 handle in a table of 1", g.Handle, IsHandle(g.Handle), tab.Len())
			}
			key := aesKey(t)
			enc, ct := seal(t, suite, g.PublicKey, provider.ImportInfo(ref.ID, ref.Algorithm), key)
			m, pub, err := tab.Open(ctx, ref, wrap, g.Handle, enc, ct)
			if err != nil || string(m) != string(key) || len(pub) != 0 {
				t.Fatalf("Open: %d bytes, %d-byte public key, %v; want the 32-byte key and no public key", len(m), len(pub), err)
			}
			_, _, err = tab.Open(ctx, ref, wrap, g.Handle, enc, ct)
			wantCode(t, "Open again", err, provider.ENOENT)
			if tab.Len() != 0 {
				t.Errorf("table holds %d keys after the Open; want 0", tab.Len())
			}
		})
	}
}

// TestSpentWhateverTheOutcome: an Open that fails (material for another
// key or algorithm, a tampered wrap, a cancelled context, material of the
// wrong size, an algorithm that cannot be imported) still spends the key.
func TestSpentWhateverTheOutcome(t *testing.T) {
	ctx := context.Background()
	ref := keyRef(t, "aes", provider.AES256GCM)
	other := keyRef(t, "other", provider.AES256GCM)
	mldsa := keyRef(t, "aes", provider.MLDSA65)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		ref  provider.KeyRef
		info provider.KeyRef // the info the material is sealed under
		mat  []byte
		flip bool
		want provider.Code
	}{
		{"info of another key", ctx, ref, other, aesKey(t), false, provider.EBADMSG},
		{"info of another algorithm", ctx, ref, keyRef(t, "aes", provider.ChaCha20Poly1305), aesKey(t), false, provider.EBADMSG},
		{"tampered", ctx, ref, ref, aesKey(t), true, provider.EBADMSG},
		{"cancelled context", cancelled, ref, ref, aesKey(t), false, provider.EUNAVAILABLE},
		{"material of the wrong size", ctx, ref, ref, make([]byte, 16), false, provider.EINVAL},
		{"not importable", ctx, mldsa, mldsa, make([]byte, 32), false, provider.ENOTSUP},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := New(alg.Default(), counter())
			wrap := wrapRef(c.ref, provider.HPKEX25519)
			g, err := tab.New(ctx, wrap)
			if err != nil {
				t.Fatal(err)
			}
			enc, ct := seal(t, provider.HPKEX25519, g.PublicKey, provider.ImportInfo(c.info.ID, c.info.Algorithm), c.mat)
			if c.flip {
				ct[0] ^= 1
			}
			m, _, err := tab.Open(c.ctx, c.ref, wrap, g.Handle, enc, ct)
			if len(m) != 0 {
				t.Errorf("failed Open returned %d bytes of material", len(m))
			}
			wantCode(t, "Open", err, c.want)
			if tab.Len() != 0 {
				t.Fatal("the failed Open left the wrapping key in the table")
			}
		})
	}
}

// TestTakeOtherWrap: a handle presented with another wrap KeyRef is
// ENOENT and does not spend the key of its own.
func TestTakeOtherWrap(t *testing.T) {
	ctx := context.Background()
	tab := New(alg.Default(), counter())
	wrap := wrapRef(keyRef(t, "a", provider.AES256GCM), provider.HPKEX25519)
	g, err := tab.New(ctx, wrap)
	if err != nil {
		t.Fatal(err)
	}
	other := wrap
	other.ID = keyRef(t, "b", provider.AES256GCM).ID
	_, err = tab.Take(other, g.Handle)
	wantCode(t, "Take with another wrap ref", err, provider.ENOENT)
	tab.Forget(other, g.Handle)
	if tab.Len() != 1 {
		t.Fatal("Take or Forget with another wrap ref dropped the key")
	}
	for _, h := range []provider.Handle{nil, g.Handle[:len(g.Handle)-1], append(g.Handle, 0)} {
		_, err := tab.Take(wrap, h)
		wantCode(t, fmt.Sprintf("Take of a %d-byte handle", len(h)), err, provider.ENOENT)
	}
	if _, err := tab.Take(wrap, g.Handle); err != nil {
		t.Fatalf("Take with its own wrap ref: %v", err)
	}
}

// TestNewRefuses: a wrap ref of a non-HPKE algorithm or use is EINVAL.
func TestNewRefuses(t *testing.T) {
	ctx := context.Background()
	tab := New(alg.Default(), counter())
	ref := keyRef(t, "a", provider.AES256GCM)
	bad := wrapRef(ref, provider.AES256GCM)
	_, err := tab.New(ctx, bad)
	wantCode(t, "New for an AEAD wrap", err, provider.EINVAL)
	mixed := wrapRef(ref, provider.HPKEX25519)
	mixed.Use = provider.UseDecrypt
	_, err = tab.New(ctx, mixed)
	wantCode(t, "New for a decrypt-use wrap", err, provider.EINVAL)
	broken := New(alg.Default(), func(provider.KeyRef, []byte) error { return errors.New("down") })
	_, err = broken.New(ctx, wrapRef(ref, provider.HPKEX25519))
	wantCode(t, "New with a failing random source", err, provider.EIO)
}

// TestBounded: the table holds at most MaxImportKeys, forgetting the
// oldest; keys spent in between do not make it forget a live one early.
func TestBounded(t *testing.T) {
	ctx := context.Background()
	tab := New(alg.Default(), counter())
	wrap := wrapRef(keyRef(t, "a", provider.AES256GCM), provider.HPKEX25519)
	first, err := tab.New(ctx, wrap)
	if err != nil {
		t.Fatal(err)
	}
	// Churn: more than 2×MaxImportKeys keys made and spent.
	for i := 0; i < 2*provider.MaxImportKeys+10; i++ {
		g, err := tab.New(ctx, wrap)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tab.Take(wrap, g.Handle); err != nil {
			t.Fatal(err)
		}
	}
	if tab.Len() != 1 {
		t.Fatalf("after the churn the table holds %d keys; want 1", tab.Len())
	}
	var last provider.Generated
	for i := 0; i < provider.MaxImportKeys; i++ {
		if last, err = tab.New(ctx, wrap); err != nil {
			t.Fatal(err)
		}
	}
	if tab.Len() != provider.MaxImportKeys {
		t.Fatalf("table holds %d keys; want MaxImportKeys (%d)", tab.Len(), provider.MaxImportKeys)
	}
	if _, err := tab.Take(wrap, first.Handle); err == nil {
		t.Error("the oldest key survived MaxImportKeys newer ones; want it forgotten")
	}
	if _, err := tab.Take(wrap, last.Handle); err != nil {
		t.Errorf("the newest key: %v; want it held", err)
	}
}

// TestConcurrentTake: of many Takes of one key at once, exactly one wins.
func TestConcurrentTake(t *testing.T) {
	ctx := context.Background()
	tab := New(alg.Default(), counter())
	wrap := wrapRef(keyRef(t, "a", provider.AES256GCM), provider.HPKEX25519)
	g, err := tab.New(ctx, wrap)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := 0; i < 16; i++ {
		wg.Go(func() {
			if _, err := tab.Take(wrap, g.Handle); err == nil {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d Takes of one key succeeded; want exactly 1", won.Load())
	}
}

// TestRedacted: a table and a spent key print no material.
func TestRedacted(t *testing.T) {
	tab := New(alg.Default(), counter())
	wrap := wrapRef(keyRef(t, "a", provider.AES256GCM), provider.HPKEX25519)
	g, err := tab.New(context.Background(), wrap)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tab.Take(wrap, g.Handle)
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		for _, v := range []any{tab, k} {
			out := fmt.Sprintf(verb, v)
			if !strings.HasPrefix(out, "import wrapping key") {
				t.Errorf("fmt %s of %T = %.80q; want it redacted", verb, v, out)
			}
		}
	}
}

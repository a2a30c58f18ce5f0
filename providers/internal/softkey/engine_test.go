package softkey

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

func TestRoundTripEveryAlgorithm(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	for _, a := range alg.Default().Names() {
		t.Run(string(a), func(t *testing.T) {
			s, err := alg.Default().Lookup(a)
			if err != nil {
				t.Fatal(err)
			}
			r := ref(t, "rt", a)
			g := generate(t, e, r)
			// The handle wraps the material: SecretSize bytes, or a PKCS #1
			// DER of up to SecretSize for RSA.
			if n := len(g.Handle) - HandleOverhead; !s.SecretSizeOK(n) || (!s.SecretVaries && n != s.SecretSize) {
				t.Errorf("handle length: got %d, want %d + a material size %s allows", len(g.Handle), HandleOverhead, a)
			}
			if !bytes.HasPrefix(g.Handle, []byte(HandleMagic)) {
				t.Errorf("handle does not start with %q", HandleMagic)
			}
			switch s.Use {
			case provider.UseSign:
				if !s.CheckPublicKey(g.PublicKey) {
					t.Fatalf("public key: %d bytes that %s does not accept", len(g.PublicKey), a)
				}
				msg := []byte("hello")
				sig, err := e.Sign(ctx, r, g.Handle, msg)
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if !s.Verify(g.PublicKey, msg, sig) {
					t.Fatal("signature does not verify under the generated public key")
				}
				if s.Hash == 0 {
					_, err := e.SignDigest(ctx, r, g.Handle, crypto.SHA512, make([]byte, 64))
					wantCode(t, "SignDigest of "+string(a), err, provider.EPERM)
					return
				}
				h := s.Hash.New()
				h.Write(msg)
				digest := h.Sum(nil)
				dsig, err := e.SignDigest(ctx, r, g.Handle, s.Hash, digest)
				if err != nil {
					t.Fatalf("SignDigest: %v", err)
				}
				if !s.VerifyDigest(g.PublicKey, s.Hash, digest, dsig) || !s.Verify(g.PublicKey, msg, dsig) {
					t.Fatal("the signature of the digest does not verify, as one of the digest and of the message")
				}
				return
			case provider.UseMAC:
				if len(g.PublicKey) != 0 {
					t.Errorf("MAC public key: got %d bytes, want none", len(g.PublicKey))
				}
				tag, err := e.MAC(ctx, r, g.Handle, []byte("hello"))
				if err != nil || len(tag) != s.MACSize {
					t.Fatalf("MAC: %d-byte tag, %v; want %d bytes", len(tag), err, s.MACSize)
				}
				again, err := e.MAC(ctx, r, g.Handle, []byte("hello"))
				if err != nil || !bytes.Equal(again, tag) {
					t.Fatalf("MAC again: another tag or %v", err)
				}
				return
			case provider.UseAsymmetricDecrypt:
				if !s.CheckPublicKey(g.PublicKey) {
					t.Fatalf("public key: %d bytes that %s does not accept", len(g.PublicKey), a)
				}
				enc, ct := hpkeSeal(t, s, g.PublicKey, []byte("info"), []byte("aad"), []byte("plain"))
				pt, err := e.Decrypt(ctx, r, g.Handle, enc, ct, []byte("info"), []byte("aad"))
				if err != nil || string(pt) != "plain" {
					t.Fatalf("Decrypt: got %q, %v; want %q", pt, err, "plain")
				}
				_, err = e.Decrypt(ctx, r, g.Handle, enc, ct, []byte("infx"), []byte("aad"))
				wantCode(t, "Decrypt with another info", err, provider.EBADMSG)
				_, err = e.Seal(ctx, r, g.Handle, []byte("plain"), nil)
				wantCode(t, "Seal with an HPKE key", err, provider.EPERM)
				return
			}
			if len(g.PublicKey) != 0 {
				t.Errorf("AEAD public key: got %d bytes, want none", len(g.PublicKey))
			}
			sealed, err := e.Seal(ctx, r, g.Handle, []byte("plain"), []byte("aad"))
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if got, want := len(sealed), s.NonceSize+len("plain")+s.Overhead; got != want {
				t.Errorf("sealed length: got %d, want %d", got, want)
			}
			pt, err := e.Open(ctx, r, g.Handle, sealed, []byte("aad"))
			if err != nil || string(pt) != "plain" {
				t.Fatalf("Open: got %q, %v; want %q", pt, err, "plain")
			}
		})
	}
}

func TestHandleBinding(t *testing.T) {
	e := newEngine(t)
	for _, a := range []provider.Algorithm{provider.Ed25519, provider.XChaCha20Poly1305} {
		orig := mkref(t, "app", "pur", "key", a, 3, "soft")
		g := generate(t, e, orig)
		if err := use(e, orig, g.Handle); err != nil {
			t.Fatalf("%s: original ref: %v", a, err)
		}
		other := provider.MLDSA44 // same secret size as ed25519: reaches the AEAD
		if a == provider.XChaCha20Poly1305 {
			other = provider.AES256GCM
		}
		for _, tc := range []struct {
			name string
			r    provider.KeyRef
		}{
			{"app", mkref(t, "app2", "pur", "key", a, 3, "soft")},
			{"purpose", mkref(t, "app", "pur2", "key", a, 3, "soft")},
			{"name", mkref(t, "app", "pur", "key2", a, 3, "soft")},
			{"version", mkref(t, "app", "pur", "key", a, 4, "soft")},
			{"algorithm", mkref(t, "app", "pur", "key", other, 3, "soft")},
			{"algorithm-size", mkref(t, "app", "pur", "key", provider.Ed448, 3, "soft")},
		} {
			err := use(e, tc.r, g.Handle)
			wantCode(t, string(a)+" under another "+tc.name, err, provider.EIO)
		}
	}

	// Use: every algorithm has one use, so a ref with another use is
	// refused before the handle is touched (EPERM), and the wrap AAD binds
	// the use as well (EIO).
	r := ref(t, "use", provider.Ed25519)
	g := generate(t, e, r)
	bad := r
	bad.Use = provider.UseDecrypt
	wantCode(t, "sign under use decrypt", use(e, bad, g.Handle), provider.EPERM)
	s, _ := alg.Default().Lookup(provider.Ed25519)
	_, err := e.unwrap(bad, s, g.Handle)
	wantCode(t, "unwrap under use decrypt", err, provider.EIO)

	// Provider: same KEK, another provider name.
	other := newEngine(t, withName("other"))
	moved := r
	moved.Provider = "other"
	wantCode(t, "handle moved to another provider", use(other, moved, g.Handle), provider.EIO)
	// A ref naming another provider is refused outright.
	wantCode(t, "ref of another provider", use(e, moved, g.Handle), provider.EINVAL)
}

func TestCacheHitWithOtherRefMisses(t *testing.T) {
	e := newEngine(t)
	a := ref(t, "a", provider.Ed25519)
	g := generate(t, e, a)
	if err := use(e, a, g.Handle); err != nil {
		t.Fatal(err)
	}
	if e.cache.get(a, g.Handle) == nil {
		t.Fatal("key not cached after use")
	}
	b := ref(t, "b", provider.Ed25519)
	err := use(e, b, g.Handle)
	wantCode(t, "cached handle under another ref", err, provider.EIO)
	if !strings.Contains(err.Error(), "failed authentication") {
		t.Errorf("error %q does not say the handle failed authentication", err)
	}
}

func TestWrongKEK(t *testing.T) {
	e1 := newEngine(t, withKEK(1))
	e2 := newEngine(t, withKEK(100))
	r := ref(t, "k", provider.Ed25519)
	g := generate(t, e1, r)
	err := use(e2, r, g.Handle)
	wantCode(t, "handle under another KEK", err, provider.EIO)
	id1, _ := KEKID(testKEK(1))
	id2, _ := KEKID(testKEK(100))
	want := "key handle for app/test/k@1 was wrapped under KEK " + hex.EncodeToString(id1[:]) +
		", this provider holds KEK " + hex.EncodeToString(id2[:]) + ": wrong KEK"
	if err.Error() != want {
		t.Errorf("error:\n got %q\nwant %q", err, want)
	}
	for _, k := range []secret.Bytes{testKEK(1), testKEK(100)} {
		if strings.Contains(err.Error(), hex.EncodeToString(k.Reveal())) || strings.Contains(err.Error(), string(k.Reveal())) {
			t.Errorf("error %q contains KEK bytes", err)
		}
	}
}

func TestKEKID(t *testing.T) {
	a, err := KEKID(testKEK(1))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := KEKID(testKEK(2))
	if a == b {
		t.Error("two KEKs have the same ID")
	}
	if bytes.Contains(testKEK(1).Reveal(), a[:]) {
		t.Error("KEK ID is a slice of the KEK")
	}
	if _, err := KEKID(secret.New(make([]byte, 31))); err == nil {
		t.Error("KEKID accepted a 31-byte KEK")
	}
}

func TestCorruptHandle(t *testing.T) {
	e := newEngine(t)
	r := ref(t, "c", provider.Ed25519)
	g := generate(t, e, r)
	h := g.Handle
	mod := func(f func(b []byte) []byte) provider.Handle { return f(append([]byte(nil), h...)) }
	for _, tc := range []struct {
		name string
		h    provider.Handle
		msg  string
	}{
		{"empty", nil, "corrupt key handle for app/test/c@1"},
		{"one byte", h[:1], "corrupt key handle"},
		{"truncated", h[:len(h)-1], "corrupt key handle"},
		{"extended", mod(func(b []byte) []byte { return append(b, 0) }), "corrupt key handle"},
		{"magic", mod(func(b []byte) []byte { b[0] ^= 1; return b }), "corrupt key handle"},
		{"kek id", mod(func(b []byte) []byte { b[5] ^= 1; return b }), "wrong KEK"},
		{"nonce", mod(func(b []byte) []byte { b[len(HandleMagic)+KEKIDSize] ^= 1; return b }), "failed authentication"},
		{"ciphertext", mod(func(b []byte) []byte { b[headerSize] ^= 0x80; return b }), "failed authentication"},
		{"tag", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "failed authentication"},
	} {
		err := use(e, r, tc.h)
		wantCode(t, tc.name, err, provider.EIO)
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.msg)
		}
	}
	// Every single-byte change fails.
	for i := range h {
		b := append([]byte(nil), h...)
		b[i] ^= 0x01
		wantCode(t, "flip", use(e, r, b), provider.EIO)
	}
	wantCode(t, "over MaxHandle", use(e, r, make([]byte, provider.MaxHandle+1)), provider.EINVAL)
}

func TestCacheEviction(t *testing.T) {
	e := newEngine(t, withCache(2))
	ctx := context.Background()
	s, _ := alg.Default().Lookup(provider.Ed25519)
	var refs []provider.KeyRef
	var gens []provider.Generated
	for i := 0; i < 5; i++ {
		r := ref(t, "k"+string(rune('a'+i)), provider.Ed25519)
		refs = append(refs, r)
		gens = append(gens, generate(t, e, r))
	}
	for round := 0; round < 3; round++ {
		for i, r := range refs {
			msg := []byte{byte(round), byte(i)}
			sig, err := e.Sign(ctx, r, gens[i].Handle, msg)
			if err != nil {
				t.Fatalf("round %d key %d: %v", round, i, err)
			}
			if !s.Verify(gens[i].PublicKey, msg, sig) {
				t.Fatalf("round %d key %d: signature does not verify", round, i)
			}
			if n := e.cache.len(); n > 2 {
				t.Fatalf("cache holds %d keys, capacity 2", n)
			}
		}
	}
	if n := e.cache.len(); n != 2 {
		t.Errorf("cache holds %d keys after use, want 2", n)
	}
}

func TestDestroy(t *testing.T) {
	ctx := context.Background()
	for _, a := range []provider.Algorithm{provider.Ed25519, provider.XChaCha20Poly1305} {
		e := newEngine(t)
		r := ref(t, "d", a)
		g := generate(t, e, r)
		var sealed []byte
		if a == provider.XChaCha20Poly1305 {
			var err error
			if sealed, err = e.Seal(ctx, r, g.Handle, []byte("x"), nil); err != nil {
				t.Fatal(err)
			}
		} else if err := use(e, r, g.Handle); err != nil {
			t.Fatal(err)
		}
		if err := e.Destroy(ctx, r, g.Handle); err != nil {
			t.Fatalf("%s: Destroy: %v", a, err)
		}
		if e.cache.get(r, g.Handle) != nil {
			t.Errorf("%s: destroyed key still cached", a)
		}
		err := use(e, r, g.Handle)
		wantCode(t, string(a)+" use after destroy", err, provider.ENOENT)
		if want := "key app/test/d@1 is destroyed"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
		if sealed != nil {
			pt, err := e.Open(ctx, r, g.Handle, sealed, nil)
			wantCode(t, "open after destroy", err, provider.ENOENT)
			if pt != nil {
				t.Error("open after destroy returned output")
			}
		}
		if err := e.Destroy(ctx, r, g.Handle); err != nil {
			t.Errorf("%s: second Destroy: %v", a, err)
		}
	}

	// Destroy of a handle never cached, and refusal of a handle that is
	// not for ref.
	e := newEngine(t)
	r := ref(t, "fresh", provider.Ed25519)
	g := generate(t, e, r)
	e2 := newEngine(t) // same KEK, empty cache
	wantCode(t, "destroy under another ref", e2.Destroy(ctx, ref(t, "other", provider.Ed25519), g.Handle), provider.EIO)
	if err := e2.Destroy(ctx, r, g.Handle); err != nil {
		t.Fatalf("Destroy uncached: %v", err)
	}
	wantCode(t, "use after uncached destroy", use(e2, r, g.Handle), provider.ENOENT)
	if err := use(e, r, g.Handle); err != nil {
		t.Errorf("other engine, not destroyed there: %v", err)
	}
}

func TestTombstoneBeatsLateCacheInsert(t *testing.T) {
	e := newEngine(t)
	r := ref(t, "late", provider.Ed25519)
	g := generate(t, e, r)
	if err := e.Destroy(context.Background(), r, g.Handle); err != nil {
		t.Fatal(err)
	}
	// A sign that unwrapped before the destroy tries to cache afterwards.
	s, _ := alg.Default().Lookup(provider.Ed25519)
	m, err := e.unwrap(r, s, g.Handle)
	if err != nil {
		t.Fatal(err)
	}
	ent, _, err := e.newKey(r, s, m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256Sum(g.Handle)
	if e.cache.put(g.Handle, &sum, ent) {
		t.Fatal("cache accepted a destroyed handle")
	}
	wantCode(t, "use", use(e, r, g.Handle), provider.ENOENT)
}

func TestTombstonesBounded(t *testing.T) {
	c := newCache(4)
	for i := 0; i < MaxTombstones+10; i++ {
		h := []byte{byte(i), byte(i >> 8), byte(i >> 16)}
		sum := sha256Sum(h)
		c.destroy(h, &sum)
	}
	if n := len(c.dead); n != MaxTombstones {
		t.Errorf("tombstones: got %d, want %d", n, MaxTombstones)
	}
}

func TestSourceFailure(t *testing.T) {
	src := &countSource{}
	e := newEngine(t, withSource(src))
	r := ref(t, "s", provider.XChaCha20Poly1305)
	g := generate(t, e, r)
	src.fail.Store(true)
	_, err := e.Generate(context.Background(), ref(t, "s2", provider.Ed25519))
	wantCode(t, "generate with failing source", err, provider.EIO)
	if !errors.Is(err, errSourceDown) {
		t.Errorf("error %q does not wrap the source's error", err)
	}
	out, err := e.Seal(context.Background(), r, g.Handle, []byte("x"), nil)
	wantCode(t, "seal with failing source", err, provider.EIO)
	if out != nil {
		t.Error("failed seal returned output")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	reg := alg.Default()
	good := Config{
		Info:     provider.Info{Name: "soft", Algorithms: reg.Names()},
		Registry: reg, KEK: testKEK(1), Source: &countSource{},
	}
	for _, tc := range []struct {
		name string
		f    func(c *Config)
	}{
		{"short KEK", func(c *Config) { c.KEK = secret.New(make([]byte, 16)) }},
		{"no KEK", func(c *Config) { c.KEK = secret.Bytes{} }},
		{"negative cache", func(c *Config) { c.CacheSize = -1 }},
		{"huge cache", func(c *Config) { c.CacheSize = MaxCacheSize + 1 }},
		{"no source", func(c *Config) { c.Source = nil }},
		{"no registry", func(c *Config) { c.Registry = nil }},
		{"bad name", func(c *Config) { c.Info.Name = "Soft" }},
		{"no algorithms", func(c *Config) { c.Info.Algorithms = nil }},
		{"unknown algorithm", func(c *Config) { c.Info.Algorithms = []provider.Algorithm{"rsa-2048"} }},
	} {
		c := good
		tc.f(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted the config", tc.name)
		}
	}
	if _, err := New(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

func TestInfoIsACopy(t *testing.T) {
	e := newEngine(t)
	i1, err := e.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	i1.Algorithms[0] = "mutated"
	i2, _ := e.Info(context.Background())
	if i2.Algorithms[0] == "mutated" {
		t.Error("Info shares its Algorithms slice with callers")
	}
	if got, want := len(i2.Algorithms), len(alg.Default().Names()); got != want {
		t.Errorf("algorithms: got %d, want %d", got, want)
	}
}

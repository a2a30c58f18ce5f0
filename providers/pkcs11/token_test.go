package pkcs11

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// TestInfo: of what keystored knows, SoftHSM2 2.6.1 supports exactly
// Ed25519, Ed448, ECDSA P-256 and P-384, RSA-PSS and RSA PKCS#1 v1.5 of
// 2048, 3072 and 4096 bits, AES-256-GCM and HMAC-SHA-256/384/512 (not
// Ed25519ph: it ignores the prehash flag, see probeEd25519ph); the
// provider is secure and not deterministic.
func TestInfo(t *testing.T) {
	tk := newToken(t, "info")
	p := tk.open(t)
	info, err := p.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := softhsmAlgorithms
	if !slices.Equal(info.Algorithms, want) {
		t.Errorf("Algorithms = %v, want %v", info.Algorithms, want)
	}
	if !info.Secure || info.Deterministic || info.Name != DefaultName || info.Version != Version {
		t.Errorf("Info = %+v, want Secure, not Deterministic, name %q, version %q", info, DefaultName, Version)
	}
	if err := info.Check(); err != nil {
		t.Errorf("Info.Check: %v", err)
	}
	info.Algorithms[0] = "changed"
	again, _ := p.Info(t.Context())
	if again.Algorithms[0] != provider.Ed25519 {
		t.Error("Info returned its own slice: a caller changed the provider's algorithms")
	}
	if got := fmt.Sprintf("%v %+v %#v %s", p, p, p, p); bytes.Contains([]byte(got), []byte(testPIN)) {
		t.Errorf("printed provider contains the PIN: %s", got)
	}
}

// TestKeyAttributes asks the token directly that each key's objects have
// the promised attributes, and that the private values cannot be read.
func TestKeyAttributes(t *testing.T) {
	tk := newToken(t, "attributes")
	p := tk.open(t)
	d := tk.openDirect(t)
	edRef := mustRef(t, "ed", 1, provider.Ed25519)
	aesRef := mustRef(t, "aes", 1, provider.AES256GCM)
	generate(t, p, edRef)
	generate(t, p, aesRef)

	yes, no := []byte{1}, []byte{0}
	secretWant := map[uint][]byte{
		p11.CKA_TOKEN: yes, p11.CKA_PRIVATE: yes, p11.CKA_SENSITIVE: yes, p11.CKA_ALWAYS_SENSITIVE: yes,
		p11.CKA_EXTRACTABLE: no, p11.CKA_NEVER_EXTRACTABLE: yes, p11.CKA_MODIFIABLE: no, p11.CKA_DERIVE: no,
	}
	cases := []struct {
		ref   provider.KeyRef
		class uint
		want  map[uint][]byte
	}{
		{edRef, p11.CKO_PRIVATE_KEY, map[uint][]byte{
			p11.CKA_SIGN: yes, p11.CKA_SIGN_RECOVER: no, p11.CKA_DECRYPT: no, p11.CKA_UNWRAP: no,
			p11.CKA_KEY_TYPE: ulongBytes(ckkECEdwards),
		}},
		{aesRef, p11.CKO_SECRET_KEY, map[uint][]byte{
			p11.CKA_ENCRYPT: yes, p11.CKA_DECRYPT: yes, p11.CKA_SIGN: no, p11.CKA_VERIFY: no,
			p11.CKA_WRAP: no, p11.CKA_UNWRAP: no, p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_AES), p11.CKA_VALUE_LEN: ulongBytes(32),
		}},
	}
	for _, c := range cases {
		objs := d.objects(t, c.ref, c.class)
		if len(objs) != 1 {
			t.Fatalf("%s: %d objects of class %d with its CKA_ID, want 1", c.ref, len(objs), c.class)
		}
		want := map[uint][]byte{p11.CKA_LABEL: []byte(c.ref.String())}
		for k, v := range secretWant {
			want[k] = v
		}
		for k, v := range c.want {
			want[k] = v
		}
		checkAttrs(t, d, c.ref, objs[0], want)
		_, err := d.ctx.GetAttributeValue(d.sh, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if !rvIs(err, p11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Errorf("%s: reading CKA_VALUE: got %v, want CKR_ATTRIBUTE_SENSITIVE", c.ref, err)
		}
	}
	if n := len(d.objects(t, aesRef, anyClass)); n != 1 {
		t.Errorf("%s: %d objects with its CKA_ID, want 1 (the secret key)", aesRef, n)
	}
	pubs := d.objects(t, edRef, p11.CKO_PUBLIC_KEY)
	if len(pubs) != 1 {
		t.Fatalf("%s: %d public keys, want 1", edRef, len(pubs))
	}
	checkAttrs(t, d, edRef, pubs[0], map[uint][]byte{
		p11.CKA_TOKEN: yes, p11.CKA_PRIVATE: no, p11.CKA_EC_PARAMS: ed25519Params,
		p11.CKA_LABEL: []byte(edRef.String()), p11.CKA_MODIFIABLE: no,
		p11.CKA_ENCRYPT: no, p11.CKA_WRAP: no, p11.CKA_DERIVE: no,
	})
}

// checkAttrs compares attributes of obj with want.
func checkAttrs(t *testing.T, d *direct, ref provider.KeyRef, obj p11.ObjectHandle, want map[uint][]byte) {
	t.Helper()
	for typ, w := range want {
		got, err := d.ctx.GetAttributeValue(d.sh, obj, []*p11.Attribute{p11.NewAttribute(typ, nil)})
		if err != nil {
			t.Errorf("%s: attribute 0x%x: %v", ref, typ, err)
			continue
		}
		if len(got) != 1 || !bytes.Equal(got[0].Value, w) {
			t.Errorf("%s: attribute 0x%x = %x, want %x", ref, typ, got[0].Value, w)
		}
	}
}

// TestRestart: keys survive the provider; a new provider on the same token
// signs and opens with the old handles.
func TestRestart(t *testing.T) {
	tk := newToken(t, "restart")
	edRef := mustRef(t, "ed", 1, provider.Ed25519)
	aesRef := mustRef(t, "aes", 1, provider.AES256GCM)
	p1, err := New(tk.config())
	if err != nil {
		t.Fatal(err)
	}
	ed := generate(t, p1, edRef)
	aes := generate(t, p1, aesRef)
	sealed, err := p1.Seal(t.Context(), aesRef, aes.Handle, []byte("before the restart"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Sign(t.Context(), edRef, ed.Handle, []byte("m")); err == nil {
		t.Error("Sign after Close succeeded")
	} else {
		wantCode(t, "Sign after Close", err, provider.EUNAVAILABLE)
	}
	if err := p1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	p2 := tk.open(t)
	msg := []byte("after the restart")
	sig, err := p2.Sign(t.Context(), edRef, ed.Handle, msg)
	if err != nil {
		t.Fatalf("Sign after restart: %v", err)
	}
	if !ed25519.Verify(ed.PublicKey, msg, sig) {
		t.Error("signature after restart does not verify under the public key from before")
	}
	pt, err := p2.Open(t.Context(), aesRef, aes.Handle, sealed, []byte("aad"))
	if err != nil || string(pt) != "before the restart" {
		t.Errorf("Open after restart = %q, %v", pt, err)
	}
}

// TestGenerateReplaces: Generate again for the same ref (a crash between
// Generate and the core's metadata write) replaces the key: the objects are
// not duplicated and the handle names the new key.
func TestGenerateReplaces(t *testing.T) {
	tk := newToken(t, "replace")
	p := tk.open(t)
	d := tk.openDirect(t)
	for _, a := range []provider.Algorithm{provider.Ed25519, provider.AES256GCM} {
		ref := mustRef(t, "again-"+string(a), 1, a)
		g1 := generate(t, p, ref)
		var sealed []byte
		if a == provider.AES256GCM {
			var err error
			if sealed, err = p.Seal(t.Context(), ref, g1.Handle, []byte("old key"), nil); err != nil {
				t.Fatal(err)
			}
		}
		before := len(d.objects(t, ref, anyClass))
		g2 := generate(t, p, ref)
		if after := len(d.objects(t, ref, anyClass)); after != before {
			t.Errorf("%s: %d objects after the second Generate, want %d", ref, after, before)
		}
		if !bytes.Equal(g1.Handle, g2.Handle) {
			t.Errorf("%s: handle changed across Generate; it is derived from the ref", ref)
		}
		switch a {
		case provider.Ed25519:
			if bytes.Equal(g1.PublicKey, g2.PublicKey) {
				t.Errorf("%s: second Generate kept the key", ref)
			}
			sig, err := p.Sign(t.Context(), ref, g2.Handle, []byte("m"))
			if err != nil || !ed25519.Verify(g2.PublicKey, []byte("m"), sig) {
				t.Errorf("%s: Sign after replacement: %v (or no verify under the new key)", ref, err)
			}
		case provider.AES256GCM:
			_, err := p.Open(t.Context(), ref, g2.Handle, sealed, nil)
			wantCode(t, "Open of a blob sealed under the replaced key", err, provider.EBADMSG)
		}
	}
}

// TestTokenReset: when the sessions or the login vanish behind the pool's
// back, the provider logs in again and calls keep working.
func TestTokenReset(t *testing.T) {
	tk := newToken(t, "reset")
	p := tk.open(t)
	d := tk.openDirect(t)
	edRef := mustRef(t, "ed", 1, provider.Ed25519)
	aesRef := mustRef(t, "aes", 1, provider.AES256GCM)
	ed := generate(t, p, edRef)
	aes := generate(t, p, aesRef)
	works := func(when string) {
		t.Helper()
		sig, err := p.Sign(t.Context(), edRef, ed.Handle, []byte(when))
		if err != nil || !ed25519.Verify(ed.PublicKey, []byte(when), sig) {
			t.Fatalf("Sign %s: %v", when, err)
		}
		sealed, err := p.Seal(t.Context(), aesRef, aes.Handle, []byte(when), nil)
		if err != nil {
			t.Fatalf("Seal %s: %v", when, err)
		}
		if pt, err := p.Open(t.Context(), aesRef, aes.Handle, sealed, nil); err != nil || string(pt) != when {
			t.Fatalf("Open %s: %q, %v", when, pt, err)
		}
		if _, err := p.Generate(t.Context(), mustRef(t, "fresh", 1, provider.Ed25519)); err != nil {
			t.Fatalf("Generate %s: %v", when, err)
		}
	}
	// Fill the pool with several sessions, all of which the resets kill.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := p.Sign(t.Context(), edRef, ed.Handle, fmt.Append(nil, i)); err != nil {
				t.Errorf("Sign: %v", err)
			}
		})
	}
	wg.Wait()
	works("before any reset")

	tp := p.(*tokenProvider)
	gen := tp.pool.gen.Load()
	if err := d.ctx.CloseAllSessions(d.slot); err != nil {
		t.Fatal(err)
	}
	works("after C_CloseAllSessions")
	if got := tp.pool.gen.Load(); got == gen {
		t.Fatalf("pool generation still %d after C_CloseAllSessions: the reset path did not run", got)
	}
	gen = tp.pool.gen.Load()

	sh := d.session(t)
	if err := d.ctx.Logout(sh); err != nil {
		t.Fatal(err)
	}
	works("after C_Logout")
	if got := tp.pool.gen.Load(); got == gen {
		t.Fatalf("pool generation still %d after C_Logout: the re-login path did not run", got)
	}

	if err := d.ctx.Finalize(); err != nil {
		t.Fatal(err)
	}
	works("after C_Finalize")

	if err := d.ctx.Finalize(); err != nil {
		t.Fatal(err)
	}
	if err := d.ctx.Initialize(); err != nil {
		t.Fatal(err)
	}
	works("after C_Finalize and C_Initialize")
}

// TestConcurrentCallers: 16 goroutines share a pool of 2 sessions; every
// result is right. Run under -race.
func TestConcurrentCallers(t *testing.T) {
	tk := newToken(t, "concurrency")
	p := tk.open(t, func(c *Config) { c.PoolSize = 2 })
	edRef := mustRef(t, "ed", 1, provider.Ed25519)
	aesRef := mustRef(t, "aes", 1, provider.AES256GCM)
	ed := generate(t, p, edRef)
	aes := generate(t, p, aesRef)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 8 {
				msg := fmt.Appendf(nil, "worker %d call %d", w, i)
				sig, err := p.Sign(t.Context(), edRef, ed.Handle, msg)
				if err != nil || !ed25519.Verify(ed.PublicKey, msg, sig) {
					t.Errorf("worker %d: Sign: %v (or no verify)", w, err)
					return
				}
				sealed, err := p.Seal(t.Context(), aesRef, aes.Handle, msg, msg)
				if err != nil {
					t.Errorf("worker %d: Seal: %v", w, err)
					return
				}
				pt, err := p.Open(t.Context(), aesRef, aes.Handle, sealed, msg)
				if err != nil || !bytes.Equal(pt, msg) {
					t.Errorf("worker %d: Open: %q, %v", w, pt, err)
					return
				}
			}
			own := mustRef(t, fmt.Sprintf("own-%d", w), 1, provider.Ed25519)
			g, err := p.Generate(t.Context(), own)
			if err != nil {
				t.Errorf("worker %d: Generate: %v", w, err)
				return
			}
			if err := p.Destroy(t.Context(), own, g.Handle); err != nil {
				t.Errorf("worker %d: Destroy: %v", w, err)
			}
			_, err = p.Sign(t.Context(), own, g.Handle, []byte("m"))
			wantCode(t, "Sign after Destroy", err, provider.ENOENT)
		})
	}
	wg.Wait()
}

// TestWaitHonoursContext: a call waiting for a session of an exhausted
// pool returns when its context is cancelled.
func TestWaitHonoursContext(t *testing.T) {
	tk := newToken(t, "wait")
	p := tk.open(t, func(c *Config) { c.PoolSize = 1 })
	ref := mustRef(t, "ed", 1, provider.Ed25519)
	g := generate(t, p, ref)
	tp := p.(*tokenProvider)
	s, err := tp.pool.get(t.Context()) // the only session
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Sign(ctx, ref, g.Handle, []byte("m"))
		errc <- err
	}()
	cancel()
	wantCode(t, "Sign waiting for a session, cancelled", <-errc, provider.EUNAVAILABLE)
	tp.pool.put(s)
	if _, err := p.Sign(t.Context(), ref, g.Handle, []byte("m")); err != nil {
		t.Errorf("Sign once the session is back: %v", err)
	}
}

// TestDestroyedAcrossProviders: a key destroyed by one provider is gone
// for another that had its object handle cached.
func TestDestroyedAcrossProviders(t *testing.T) {
	tk := newToken(t, "destroy")
	p1, p2 := tk.open(t), tk.open(t)
	ref := mustRef(t, "ed", 1, provider.Ed25519)
	g := generate(t, p1, ref)
	if _, err := p2.Sign(t.Context(), ref, g.Handle, []byte("cache it")); err != nil {
		t.Fatal(err)
	}
	if err := p1.Destroy(t.Context(), ref, g.Handle); err != nil {
		t.Fatal(err)
	}
	_, err := p2.Sign(t.Context(), ref, g.Handle, []byte("m"))
	wantCode(t, "Sign with a handle cached before another provider destroyed the key", err, provider.ENOENT)
	if err := p2.Destroy(t.Context(), ref, g.Handle); err != nil {
		t.Errorf("Destroy again from the other provider: %v", err)
	}
}

// TestStaleCachedHandle: on a shared token (Config.SharedToken), a cached
// object handle that has come to name another object (PKCS#11 allows
// handle reuse) is not used: the provider finds its key again.
func TestStaleCachedHandle(t *testing.T) {
	tk := newToken(t, "stale")
	p := tk.open(t)
	tp := p.(*tokenProvider)
	tp.shared = true
	refA, refB := mustRef(t, "a", 1, provider.Ed25519), mustRef(t, "b", 1, provider.Ed25519)
	a, b := generate(t, p, refA), generate(t, p, refB)
	idA, _ := idOf(refA)
	idB, _ := idOf(refB)
	objB, _, ok := tp.objs.get(idB)
	if !ok {
		t.Fatal("Generate did not cache the new key's handle")
	}
	tp.objs.forget(idA)
	_, gen, _ := tp.objs.get(idA)
	tp.objs.put(idA, objB, gen) // A's entry now names B's private key
	sig, err := p.Sign(t.Context(), refA, a.Handle, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(a.PublicKey, []byte("m"), sig) {
		t.Fatal("Sign used the object a stale cache entry named, not the ref's key")
	}
	if ed25519.Verify(b.PublicKey, []byte("m"), sig) {
		t.Fatal("signature verifies under the other key")
	}
	if obj, _, ok := tp.objs.get(idA); !ok || obj == objB {
		t.Errorf("cache entry of %s = %v, %v; want the key found again", refA, obj, ok)
	}
}

package softkey

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

func TestBounds(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	sr := ref(t, "sign", provider.Ed25519)
	sg := generate(t, e, sr)
	ar := ref(t, "seal", provider.XChaCha20Poly1305)
	ag := generate(t, e, ar)

	for _, n := range []int{0, 1, provider.MaxSignMessage} {
		if _, err := e.Sign(ctx, sr, sg.Handle, make([]byte, n)); err != nil {
			t.Errorf("Sign of %d bytes: %v", n, err)
		}
	}
	_, err := e.Sign(ctx, sr, sg.Handle, make([]byte, provider.MaxSignMessage+1))
	wantCode(t, "Sign of MaxSignMessage+1", err, provider.EMSGSIZE)

	for _, n := range []int{0, 1, provider.MaxSealPlaintext} {
		pt := bytes.Repeat([]byte{7}, n)
		sealed, err := e.Seal(ctx, ar, ag.Handle, pt, nil)
		if err != nil {
			t.Fatalf("Seal of %d bytes: %v", n, err)
		}
		got, err := e.Open(ctx, ar, ag.Handle, sealed, nil)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open of %d bytes: err %v, equal %v", n, err, bytes.Equal(got, pt))
		}
	}
	_, err = e.Seal(ctx, ar, ag.Handle, make([]byte, provider.MaxSealPlaintext+1), nil)
	wantCode(t, "Seal of MaxSealPlaintext+1", err, provider.EMSGSIZE)

	for _, n := range []int{0, 1, provider.MaxProviderAAD} {
		aad := make([]byte, n)
		sealed, err := e.Seal(ctx, ar, ag.Handle, []byte("p"), aad)
		if err != nil {
			t.Fatalf("Seal with %d bytes of AAD: %v", n, err)
		}
		if _, err := e.Open(ctx, ar, ag.Handle, sealed, aad); err != nil {
			t.Fatalf("Open with %d bytes of AAD: %v", n, err)
		}
	}
	big := make([]byte, provider.MaxProviderAAD+1)
	_, err = e.Seal(ctx, ar, ag.Handle, []byte("p"), big)
	wantCode(t, "Seal with MaxProviderAAD+1", err, provider.EMSGSIZE)
	_, err = e.Open(ctx, ar, ag.Handle, make([]byte, 40), big)
	wantCode(t, "Open with MaxProviderAAD+1", err, provider.EMSGSIZE)

	// Open at the bound reaches authentication (EBADMSG); over it, EMSGSIZE.
	_, err = e.Open(ctx, ar, ag.Handle, make([]byte, provider.MaxSealed), nil)
	wantCode(t, "Open of MaxSealed", err, provider.EBADMSG)
	_, err = e.Open(ctx, ar, ag.Handle, make([]byte, provider.MaxSealed+1), nil)
	wantCode(t, "Open of MaxSealed+1", err, provider.EMSGSIZE)

	long := make([]byte, provider.MaxHandle+1)
	_, err = e.Sign(ctx, sr, long, nil)
	wantCode(t, "Sign with a handle over MaxHandle", err, provider.EINVAL)
	_, err = e.Seal(ctx, ar, long, nil, nil)
	wantCode(t, "Seal with a handle over MaxHandle", err, provider.EINVAL)
	_, err = e.Open(ctx, ar, long, nil, nil)
	wantCode(t, "Open with a handle over MaxHandle", err, provider.EINVAL)
	wantCode(t, "Destroy with a handle over MaxHandle", e.Destroy(ctx, ar, long), provider.EINVAL)
}

// TestDecryptBounds: Decrypt's inputs at their bounds reach the key (a
// message that is none: EBADMSG), over them EMSGSIZE; an enc of the
// wrong size and a ciphertext shorter than the tag are EBADMSG; all
// before the handle is looked at.
func TestDecryptBounds(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	hr := ref(t, "hpke", provider.HPKEX25519)
	hg := generate(t, e, hr)
	s, err := alg.Default().Lookup(provider.HPKEX25519)
	if err != nil {
		t.Fatal(err)
	}
	info := make([]byte, provider.MaxHPKEInfo)
	aad := make([]byte, provider.MaxAAD)
	enc, ct := hpkeSeal(t, s, hg.PublicKey, info, aad, make([]byte, provider.MaxHPKECiphertext-s.Overhead))
	pt, err := e.Decrypt(ctx, hr, hg.Handle, enc, ct, info, aad)
	if err != nil || len(pt) != provider.MaxHPKECiphertext-s.Overhead {
		t.Fatalf("Decrypt at every bound: %d bytes, %v", len(pt), err)
	}
	long := make([]byte, provider.MaxHandle+1)
	for _, c := range []struct {
		name               string
		h                  provider.Handle
		enc, ct, info, aad []byte
		want               provider.Code
	}{
		{"enc over MaxHPKEEnc", long, make([]byte, provider.MaxHPKEEnc+1), ct, nil, nil, provider.EMSGSIZE},
		{"ciphertext over MaxHPKECiphertext", long, enc, make([]byte, provider.MaxHPKECiphertext+1), nil, nil, provider.EMSGSIZE},
		{"info over MaxHPKEInfo", long, enc, ct, make([]byte, provider.MaxHPKEInfo+1), nil, provider.EMSGSIZE},
		{"AAD over MaxAAD", long, enc, ct, nil, make([]byte, provider.MaxAAD+1), provider.EMSGSIZE},
		{"enc one byte short", long, enc[:len(enc)-1], ct, nil, nil, provider.EBADMSG},
		{"ciphertext shorter than the tag", long, enc, ct[:s.Overhead-1], nil, nil, provider.EBADMSG},
		{"handle over MaxHandle", long, enc, ct, info, aad, provider.EINVAL},
		{"wrong info", hg.Handle, enc, ct, info[1:], aad, provider.EBADMSG},
		{"wrong AAD", hg.Handle, enc, ct, info, aad[1:], provider.EBADMSG},
	} {
		out, err := e.Decrypt(ctx, hr, c.h, c.enc, c.ct, c.info, c.aad)
		wantCode(t, "Decrypt, "+c.name, err, c.want)
		if out != nil {
			t.Errorf("Decrypt, %s: %d bytes out with the error", c.name, len(out))
		}
	}
	// Another use's key: EPERM before the message is looked at.
	sr := ref(t, "sign", provider.Ed25519)
	sg := generate(t, e, sr)
	_, err = e.Decrypt(ctx, sr, sg.Handle, enc, ct, nil, nil)
	wantCode(t, "Decrypt with a signature key", err, provider.EPERM)
	switched := hr
	switched.Use = provider.UseDecrypt
	_, err = e.Seal(ctx, switched, hg.Handle, nil, nil)
	wantCode(t, "Seal with an HPKE handle under a decrypt-use ref", err, provider.EPERM)
}

func TestOpenTampered(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	for _, a := range []provider.Algorithm{provider.XChaCha20Poly1305, provider.ChaCha20Poly1305, provider.AES256GCM} {
		r := ref(t, "t", a)
		g := generate(t, e, r)
		sealed, err := e.Seal(ctx, r, g.Handle, []byte("secret plaintext"), []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		check := func(what string, s, aad []byte) {
			t.Helper()
			pt, err := e.Open(ctx, r, g.Handle, s, aad)
			wantCode(t, string(a)+" "+what, err, provider.EBADMSG)
			if pt != nil {
				t.Errorf("%s %s: Open returned output %q", a, what, pt)
			}
			if err.Error() != "message authentication failed" {
				t.Errorf("%s %s: error %q says more than authentication failed", a, what, err)
			}
		}
		for i := range sealed {
			b := append([]byte(nil), sealed...)
			b[i] ^= 0x40
			check(fmt.Sprintf("byte %d flipped", i), b, []byte("aad"))
		}
		check("empty", nil, []byte("aad"))
		check("truncated", sealed[:len(sealed)-1], []byte("aad"))
		check("extended", append(append([]byte(nil), sealed...), 0), []byte("aad"))
		check("other aad", sealed, []byte("aae"))
		check("no aad", sealed, nil)
	}
}

func TestRefChecks(t *testing.T) {
	e := newEngine(t, func(c *Config) {
		c.Info.Algorithms = []provider.Algorithm{provider.Ed25519, provider.XChaCha20Poly1305}
	})
	ctx := context.Background()

	_, err := e.Generate(ctx, provider.KeyRef{})
	wantCode(t, "zero ref", err, provider.EINVAL)
	_, err = e.Generate(ctx, mkref(t, "a", "b", "c", provider.Ed25519, 1, "other"))
	wantCode(t, "other provider", err, provider.EINVAL)
	_, err = e.Generate(ctx, ref(t, "x", provider.Ed448))
	wantCode(t, "known but not announced", err, provider.ENOTSUP)
	_, err = e.Generate(ctx, ref(t, "x", "rsa-2048"))
	wantCode(t, "unknown algorithm", err, provider.ENOTSUP)
	bad := ref(t, "x", provider.Ed25519)
	bad.Use = provider.UseDecrypt
	_, err = e.Generate(ctx, bad)
	wantCode(t, "wrong use", err, provider.EPERM)

	sr := ref(t, "s", provider.Ed25519)
	sg := generate(t, e, sr)
	ar := ref(t, "a", provider.XChaCha20Poly1305)
	ag := generate(t, e, ar)
	_, err = e.Sign(ctx, ar, ag.Handle, nil)
	wantCode(t, "sign with an AEAD key", err, provider.EPERM)
	_, err = e.Seal(ctx, sr, sg.Handle, nil, nil)
	wantCode(t, "seal with a signing key", err, provider.EPERM)
	_, err = e.Open(ctx, sr, sg.Handle, nil, nil)
	wantCode(t, "open with a signing key", err, provider.EPERM)
}

func TestContextCancelled(t *testing.T) {
	e := newEngine(t)
	sr := ref(t, "s", provider.Ed25519)
	sg := generate(t, e, sr)
	ar := ref(t, "a", provider.XChaCha20Poly1305)
	ag := generate(t, e, ar)
	hr := ref(t, "h", provider.HPKEX25519)
	hg := generate(t, e, hr)
	wk, err := e.NewImportKey(context.Background(), wrapOf(ar, provider.HPKEX25519))
	if err != nil {
		t.Fatal(err)
	}
	wh := wk.Handle
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Info":     func() error { _, err := e.Info(ctx); return err },
		"Generate": func() error { _, err := e.Generate(ctx, ref(t, "n", provider.Ed25519)); return err },
		"Sign":     func() error { _, err := e.Sign(ctx, sr, sg.Handle, nil); return err },
		"Seal":     func() error { _, err := e.Seal(ctx, ar, ag.Handle, nil, nil); return err },
		"Open":     func() error { _, err := e.Open(ctx, ar, ag.Handle, nil, nil); return err },
		"Destroy":  func() error { return e.Destroy(ctx, sr, sg.Handle) },
		"Decrypt": func() error {
			_, err := e.Decrypt(ctx, hr, hg.Handle, make([]byte, 32), make([]byte, 16), nil, nil)
			return err
		},
		"NewImportKey": func() error { _, err := e.NewImportKey(ctx, wrapOf(ar, provider.HPKEX25519)); return err },
		"Import": func() error {
			_, err := e.Import(ctx, ar, wrapOf(ar, provider.HPKEX25519), wh, make([]byte, 32), make([]byte, 48))
			return err
		},
	}
	for name, call := range calls {
		err := call()
		wantCode(t, name, err, provider.EUNAVAILABLE)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: error %q does not wrap context.Canceled", name, err)
		}
	}
	// Nothing was destroyed by the cancelled Destroy.
	if err := use(e, sr, sg.Handle); err != nil {
		t.Errorf("key unusable after a cancelled Destroy: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEngine(t, withCache(3)) // small: forces evictions and unwraps
	ctx := context.Background()
	s, _ := alg.Default().Lookup(provider.Ed25519)
	type key struct {
		r provider.KeyRef
		g provider.Generated
	}
	var keys []key
	for i := 0; i < 6; i++ {
		a := provider.Ed25519
		if i%2 == 1 {
			a = provider.XChaCha20Poly1305
		}
		r := ref(t, fmt.Sprintf("c%d", i), a)
		keys = append(keys, key{r, generate(t, e, r)})
	}
	// One key is destroyed while the others are in use.
	victim := ref(t, "victim", provider.Ed25519)
	vg := generate(t, e, victim)

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				k := keys[(w+i)%len(keys)]
				msg := []byte(fmt.Sprintf("w%d-i%d", w, i))
				if k.r.Use == provider.UseSign {
					sig, err := e.Sign(ctx, k.r, k.g.Handle, msg)
					if err != nil || !s.Verify(k.g.PublicKey, msg, sig) {
						errs <- fmt.Errorf("sign %s: %v", k.r, err)
						return
					}
				} else {
					sealed, err := e.Seal(ctx, k.r, k.g.Handle, msg, msg)
					if err != nil {
						errs <- fmt.Errorf("seal %s: %v", k.r, err)
						return
					}
					pt, err := e.Open(ctx, k.r, k.g.Handle, sealed, msg)
					if err != nil || !bytes.Equal(pt, msg) {
						errs <- fmt.Errorf("open %s: %v", k.r, err)
						return
					}
				}
				_, err := e.Sign(ctx, victim, vg.Handle, msg)
				if c, _ := provider.CodeOf(err); err != nil && c != provider.ENOENT {
					errs <- fmt.Errorf("victim: %v", err)
					return
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.Destroy(ctx, victim, vg.Handle); err != nil {
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantCode(t, "victim after destroy", use(e, victim, vg.Handle), provider.ENOENT)
}

func TestRedaction(t *testing.T) {
	e := newEngine(t, withCache(8))
	var secrets [][]byte
	for _, a := range alg.Default().Names() {
		r := ref(t, "red", a)
		g := generate(t, e, r)
		if err := use(e, r, g.Handle); err != nil {
			t.Fatal(err)
		}
		s, _ := alg.Default().Lookup(a)
		m, err := e.unwrap(r, s, g.Handle)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, m)
	}
	secrets = append(secrets, testKEK(1).Reveal())
	var printed []string
	for _, v := range []any{e, *e, e.cache, e.src, e.imports, e.ring, e.ring.load(), e.ring.load().wrapper(), *e.ring.load().wrapper(), struct{ E Engine }{*e}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
			printed = append(printed, fmt.Sprintf(verb, v))
		}
	}
	e.cache.mu.RLock()
	for _, sl := range e.cache.keys {
		ent := sl.ent
		for _, verb := range []string{"%v", "%+v", "%#v", "%x"} {
			printed = append(printed, fmt.Sprintf(verb, sl), fmt.Sprintf(verb, ent), fmt.Sprintf(verb, *ent))
		}
	}
	e.cache.mu.RUnlock()
	for _, p := range printed {
		for _, s := range secrets {
			if leaks(p, s) {
				t.Fatalf("printed value leaks key material: %.200q", p)
			}
		}
	}
	if got := fmt.Sprintf("%+v", e); got != "softkey(soft)" {
		t.Errorf("engine prints as %q, want %q", got, "softkey(soft)")
	}
}

// leaks reports whether the text p holds secret s raw, in hex, or as fmt
// prints a byte slice.
func leaks(p string, s []byte) bool {
	if len(s) < 8 {
		return false
	}
	dec := strings.Trim(fmt.Sprint(s[:8]), "[]")
	hex8 := fmt.Sprintf("%#x", s[:8])
	return strings.Contains(p, string(s)) ||
		strings.Contains(strings.ToLower(p), hex.EncodeToString(s[:8])) ||
		strings.Contains(p, dec) || strings.Contains(p, hex8)
}

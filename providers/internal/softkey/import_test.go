package softkey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/internal/importkey"
)

// wrapOf is the wrap KeyRef the core makes for an import into r.
func wrapOf(r provider.KeyRef, suite provider.Algorithm) provider.KeyRef {
	return provider.KeyRef{ID: r.ID, Version: 1, Algorithm: suite, Use: provider.UseAsymmetricDecrypt, Provider: r.Provider}
}

// wrapFor gets a wrapping key for r and seals material to it under r's
// import info, as a client does.
func wrapFor(t testing.TB, e *Engine, r provider.KeyRef, suite provider.Algorithm, material []byte) (provider.KeyRef, provider.Handle, []byte, []byte) {
	t.Helper()
	wrap := wrapOf(r, suite)
	g, err := e.NewImportKey(context.Background(), wrap)
	if err != nil {
		t.Fatalf("NewImportKey(%s): %v", wrap, err)
	}
	s, err := alg.Default().Lookup(suite)
	if err != nil {
		t.Fatal(err)
	}
	enc, ct := hpkeSeal(t, s, g.PublicKey, provider.ImportInfo(r.ID, r.Algorithm), nil, material)
	return wrap, g.Handle, enc, ct
}

func ed25519PKCS8(t testing.TB) (ed25519.PublicKey, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pub, der
}

// TestImport: imported material becomes a key version like a generated
// one (the same handle format, bound to its ref, cached, and it survives
// a cold cache), with the material's own public key.
func TestImport(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	pub, der := ed25519PKCS8(t)
	r := ref(t, "imported", provider.Ed25519)
	wrap, wh, enc, ct := wrapFor(t, e, r, provider.HPKEMLKEM768X25519, der)
	g, err := e.Import(ctx, r, wrap, wh, enc, ct)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if !bytes.Equal(g.PublicKey, pub) {
		t.Fatal("Import returned another public key than the imported key's")
	}
	if !bytes.HasPrefix(g.Handle, []byte(HandleMagic)) || len(g.Handle) != HandleOverhead+ed25519.SeedSize {
		t.Fatalf("handle of %d bytes, want %q and %d", len(g.Handle), HandleMagic, HandleOverhead+ed25519.SeedSize)
	}
	s, _ := alg.Default().Lookup(provider.Ed25519)
	m, err := e.unwrap(r, s, g.Handle)
	if err != nil {
		t.Fatalf("unwrap of the imported handle: %v", err)
	}
	defer clear(m)
	// A second engine with the same KEK and an empty cache signs with it.
	cold := newEngine(t)
	msg := []byte("signed by an imported key")
	for _, eng := range []*Engine{e, cold} {
		sig, err := eng.Sign(ctx, r, g.Handle, msg)
		if err != nil || !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("Sign with the imported key: %v; want a signature valid under the imported public key", err)
		}
	}
	other := r
	other.Version = 2
	_, err = e.Sign(ctx, other, g.Handle, msg)
	wantCode(t, "Sign with the imported handle under another version", err, provider.EIO)
	if e.ImportKeys() != 0 {
		t.Errorf("engine holds %d import keys after the import; want 0", e.ImportKeys())
	}
}

// TestImportOneTime: the wrapping key is spent by Import, whatever the
// outcome; a second Import with it is ENOENT.
func TestImportOneTime(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	key := bytes.Repeat([]byte{7}, 32)
	r := ref(t, "aes", provider.AES256GCM)
	mldsa := ref(t, "mldsa", provider.MLDSA44)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		ref  provider.KeyRef
		mat  []byte
		edit func(enc, ct []byte) ([]byte, []byte)
		want provider.Code // 0: success
	}{
		{"success", ctx, r, key, nil, 0},
		{"wrong size", ctx, r, key[:16], nil, provider.EINVAL},
		{"PKCS #8 for an AEAD", ctx, r, func() []byte { _, d := ed25519PKCS8(t); return d }(), nil, provider.EINVAL},
		{"tampered ciphertext", ctx, r, key, func(enc, ct []byte) ([]byte, []byte) { ct[3] ^= 1; return enc, ct }, provider.EBADMSG},
		{"tampered enc", ctx, r, key, func(enc, ct []byte) ([]byte, []byte) { enc[0] ^= 1; return enc, ct }, provider.EBADMSG},
		{"short enc", ctx, r, key, func(enc, ct []byte) ([]byte, []byte) { return enc[:10], ct }, provider.EBADMSG},
		{"oversize wrap", ctx, r, key, func(enc, _ []byte) ([]byte, []byte) {
			return enc, make([]byte, provider.MaxImportWrapped+1)
		}, provider.EMSGSIZE},
		{"cancelled", cancelled, r, key, nil, provider.EUNAVAILABLE},
		{"not importable", ctx, mldsa, make([]byte, 32), nil, provider.ENOTSUP},
	} {
		t.Run(c.name, func(t *testing.T) {
			wrap, wh, enc, ct := wrapFor(t, e, c.ref, provider.HPKEX25519, c.mat)
			if c.edit != nil {
				enc, ct = c.edit(enc, ct)
			}
			g, err := e.Import(c.ctx, c.ref, wrap, wh, enc, ct)
			if c.want == 0 {
				if err != nil {
					t.Fatalf("Import: %v", err)
				}
			} else {
				wantCode(t, "Import", err, c.want)
				if len(g.Handle) != 0 || len(g.PublicKey) != 0 {
					t.Fatal("a failed Import returned a handle or public key")
				}
			}
			_, err = e.Import(ctx, c.ref, wrap, wh, enc, ct)
			wantCode(t, "Import again", err, provider.ENOENT)
		})
	}
}

// TestImportRefChecks: an import into a ref the engine refuses (another
// provider, an algorithm it does not announce, a wrong use) fails as
// Generate would, and spends the wrapping key; the wrapping suite need not
// be announced.
func TestImportRefChecks(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, func(c *Config) {
		c.Info.Algorithms = []provider.Algorithm{provider.Ed25519, provider.AES256GCM}
	})
	key := bytes.Repeat([]byte{9}, 32)
	good := ref(t, "aes", provider.AES256GCM)
	// hpke-x25519 is not announced, yet it wraps.
	wrap, wh, enc, ct := wrapFor(t, e, good, provider.HPKEX25519, key)
	if _, err := e.Import(ctx, good, wrap, wh, enc, ct); err != nil {
		t.Fatalf("Import through an unannounced wrapping suite: %v", err)
	}
	chacha := ref(t, "chacha", provider.ChaCha20Poly1305)
	wrongUse := good
	wrongUse.Use = provider.UseMAC
	otherProv := mkref(t, "app", "test", "aes", provider.AES256GCM, 1, "other")
	for _, c := range []struct {
		name string
		ref  provider.KeyRef
		want provider.Code
	}{
		{"unannounced algorithm", chacha, provider.ENOTSUP},
		{"wrong use", wrongUse, provider.EPERM},
		{"another provider", otherProv, provider.EINVAL},
		{"invalid ref", provider.KeyRef{}, provider.EINVAL},
	} {
		wrap, wh, enc, ct := wrapFor(t, e, good, provider.HPKEX25519, key)
		_, err := e.Import(ctx, c.ref, wrap, wh, enc, ct)
		wantCode(t, "Import, "+c.name, err, c.want)
		_, err = e.Import(ctx, good, wrap, wh, enc, ct)
		wantCode(t, "Import after "+c.name, err, provider.ENOENT)
	}
	_, err := e.NewImportKey(ctx, wrapOf(good, provider.AES256GCM))
	wantCode(t, "NewImportKey of an AEAD", err, provider.EINVAL)
	_, err = e.NewImportKey(ctx, wrapOf(otherProv, provider.HPKEX25519))
	wantCode(t, "NewImportKey for another provider", err, provider.EINVAL)
}

// TestImportHandleIsNoKey: an import wrapping key's handle is no key
// version's: Decrypt and the other operations refuse it; Destroy forgets
// it (for its own wrap ref only) and always succeeds.
func TestImportHandleIsNoKey(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	r := ref(t, "aes", provider.AES256GCM)
	wrap, wh, enc, ct := wrapFor(t, e, r, provider.HPKEX25519, bytes.Repeat([]byte{1}, 32))
	if !importkey.IsHandle(wh) {
		t.Fatalf("import handle %x is not a KSI1 handle", wh)
	}
	_, err := e.Decrypt(ctx, wrap, wh, enc, ct, provider.ImportInfo(r.ID, r.Algorithm), nil)
	wantCode(t, "Decrypt with the import wrapping key", err, provider.EIO)
	other := wrap
	other.ID = ref(t, "other", provider.AES256GCM).ID
	if err := e.Destroy(ctx, other, wh); err != nil {
		t.Fatalf("Destroy with another wrap ref: %v", err)
	}
	if e.ImportKeys() != 1 {
		t.Fatal("Destroy with another wrap ref forgot the key")
	}
	for i := 0; i < 2; i++ {
		if err := e.Destroy(ctx, wrap, wh); err != nil {
			t.Fatalf("Destroy #%d of the import handle: %v", i+1, err)
		}
	}
	if e.ImportKeys() != 0 {
		t.Fatal("Destroy did not forget the import key")
	}
	_, err = e.Import(ctx, r, wrap, wh, enc, ct)
	wantCode(t, "Import after Destroy", err, provider.ENOENT)
}

// TestImportEveryImportable: every importable algorithm imports from its
// documented format and works; the others are ENOTSUP.
func TestImportEveryImportable(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	for _, a := range alg.Default().Names() {
		s, _ := alg.Default().Lookup(a)
		r := ref(t, "every", a)
		var material []byte
		switch {
		case !s.Importable():
			material = make([]byte, 32)
		case s.Use == provider.UseDecrypt || s.Use == provider.UseMAC:
			material = bytes.Repeat([]byte{0x5a}, s.SecretSize)
		default:
			material = pkcs8For(t, a)
			if material == nil {
				continue // RSA: TestImport in conformance covers it; keygen is slow here
			}
		}
		wrap, wh, enc, ct := wrapFor(t, e, r, provider.HPKEX25519, material)
		g, err := e.Import(ctx, r, wrap, wh, enc, ct)
		if !s.Importable() {
			wantCode(t, "Import of "+string(a), err, provider.ENOTSUP)
			continue
		}
		if err != nil {
			t.Fatalf("Import of %s: %v", a, err)
		}
		if err := use(e, r, g.Handle); err != nil {
			t.Errorf("%s imported: %v", a, err)
		}
	}
}

// pkcs8For returns a fresh PKCS #8 key for an importable asymmetric
// algorithm but RSA (nil).
func pkcs8For(t testing.TB, a provider.Algorithm) []byte {
	t.Helper()
	var k any
	switch a {
	case provider.Ed25519, provider.Ed25519ph:
		_, der := ed25519PKCS8(t)
		return der
	case provider.ECDSAP256, provider.HPKEP256:
		var err error
		if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	case provider.ECDSAP384:
		var err error
		if k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	case provider.HPKEX25519:
		s, _ := alg.Default().Lookup(a)
		kem, _, _, err := s.Suite()
		if err != nil {
			t.Fatal(err)
		}
		priv, err := kem.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := priv.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		// PKCS #8 of an X25519 key: crypto/ecdh's.
		ek, err := ecdhX25519(raw)
		if err != nil {
			t.Fatal(err)
		}
		k = ek
	default:
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestConcurrentImports: of many Imports with one wrapping key at once,
// exactly one succeeds; the others are ENOENT.
func TestConcurrentImports(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	r := ref(t, "race", provider.HMACSHA256)
	wrap, wh, enc, ct := wrapFor(t, e, r, provider.HPKEX25519, bytes.Repeat([]byte{3}, 32))
	var wg sync.WaitGroup
	var ok, notFound atomic.Int32
	for i := 0; i < 16; i++ {
		wg.Go(func() {
			_, err := e.Import(ctx, r, wrap, wh, enc, ct)
			switch code, _ := provider.CodeOf(err); {
			case err == nil:
				ok.Add(1)
			case code == provider.ENOENT:
				notFound.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || notFound.Load() != 15 {
		t.Fatalf("%d Imports succeeded and %d were ENOENT; want 1 and 15", ok.Load(), notFound.Load())
	}
}

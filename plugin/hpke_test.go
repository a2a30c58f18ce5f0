package plugin

import (
	"bytes"
	"context"
	"crypto/hpke"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// hpkeFake is a fake with real HPKE: Decrypt opens messages sent to one
// X25519 key (fixed material), NewImportKey makes wrapping keys of any
// suite (the test's fixed material too) and Import opens material sealed
// to one and converts it as core/alg does. It records what each call was
// given; plain, when set, replaces Decrypt's answer (to send replies
// outside the contract).
type hpkeFake struct {
	*fakeProvider
	dec   *alg.Decrypter
	plain func(ct []byte) ([]byte, error)
	// wrapPub and wrapHandle, when set, replace NewImportKey's reply;
	// imported replaces Import's.
	wrapPub, wrapHandle []byte
	imported            *provider.Generated

	mu       sync.Mutex
	wraps    map[string]*alg.Decrypter
	lastDec  [4][]byte // enc, ciphertext, info, aad of the last Decrypt
	material []byte    // what the last Import unwrapped
	calls    atomic.Int32
	destroys []provider.KeyRef
}

func newHPKEFake(t testing.TB) *hpkeFake {
	t.Helper()
	dec := decrypterOf(t, provider.HPKEX25519, 1)
	f := &hpkeFake{fakeProvider: newFake(nil), dec: dec, wraps: map[string]*alg.Decrypter{}}
	f.info.Algorithms = append(f.info.Algorithms, provider.HPKEX25519)
	return f
}

// decrypterOf returns the key of algorithm a made from 32 bytes of b.
func decrypterOf(t testing.TB, a provider.Algorithm, b byte) *alg.Decrypter {
	t.Helper()
	spec, err := alg.Default().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	m, err := spec.NewMaterial(bytes.Repeat([]byte{b}, spec.RandomSize), false)
	if err != nil {
		t.Fatal(err)
	}
	d, err := spec.NewDecrypter(m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *hpkeFake) Decrypt(_ context.Context, _ provider.KeyRef, _ provider.Handle, enc, ct, info, aad []byte) ([]byte, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.lastDec = [4][]byte{bytes.Clone(enc), bytes.Clone(ct), bytes.Clone(info), bytes.Clone(aad)}
	f.mu.Unlock()
	if f.plain != nil {
		return f.plain(ct)
	}
	return f.dec.Decrypt(enc, ct, info, aad)
}

func (f *hpkeFake) NewImportKey(_ context.Context, wrap provider.KeyRef) (provider.Generated, error) {
	f.calls.Add(1)
	if f.wrapPub != nil || f.wrapHandle != nil {
		return provider.Generated{PublicKey: f.wrapPub, Handle: f.wrapHandle}, nil
	}
	spec, err := alg.Default().Lookup(wrap.Algorithm)
	if err != nil {
		return provider.Generated{}, err
	}
	m, err := spec.NewMaterial(bytes.Repeat([]byte{7}, spec.RandomSize), false)
	if err != nil {
		return provider.Generated{}, err
	}
	d, err := spec.NewDecrypter(m)
	if err != nil {
		return provider.Generated{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h := "KSI1" + wrap.String() + string(rune('a'+len(f.wraps)))
	f.wraps[h] = d
	return provider.Generated{PublicKey: d.PublicKey(), Handle: provider.Handle(h)}, nil
}

func (f *hpkeFake) Import(_ context.Context, ref, _ provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	f.calls.Add(1)
	if f.imported != nil {
		return *f.imported, nil
	}
	f.mu.Lock()
	d, ok := f.wraps[string(wh)]
	delete(f.wraps, string(wh))
	f.mu.Unlock()
	if !ok {
		return provider.Generated{}, provider.Errorf(provider.ENOENT, "no such import wrapping key")
	}
	pt, err := d.Decrypt(enc, wrapped, provider.ImportInfo(ref.ID, ref.Algorithm), nil)
	if err != nil {
		return provider.Generated{}, err
	}
	spec, err := alg.Default().Lookup(ref.Algorithm)
	if err != nil {
		return provider.Generated{}, err
	}
	material, pub, err := spec.ImportMaterial(pt)
	if err != nil {
		return provider.Generated{}, err
	}
	f.mu.Lock()
	f.material = material
	f.mu.Unlock()
	return provider.Generated{PublicKey: pub, Handle: provider.Handle("imported " + ref.String())}, nil
}

func (f *hpkeFake) Destroy(_ context.Context, ref provider.KeyRef, h provider.Handle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroys = append(f.destroys, ref)
	delete(f.wraps, string(h))
	return nil
}

// hpkeSeal seals msg with crypto/hpke (base mode) to pub, a key of the
// suite of algorithm a.
func hpkeSeal(t testing.TB, a provider.Algorithm, pub, info, aad, msg []byte) (enc, ct []byte) {
	t.Helper()
	spec, err := alg.Default().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	kem, kdf, aead, err := spec.Suite()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	enc, s, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		t.Fatal(err)
	}
	ct, err = s.Seal(aad, msg)
	if err != nil {
		t.Fatal(err)
	}
	return enc, ct
}

// hpkeRef returns a valid ref of the X25519 HPKE key of provider "fake".
func hpkeRef(t testing.TB) provider.KeyRef {
	t.Helper()
	ref := signRef(t, "fake")
	ref.Algorithm, ref.Use = provider.HPKEX25519, provider.UseAsymmetricDecrypt
	return ref
}

// wrapRefOf returns the import wrapping key ref the core makes for the
// key of ref: version 1, the hybrid suite (not announced by the fake).
func wrapRefOf(ref provider.KeyRef) provider.KeyRef {
	return provider.KeyRef{ID: ref.ID, Version: 1, Algorithm: provider.HPKEMLKEM768X25519, Use: provider.UseAsymmetricDecrypt, Provider: ref.Provider}
}

// TestHPKETagSize: the wire's reply check of Decrypt (a plaintext of the
// ciphertext less hpkeTagSize) holds for every HPKE algorithm of the
// registry.
func TestHPKETagSize(t *testing.T) {
	n := 0
	for _, a := range alg.Default().Names() {
		spec, err := alg.Default().Lookup(a)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Use == provider.UseAsymmetricDecrypt {
			n++
			if spec.Overhead != hpkeTagSize {
				t.Errorf("%s: tag of %d bytes, the wire checks replies for %d", a, spec.Overhead, hpkeTagSize)
			}
		}
	}
	if n == 0 {
		t.Fatal("the registry has no HPKE algorithm")
	}
}

// TestDecryptAcrossTheWire: HPKE messages sealed with crypto/hpke cross
// the wire whole (empty and largest plaintext, info and AAD) and open;
// the largest request the contract allows reaches the provider; over a
// bound is EMSGSIZE and a handle over its bound EINVAL without a call; a
// tampered message is the provider's EBADMSG; a reply that is not the
// ciphertext less its tag is EIO.
func TestDecryptAcrossTheWire(t *testing.T) {
	t.Parallel()
	f := newHPKEFake(t)
	p := TestClient(t, f)
	ctx := t.Context()
	ref := hpkeRef(t)
	h := provider.Handle("h")
	for _, tc := range []struct{ pt, info, aad int }{
		{0, 0, 0}, {1, 1, 1}, {provider.MaxHPKECiphertext - hpkeTagSize, provider.MaxHPKEInfo, provider.MaxAAD},
	} {
		msg := bytes.Repeat([]byte{'p'}, tc.pt)
		info, aad := bytes.Repeat([]byte{'i'}, tc.info), bytes.Repeat([]byte{'a'}, tc.aad)
		enc, ct := hpkeSeal(t, provider.HPKEX25519, f.dec.PublicKey(), info, aad, msg)
		out, err := p.Decrypt(ctx, ref, h, enc, ct, info, aad)
		if err != nil || !bytes.Equal(out, msg) || out == nil {
			t.Errorf("Decrypt of %d bytes (info %d, aad %d) = %d bytes, %v", tc.pt, tc.info, tc.aad, len(out), err)
		}
		f.mu.Lock()
		got := f.lastDec
		f.mu.Unlock()
		for i, want := range [][]byte{enc, ct, info, aad} {
			if !bytes.Equal(got[i], want) {
				t.Errorf("the provider was given %d bytes of %s, want %d", len(got[i]), []string{"enc", "ciphertext", "info", "aad"}[i], len(want))
			}
		}
	}
	enc, ct := hpkeSeal(t, provider.HPKEX25519, f.dec.PublicKey(), []byte("i"), []byte("a"), []byte("secret message"))
	bad := bytes.Clone(ct)
	bad[0] ^= 1
	_, err := p.Decrypt(ctx, ref, h, enc, bad, []byte("i"), []byte("a"))
	checkCode(t, err, provider.EBADMSG)
	_, err = p.Decrypt(ctx, ref, h, enc, ct, []byte("other info"), []byte("a"))
	checkCode(t, err, provider.EBADMSG)

	// Refused before the call.
	before := f.calls.Load()
	big := func(n int) []byte { return make([]byte, n) }
	for name, tc := range map[string]struct {
		ref                   provider.KeyRef
		h, enc, ct, info, aad []byte
		code                  provider.Code
	}{
		"enc over MaxHPKEEnc":               {ref, h, big(provider.MaxHPKEEnc + 1), ct, nil, nil, provider.EMSGSIZE},
		"ciphertext over MaxHPKECiphertext": {ref, h, enc, big(provider.MaxHPKECiphertext + 1), nil, nil, provider.EMSGSIZE},
		"info over MaxHPKEInfo":             {ref, h, enc, ct, big(provider.MaxHPKEInfo + 1), nil, provider.EMSGSIZE},
		"aad over MaxAAD":                   {ref, h, enc, ct, nil, big(provider.MaxAAD + 1), provider.EMSGSIZE},
		"handle over MaxHandle":             {ref, big(provider.MaxHandle + 1), enc, ct, nil, nil, provider.EINVAL},
		"unannounced algorithm":             {wrapRefOf(ref), h, enc, ct, nil, nil, provider.ENOTSUP},
		"bad ref":                           {provider.KeyRef{}, h, enc, ct, nil, nil, provider.EINVAL},
	} {
		out, err := p.Decrypt(ctx, tc.ref, tc.h, tc.enc, tc.ct, tc.info, tc.aad)
		if !errorsIsCode(err, tc.code) || out != nil {
			t.Errorf("Decrypt, %s: %d bytes, %v; want %v", name, len(out), err, tc.code)
		}
	}
	if n := f.calls.Load() - before; n != 0 {
		t.Errorf("%d refused Decrypt calls reached the provider", n)
	}

	// The largest request of all reaches the provider (whose answer is
	// then the expected EBADMSG: the enc is no X25519 key's).
	_, err = p.Decrypt(ctx, ref, big(provider.MaxHandle), big(provider.MaxHPKEEnc), big(provider.MaxHPKECiphertext), big(provider.MaxHPKEInfo), big(provider.MaxAAD))
	checkCode(t, err, provider.EBADMSG)
	if n := f.calls.Load() - before; n != 1 {
		t.Errorf("the largest Decrypt request made %d provider calls, want 1", n)
	}

	// Replies outside the contract.
	for name, plain := range map[string]func(ct []byte) ([]byte, error){
		"one byte long":   func(ct []byte) ([]byte, error) { return make([]byte, len(ct)-hpkeTagSize+1), nil },
		"one byte short":  func(ct []byte) ([]byte, error) { return make([]byte, len(ct)-hpkeTagSize-1), nil },
		"the ciphertext":  func(ct []byte) ([]byte, error) { return bytes.Clone(ct), nil },
		"nothing":         func([]byte) ([]byte, error) { return nil, nil },
		"success, no tag": func([]byte) ([]byte, error) { return nil, nil },
	} {
		g := newHPKEFake(t)
		g.plain = plain
		c, m := ct, []byte("i")
		if name == "success, no tag" {
			c = ct[:hpkeTagSize-1]
		}
		out, err := TestClient(t, g).Decrypt(ctx, ref, h, enc, c, m, []byte("a"))
		if !errorsIsCode(err, provider.EIO) || out != nil {
			t.Errorf("a Decrypt reply of %s: %d bytes, %v; want EIO", name, len(out), err)
		}
	}
	// An empty plaintext for a bare tag is within the contract.
	g := newHPKEFake(t)
	g.plain = func([]byte) ([]byte, error) { return nil, nil }
	if out, err := TestClient(t, g).Decrypt(ctx, ref, h, enc, ct[:hpkeTagSize], nil, nil); err != nil || out == nil || len(out) != 0 {
		t.Errorf("an empty plaintext reply for a %d-byte ciphertext: %v (nil %v), %v", hpkeTagSize, out, out == nil, err)
	}
}

// TestImportAcrossTheWire: a wrapping key of a suite the plugin does not
// announce is made and answered with its public key; material sealed to
// it with crypto/hpke under provider.ImportInfo imports, reaching the
// provider whole; a second Import with the handle is the provider's
// ENOENT; Destroy of a wrapping key reaches the provider; over-bound
// inputs and bad refs are refused before the call; replies outside the
// bounds are EIO.
func TestImportAcrossTheWire(t *testing.T) {
	t.Parallel()
	f := newHPKEFake(t)
	p := TestClient(t, f)
	ctx := t.Context()
	ref := signRef(t, "fake")
	ref.Algorithm, ref.Use = provider.AES256GCM, provider.UseDecrypt
	wrap := wrapRefOf(ref)
	w, err := p.NewImportKey(ctx, wrap)
	if err != nil {
		t.Fatalf("NewImportKey of an unannounced suite: %v", err)
	}
	if want := decrypterOf(t, provider.HPKEMLKEM768X25519, 7).PublicKey(); !bytes.Equal(w.PublicKey, want) {
		t.Fatalf("NewImportKey's public key is %d bytes, not the provider's %d", len(w.PublicKey), len(want))
	}
	key := bytes.Repeat([]byte{0x42}, 32)
	enc, wrapped := hpkeSeal(t, provider.HPKEMLKEM768X25519, w.PublicKey, provider.ImportInfo(ref.ID, ref.Algorithm), nil, key)
	g, err := p.Import(ctx, ref, wrap, w.Handle, enc, wrapped)
	if err != nil || string(g.Handle) != "imported "+ref.String() || len(g.PublicKey) != 0 {
		t.Fatalf("Import = %+v, %v", g, err)
	}
	f.mu.Lock()
	got := bytes.Clone(f.material)
	f.mu.Unlock()
	if !bytes.Equal(got, key) {
		t.Error("the provider unwrapped other material than the test wrapped")
	}
	_, err = p.Import(ctx, ref, wrap, w.Handle, enc, wrapped)
	checkCode(t, err, provider.ENOENT)
	// Material wrapped for another key does not open: the provider's
	// EBADMSG crosses.
	w2, err := p.NewImportKey(ctx, wrap)
	if err != nil {
		t.Fatal(err)
	}
	other := ref
	other.ID = mustKeyID(t, "app/test/other")
	enc2, wrapped2 := hpkeSeal(t, provider.HPKEMLKEM768X25519, w2.PublicKey, provider.ImportInfo(other.ID, ref.Algorithm), nil, key)
	_, err = p.Import(ctx, ref, wrap, w2.Handle, enc2, wrapped2)
	checkCode(t, err, provider.EBADMSG)
	// Destroy of a wrapping key (of an unannounced suite) reaches the
	// provider.
	w3, err := p.NewImportKey(ctx, wrap)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Destroy(ctx, wrap, w3.Handle); err != nil {
		t.Fatalf("Destroy of a wrapping key: %v", err)
	}
	f.mu.Lock()
	destroyed := len(f.destroys) == 1 && f.destroys[0] == wrap
	f.mu.Unlock()
	if !destroyed {
		t.Error("Destroy of the wrapping key did not reach the provider")
	}

	// Refused before the call.
	before := f.calls.Load()
	big := func(n int) []byte { return make([]byte, n) }
	badWrap := wrap
	badWrap.Version = 0
	unannounced := ref
	unannounced.Algorithm = provider.ChaCha20Poly1305
	for name, tc := range map[string]struct {
		ref, wrap        provider.KeyRef
		wh, enc, wrapped []byte
		code             provider.Code
	}{
		"enc over MaxHPKEEnc":           {ref, wrap, w.Handle, big(provider.MaxHPKEEnc + 1), wrapped, provider.EMSGSIZE},
		"wrapped over MaxImportWrapped": {ref, wrap, w.Handle, enc, big(provider.MaxImportWrapped + 1), provider.EMSGSIZE},
		"wrap handle over MaxHandle":    {ref, wrap, big(provider.MaxHandle + 1), enc, wrapped, provider.EINVAL},
		"bad wrap ref":                  {ref, badWrap, w.Handle, enc, wrapped, provider.EINVAL},
		"bad ref":                       {provider.KeyRef{}, wrap, w.Handle, enc, wrapped, provider.EINVAL},
		"unannounced algorithm to make": {unannounced, wrap, w.Handle, enc, wrapped, provider.ENOTSUP},
	} {
		g, err := p.Import(ctx, tc.ref, tc.wrap, tc.wh, tc.enc, tc.wrapped)
		if !errorsIsCode(err, tc.code) || g.Handle != nil {
			t.Errorf("Import, %s: %+v, %v; want %v", name, g, err, tc.code)
		}
	}
	if _, err := p.NewImportKey(ctx, badWrap); !errorsIsCode(err, provider.EINVAL) {
		t.Errorf("NewImportKey of a bad ref: %v, want EINVAL", err)
	}
	if n := f.calls.Load() - before; n != 0 {
		t.Errorf("%d refused calls reached the provider", n)
	}
	// The largest Import request reaches the provider (which then has
	// no such wrapping key).
	_, err = p.Import(ctx, ref, wrap, big(provider.MaxHandle), big(provider.MaxHPKEEnc), big(provider.MaxImportWrapped))
	checkCode(t, err, provider.ENOENT)

	// Replies outside the bounds.
	for name, r := range map[string][2][]byte{
		"no public key":         {nil, []byte("h")},
		"public key over bound": {big(provider.MaxPublicKey + 1), []byte("h")},
		"no handle":             {big(32), nil},
		"handle over bound":     {big(32), big(provider.MaxHandle + 1)},
	} {
		g := newHPKEFake(t)
		g.wrapPub, g.wrapHandle = r[0], r[1]
		if w, err := TestClient(t, g).NewImportKey(ctx, wrap); !errorsIsCode(err, provider.EIO) || w.Handle != nil {
			t.Errorf("a NewImportKey reply with %s: %+v, %v; want EIO", name, w, err)
		}
	}
	for name, r := range map[string]provider.Generated{
		"no handle":             {},
		"handle over bound":     {Handle: big(provider.MaxHandle + 1)},
		"public key over bound": {PublicKey: big(provider.MaxPublicKey + 1), Handle: []byte("h")},
	} {
		g := newHPKEFake(t)
		g.imported = &r
		if out, err := TestClient(t, g).Import(ctx, ref, wrap, []byte("h"), enc, wrapped); !errorsIsCode(err, provider.EIO) || out.Handle != nil {
			t.Errorf("an Import reply with %s: %+v, %v; want EIO", name, out, err)
		}
	}
	atBounds := newHPKEFake(t)
	atBounds.imported = &provider.Generated{PublicKey: big(provider.MaxPublicKey), Handle: big(provider.MaxHandle)}
	if out, err := TestClient(t, atBounds).Import(ctx, ref, wrap, []byte("h"), enc, wrapped); err != nil || len(out.Handle) != provider.MaxHandle {
		t.Errorf("an Import reply at the bounds: %v", err)
	}
}

// mustKeyID parses a key ID.
func mustKeyID(t testing.TB, s string) provider.KeyID {
	t.Helper()
	id, err := provider.ParseKeyID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestServerChecksHPKERequests calls the server adapter directly, as a
// buggy or malicious client could: Decrypt, NewImportKey and Import with
// bad refs or over-bound inputs are refused with the right reason before
// the provider sees them.
func TestServerChecksHPKERequests(t *testing.T) {
	f := newHPKEFake(t)
	s := &server{p: f}
	ctx := t.Context()
	ref := refToWire(hpkeRef(t))
	wrap := refToWire(wrapRefOf(hpkeRef(t)))
	big := func(n int) []byte { return make([]byte, n) }
	enc := big(32)
	for _, tc := range []struct {
		name string
		call func() error
		code provider.Code
	}{
		{"decrypt without ref", func() error { _, err := s.Decrypt(ctx, &providerpb.DecryptRequest{Enc: enc}); return err }, provider.EINVAL},
		{"decrypt use 5", func() error {
			bad := refToWire(hpkeRef(t))
			bad.Use = 5
			_, err := s.Decrypt(ctx, &providerpb.DecryptRequest{Ref: bad, Enc: enc})
			return err
		}, provider.EINVAL},
		{"decrypt enc over bound", func() error {
			_, err := s.Decrypt(ctx, &providerpb.DecryptRequest{Ref: ref, Enc: big(provider.MaxHPKEEnc + 1)})
			return err
		}, provider.EMSGSIZE},
		{"decrypt ciphertext over bound", func() error {
			_, err := s.Decrypt(ctx, &providerpb.DecryptRequest{Ref: ref, Enc: enc, Ciphertext: big(provider.MaxHPKECiphertext + 1)})
			return err
		}, provider.EMSGSIZE},
		{"decrypt info over bound", func() error {
			_, err := s.Decrypt(ctx, &providerpb.DecryptRequest{Ref: ref, Enc: enc, Info: big(provider.MaxHPKEInfo + 1)})
			return err
		}, provider.EMSGSIZE},
		{"decrypt aad over bound", func() error {
			_, err := s.Decrypt(ctx, &providerpb.DecryptRequest{Ref: ref, Enc: enc, Aad: big(provider.MaxAAD + 1)})
			return err
		}, provider.EMSGSIZE},
		{"decrypt handle over bound", func() error {
			_, err := s.Decrypt(ctx, &providerpb.DecryptRequest{Ref: ref, Handle: big(provider.MaxHandle + 1), Enc: enc})
			return err
		}, provider.EINVAL},
		{"new import key without ref", func() error { _, err := s.NewImportKey(ctx, &providerpb.GenerateRequest{}); return err }, provider.EINVAL},
		{"new import key bad ref", func() error {
			_, err := s.NewImportKey(ctx, &providerpb.GenerateRequest{Ref: &providerpb.KeyRef{KeyId: "app/p/n"}})
			return err
		}, provider.EINVAL},
		{"import without ref", func() error { _, err := s.Import(ctx, &providerpb.ImportRequest{Wrap: wrap}); return err }, provider.EINVAL},
		{"import without wrap ref", func() error { _, err := s.Import(ctx, &providerpb.ImportRequest{Ref: ref}); return err }, provider.EINVAL},
		{"import enc over bound", func() error {
			_, err := s.Import(ctx, &providerpb.ImportRequest{Ref: ref, Wrap: wrap, WrapHandle: []byte("h"), Enc: big(provider.MaxHPKEEnc + 1)})
			return err
		}, provider.EMSGSIZE},
		{"import wrapped over bound", func() error {
			_, err := s.Import(ctx, &providerpb.ImportRequest{Ref: ref, Wrap: wrap, WrapHandle: []byte("h"), Wrapped: big(provider.MaxImportWrapped + 1)})
			return err
		}, provider.EMSGSIZE},
		{"import wrap handle over bound", func() error {
			_, err := s.Import(ctx, &providerpb.ImportRequest{Ref: ref, Wrap: wrap, WrapHandle: big(provider.MaxHandle + 1)})
			return err
		}, provider.EINVAL},
	} {
		if err := rpcerr.FromStatus(tc.call()); !errorsIsCode(err, tc.code) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	if n := f.calls.Load(); n != 0 {
		t.Errorf("the provider saw %d bad requests", n)
	}
}

// TestOldPluginHPKEIsENOTSUP: Decrypt, NewImportKey and Import to a plugin
// built before them are ENOTSUP saying so, and the connection is not
// taken for lost.
func TestOldPluginHPKEIsENOTSUP(t *testing.T) {
	t.Parallel()
	lost := false
	cfg := testStub
	cfg.onLost = func() { lost = true }
	f := newHPKEFake(t)
	r := testRemote(t, &oldPlugin{grpcPlugin: grpcPlugin{impl: f, stub: cfg}, drop: []string{"Decrypt", "NewImportKey", "Import"}})
	ctx := t.Context()
	ref := hpkeRef(t)
	_, err := r.Decrypt(ctx, ref, provider.Handle("h"), make([]byte, 32), make([]byte, 16), nil, nil)
	checkCode(t, err, provider.ENOTSUP)
	if !strings.Contains(err.Error(), "does not serve decrypt") {
		t.Errorf("Decrypt error %q does not say the plugin lacks it", err)
	}
	wrap := wrapRefOf(ref)
	_, err = r.NewImportKey(ctx, wrap)
	checkCode(t, err, provider.ENOTSUP)
	if !strings.Contains(err.Error(), "does not serve new import key") {
		t.Errorf("NewImportKey error %q does not say the plugin lacks it", err)
	}
	sealRef := signRef(t, "fake")
	sealRef.Algorithm, sealRef.Use = provider.AES256GCM, provider.UseDecrypt
	_, err = r.Import(ctx, sealRef, wrap, provider.Handle("h"), make([]byte, 32), make([]byte, 48))
	checkCode(t, err, provider.ENOTSUP)
	if lost {
		t.Error("an UNIMPLEMENTED answer marked the connection lost")
	}
	if n := f.calls.Load(); n != 0 {
		t.Errorf("the provider saw %d calls of methods the plugin does not serve", n)
	}
	if _, err := r.Generate(ctx, ref); err != nil {
		t.Errorf("Generate on the old plugin: %v", err)
	}
}

// TestRotatingWrappersForwardHPKE: a rotatingRemote serves Decrypt,
// NewImportKey and Import as the plain one does.
func TestRotatingWrappersForwardHPKE(t *testing.T) {
	t.Parallel()
	f := newFakeRotator()
	p := TestClient(t, f)
	if _, ok := p.(rotatingRemote); !ok {
		t.Fatalf("TestClient of a KEKRotator is a %T, want rotatingRemote", p)
	}
	ctx := t.Context()
	ref := signRef(t, "fake")
	// The fake rotator does not offer HPKE: its ENOTSUP crosses (the
	// call is forwarded, not refused as unannounced: ref is Ed25519).
	if _, err := p.Decrypt(ctx, ref, provider.Handle("h"), make([]byte, 32), make([]byte, 16), nil, nil); !errorsIsCode(err, provider.ENOTSUP) || !strings.Contains(err.Error(), "fake: no HPKE") {
		t.Errorf("Decrypt through rotatingRemote: %v, want the fake's ENOTSUP", err)
	}
	if _, err := p.NewImportKey(ctx, wrapRefOf(ref)); !errorsIsCode(err, provider.ENOTSUP) || !strings.Contains(err.Error(), "fake: no import") {
		t.Errorf("NewImportKey through rotatingRemote: %v, want the fake's ENOTSUP", err)
	}
	if _, err := p.Import(ctx, ref, wrapRefOf(ref), provider.Handle("h"), nil, nil); !errorsIsCode(err, provider.ENOTSUP) || !strings.Contains(err.Error(), "fake: no import") {
		t.Errorf("Import through rotatingRemote: %v, want the fake's ENOTSUP", err)
	}
}

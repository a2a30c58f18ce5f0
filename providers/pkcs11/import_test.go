package pkcs11

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"hash"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/internal/importkey"
)

// wrapRefFor is the import wrapping key's ref the core makes for an
// import into ref: the target key's ID, version 1, an HPKE suite.
func wrapRefFor(ref provider.KeyRef, suite provider.Algorithm) provider.KeyRef {
	return provider.KeyRef{ID: ref.ID, Version: 1, Algorithm: suite, Use: provider.UseAsymmetricDecrypt, Provider: ref.Provider}
}

// sealTo seals material for an import into ref to the wrapping public key
// pub of suite, as a client does: HPKE base mode (crypto/hpke, not
// core/alg), info provider.ImportInfo, empty aad.
func sealTo(t testing.TB, suite provider.Algorithm, pub []byte, ref provider.KeyRef, material []byte) (enc, wrapped []byte) {
	t.Helper()
	spec, err := alg.Default().Lookup(suite)
	if err != nil {
		t.Fatal(err)
	}
	kem, kdf, aead, err := spec.Suite()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("wrapping public key of %s: %v", suite, err)
	}
	enc, snd, err := hpke.NewSender(pk, kdf, aead, provider.ImportInfo(ref.ID, ref.Algorithm))
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err = snd.Seal(nil, material)
	if err != nil {
		t.Fatal(err)
	}
	return enc, wrapped
}

// importInto gets a wrapping key of the default suite (the hybrid
// ML-KEM-768 + X25519 one) for ref, seals material to it and imports.
func importInto(t testing.TB, p provider.Provider, ref provider.KeyRef, material []byte) (provider.Generated, error) {
	t.Helper()
	wrap := wrapRefFor(ref, provider.HPKEMLKEM768X25519)
	w, err := p.NewImportKey(t.Context(), wrap)
	if err != nil {
		t.Fatalf("NewImportKey(%s): %v", wrap, err)
	}
	enc, wrapped := sealTo(t, wrap.Algorithm, w.PublicKey, ref, material)
	return p.Import(t.Context(), ref, wrap, w.Handle, enc, wrapped)
}

// pkcs8 is the PKCS #8 DER of key.
func pkcs8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// randomKey returns n bytes from crypto/rand (key material made outside
// the token; no assertion depends on its value).
func randomKey(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportSigners imports ECDSA P-256 and P-384, RSA-2048 PSS and
// PKCS #1 v1.5 keys made with crypto/ecdsa and crypto/rsa: Import returns
// the key's own public key, and the token's signatures verify with
// crypto/ecdsa and crypto/rsa under the public key of the key the test
// made (not the one the token reports); Sign and SignDigest agree.
func TestImportSigners(t *testing.T) {
	tk := newToken(t, "import-sign")
	p := tk.open(t)
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ownPub := func(k any) []byte {
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			b, err := k.PublicKey.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			return b
		case *rsa.PrivateKey:
			return x509.MarshalPKCS1PublicKey(&k.PublicKey)
		}
		t.Fatalf("no public key for %T", k)
		return nil
	}
	msg := []byte("signed by an imported key")
	for _, c := range []struct {
		a   provider.Algorithm
		key any
	}{
		{provider.ECDSAP256, ec256},
		{provider.ECDSAP384, ec384},
		{provider.RSA2048PSS, rsaKey},
		{provider.RSA2048PKCS1, rsaKey},
	} {
		ref := mustRef(t, "import-"+string(c.a), 1, c.a)
		g, err := importInto(t, p, ref, pkcs8(t, c.key))
		if err != nil {
			t.Fatalf("Import(%s): %v", ref, err)
		}
		pub := ownPub(c.key)
		if !bytes.Equal(g.PublicKey, pub) {
			t.Errorf("%s: Import returned public key %x, want the imported key's %x", ref, g.PublicKey, pub)
		}
		sig, err := p.Sign(t.Context(), ref, g.Handle, msg)
		if err != nil {
			t.Fatalf("Sign(%s): %v", ref, err)
		}
		verifyIndependently(t, c.a, pub, msg, sig)
		spec, err := alg.Default().Lookup(c.a)
		if err != nil {
			t.Fatal(err)
		}
		h := spec.Hash.New()
		h.Write(msg)
		dsig, err := p.SignDigest(t.Context(), ref, g.Handle, spec.Hash, h.Sum(nil))
		if err != nil {
			t.Fatalf("SignDigest(%s): %v", ref, err)
		}
		verifyIndependently(t, c.a, pub, msg, dsig)
	}
}

// TestImportSecrets imports an AES-256-GCM and an HMAC-SHA-256,
// -SHA-384 and -SHA-512 key of known value: the token's seal opens with
// crypto/cipher under the raw key, a seal made with crypto/cipher opens
// in the token, and tags equal crypto/hmac's.
func TestImportSecrets(t *testing.T) {
	tk := newToken(t, "import-secret")
	p := tk.open(t)
	ctx := t.Context()

	aesKey := randomKey(t, 32)
	ref := mustRef(t, "import-aes", 1, provider.AES256GCM)
	g, err := importInto(t, p, ref, aesKey)
	if err != nil {
		t.Fatalf("Import(%s): %v", ref, err)
	}
	if len(g.PublicKey) != 0 {
		t.Errorf("%s: Import returned a %d-byte public key, want none", ref, len(g.PublicKey))
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	pt, aad := []byte("sealed in the token"), []byte("aad")
	sealed, err := p.Seal(ctx, ref, g.Handle, pt, aad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if got, err := gcm.Open(nil, sealed[:gcmIVSize], sealed[gcmIVSize:], aad); err != nil || !bytes.Equal(got, pt) {
		t.Errorf("crypto/cipher could not open the token's seal under the raw key: %q, %v", got, err)
	}
	iv := make([]byte, gcmIVSize) // a fixed IV: a test vector, the key is used for nothing else
	outside := gcm.Seal(append([]byte(nil), iv...), iv, []byte("sealed outside"), aad)
	if got, err := p.Open(ctx, ref, g.Handle, outside, aad); err != nil || string(got) != "sealed outside" {
		t.Errorf("Open of a seal made outside under the raw key = %q, %v", got, err)
	}

	for _, c := range []struct {
		a    provider.Algorithm
		size int
		hash func() hash.Hash
	}{{provider.HMACSHA256, 32, sha256.New}, {provider.HMACSHA384, 48, sha512.New384}, {provider.HMACSHA512, 64, sha512.New}} {
		key := randomKey(t, c.size)
		ref := mustRef(t, "import-"+string(c.a), 1, c.a)
		g, err := importInto(t, p, ref, key)
		if err != nil {
			t.Fatalf("Import(%s): %v", ref, err)
		}
		for _, msg := range [][]byte{nil, []byte("tagged"), bytes.Repeat([]byte{7}, 4096)} {
			tag, err := p.MAC(ctx, ref, g.Handle, msg)
			if err != nil {
				t.Fatalf("MAC(%s): %v", ref, err)
			}
			m := hmac.New(c.hash, key)
			m.Write(msg)
			if want := m.Sum(nil); !bytes.Equal(tag, want) {
				t.Errorf("%s: tag of %d bytes = %x, want crypto/hmac's %x", ref, len(msg), tag, want)
			}
		}
	}
}

// TestImportedAttributes asks the token that imported keys have the
// attributes of generated ones (token objects, private, sensitive, not
// extractable, not modifiable, the same usage, label and CKA_ID), that
// the private values cannot be read, that the token marks them as not
// generated in it (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE
// false: they were not always secret) and that no session object is left
// (the ephemeral unwrapping key is destroyed).
func TestImportedAttributes(t *testing.T) {
	tk := newToken(t, "import-attrs")
	p := tk.open(t)
	d := tk.openDirect(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	yes, no := []byte{1}, []byte{0}
	common := map[uint][]byte{
		p11.CKA_TOKEN: yes, p11.CKA_PRIVATE: yes, p11.CKA_SENSITIVE: yes, p11.CKA_EXTRACTABLE: no,
		p11.CKA_MODIFIABLE: no, p11.CKA_DERIVE: no,
		p11.CKA_LOCAL: no, p11.CKA_ALWAYS_SENSITIVE: no, p11.CKA_NEVER_EXTRACTABLE: no,
	}
	cases := []struct {
		a        provider.Algorithm
		material []byte
		want     map[uint][]byte
	}{
		{provider.ECDSAP256, pkcs8(t, ec), map[uint][]byte{
			p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_EC), p11.CKA_EC_PARAMS: p256Params,
			p11.CKA_SIGN: yes, p11.CKA_SIGN_RECOVER: no, p11.CKA_DECRYPT: no, p11.CKA_UNWRAP: no,
		}},
		{provider.AES256GCM, randomKey(t, 32), map[uint][]byte{
			p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_AES),
			p11.CKA_ENCRYPT:  yes, p11.CKA_DECRYPT: yes, p11.CKA_SIGN: no, p11.CKA_VERIFY: no, p11.CKA_WRAP: no, p11.CKA_UNWRAP: no,
		}},
		{provider.HMACSHA256, randomKey(t, 32), map[uint][]byte{
			p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_GENERIC_SECRET),
			p11.CKA_SIGN:     yes, p11.CKA_VERIFY: no, p11.CKA_ENCRYPT: no, p11.CKA_DECRYPT: no, p11.CKA_WRAP: no, p11.CKA_UNWRAP: no,
		}},
	}
	for _, c := range cases {
		ref := mustRef(t, "attrs-"+string(c.a), 1, c.a)
		if _, err := importInto(t, p, ref, c.material); err != nil {
			t.Fatalf("Import(%s): %v", ref, err)
		}
		sc, _ := schemeOf(c.a)
		objs := d.objects(t, ref, sc.class())
		if len(objs) != 1 {
			t.Fatalf("%s: %d objects of class %d, want 1", ref, len(objs), sc.class())
		}
		want := map[uint][]byte{p11.CKA_LABEL: []byte(ref.String())}
		for _, m := range []map[uint][]byte{common, c.want} {
			for k, v := range m {
				want[k] = v
			}
		}
		checkAttrs(t, d, ref, objs[0], want)
		_, err := d.ctx.GetAttributeValue(d.sh, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if !rvIs(err, p11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Errorf("%s: reading CKA_VALUE: got %v, want CKR_ATTRIBUTE_SENSITIVE", ref, err)
		}
		if !sc.pair() {
			// SoftHSM2 2.6.1 refuses CKA_VALUE_LEN in an unwrap template
			// (CKR_ATTRIBUTE_READ_ONLY) and leaves it 0 in the key it
			// unwraps (the key works: TestImportSecrets).
			got, err := d.ctx.GetAttributeValue(d.sh, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE_LEN, nil)})
			if err != nil || (!bytes.Equal(got[0].Value, ulongBytes(32)) && !bytes.Equal(got[0].Value, ulongBytes(0))) {
				t.Errorf("%s: CKA_VALUE_LEN: %v, %v; want 32 (or SoftHSM2's 0)", ref, got, err)
			}
		}
		wantObjects := 1
		if sc.pair() {
			wantObjects = 2
			pubs := d.objects(t, ref, p11.CKO_PUBLIC_KEY)
			if len(pubs) != 1 {
				t.Fatalf("%s: %d public keys, want 1", ref, len(pubs))
			}
			pub, err := ec.PublicKey.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			checkAttrs(t, d, ref, pubs[0], map[uint][]byte{
				p11.CKA_TOKEN: yes, p11.CKA_PRIVATE: no, p11.CKA_MODIFIABLE: no, p11.CKA_LABEL: []byte(ref.String()),
				p11.CKA_VERIFY: yes, p11.CKA_ENCRYPT: no, p11.CKA_WRAP: no, p11.CKA_DERIVE: no,
				p11.CKA_EC_PARAMS: p256Params, p11.CKA_EC_POINT: octetString(pub),
			})
		}
		if n := len(allObjects(t, d, ref)); n != wantObjects {
			t.Errorf("%s: %d objects with its CKA_ID, want %d", ref, n, wantObjects)
		}
	}
	session, err := findObjects(d.ctx, d.sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_TOKEN, false)}, 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(session) != 0 {
		t.Errorf("%d session objects left after the imports, want 0 (the ephemeral unwrapping keys)", len(session))
	}
}

// TestImportEd25519NotSupported pins SoftHSM2 2.6.1's behaviour: it
// generates Ed25519 keys but does not unwrap one (C_UnwrapKey of an
// Ed25519 PKCS #8 key is CKR_FUNCTION_FAILED; SoftHSMv2 added it after
// 2.6.1, pull request #594), so the probe finds it and Import of an
// ed25519 key is ENOTSUP, naming the key type and the mechanism, before
// the material is opened; the wrapping key is spent even so, and nothing
// is left on the token. Every other kind of key is importable. If a
// later SoftHSM2 imports Ed25519 keys, this test fails: update
// docs/hardware.md.
func TestImportEd25519NotSupported(t *testing.T) {
	tk := newToken(t, "import-ed25519")
	p := tk.open(t)
	tp := p.(*tokenProvider)
	if tp.caps.none != nil {
		t.Fatalf("the probe found no import at all: %v", tp.caps.none)
	}
	for _, k := range importKinds {
		err := tp.caps.check(k)
		if (err != nil) != (k == impEd25519) {
			t.Errorf("probe: %s: %v; want only Ed25519 refused", k, err)
		}
	}
	ref := mustRef(t, "import-ed", 1, provider.Ed25519)
	wrap := wrapRefFor(ref, provider.HPKEX25519)
	w, err := p.NewImportKey(t.Context(), wrap)
	if err != nil {
		t.Fatal(err)
	}
	enc, wrapped := sealTo(t, wrap.Algorithm, w.PublicKey, ref, pkcs8(t, ed25519.NewKeyFromSeed(randomKey(t, 32))))
	_, err = p.Import(t.Context(), ref, wrap, w.Handle, enc, wrapped)
	wantCode(t, "Import(ed25519)", err, provider.ENOTSUP)
	for _, s := range []string{"CKK_EC_EDWARDS", "CKM_AES_KEY_WRAP_PAD", "ed25519"} {
		if err != nil && !strings.Contains(err.Error(), s) {
			t.Errorf("Import(ed25519): error %q does not name %s", err, s)
		}
	}
	// A good import (of a key the token takes) with the same wrapping
	// key: spent.
	again := mustRef(t, "import-ed", 2, provider.ECDSAP256)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc, wrapped = sealTo(t, wrap.Algorithm, w.PublicKey, again, pkcs8(t, ec))
	_, err = p.Import(t.Context(), again, wrap, w.Handle, enc, wrapped)
	wantCode(t, "a good import with the wrapping key of the refused import", err, provider.ENOENT)
	d := tk.openDirect(t)
	if n := len(allObjects(t, d, ref)); n != 0 {
		t.Errorf("%d objects with the key's CKA_ID after the refused import, want 0", n)
	}
	// The token itself refuses: not the provider's choice.
	in, err := probeMaterial(impEd25519)
	if err != nil {
		t.Fatal(err)
	}
	if err := probeUnwrap(d.ctx, d.sh, probeScheme(impEd25519), in); !rvIs(err, p11.CKR_FUNCTION_FAILED) {
		t.Errorf("SoftHSM2's unwrap of an Ed25519 key: %v, want CKR_FUNCTION_FAILED", err)
	}
}

// TestImportWrappingKeyOneTime: a wrapping key opens one import, whatever
// its outcome: after a success, a wrapped form that does not open
// (EBADMSG), material sealed for another key (EBADMSG), material of
// another algorithm (EINVAL) and an algorithm the provider does not offer
// (ENOTSUP), a good import with the same handle is ENOENT. Destroy forgets a wrapping key (and succeeds again);
// a wrapping key works only with the ref it was made for.
func TestImportWrappingKeyOneTime(t *testing.T) {
	tk := newToken(t, "import-once")
	p := tk.open(t, func(c *Config) { c.Algorithms = []provider.Algorithm{provider.ECDSAP256, provider.HMACSHA256} })
	ctx := t.Context()
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := pkcs8(t, ec256)
	ref := mustRef(t, "once", 1, provider.ECDSAP256)
	other := mustRef(t, "once-other", 1, provider.ECDSAP256)
	cases := []struct {
		what string
		ref  provider.KeyRef
		// seal returns what is sent for the import into ref.
		seal func(pub []byte) (enc, wrapped []byte)
		code provider.Code // 0: success
	}{
		{"a good import", ref, func(pub []byte) ([]byte, []byte) { return sealTo(t, provider.HPKEP256, pub, ref, good) }, 0},
		{"a tampered wrapped form", ref, func(pub []byte) ([]byte, []byte) {
			enc, w := sealTo(t, provider.HPKEP256, pub, ref, good)
			w[0] ^= 1
			return enc, w
		}, provider.EBADMSG},
		{"material sealed for another key", ref, func(pub []byte) ([]byte, []byte) { return sealTo(t, provider.HPKEP256, pub, other, good) }, provider.EBADMSG},
		{"a P-384 key for a P-256 ref", ref, func(pub []byte) ([]byte, []byte) {
			return sealTo(t, provider.HPKEP256, pub, ref, pkcs8(t, ec384))
		}, provider.EINVAL},
		{"an algorithm not offered", mustRef(t, "once-aes", 1, provider.AES256GCM), func(pub []byte) ([]byte, []byte) {
			return sealTo(t, provider.HPKEP256, pub, mustRef(t, "once-aes", 1, provider.AES256GCM), randomKey(t, 32))
		}, provider.ENOTSUP},
	}
	for _, c := range cases {
		wrap := wrapRefFor(c.ref, provider.HPKEP256)
		w, err := p.NewImportKey(ctx, wrap)
		if err != nil {
			t.Fatalf("%s: NewImportKey: %v", c.what, err)
		}
		enc, wrapped := c.seal(w.PublicKey)
		_, err = p.Import(ctx, c.ref, wrap, w.Handle, enc, wrapped)
		if c.code == 0 && err != nil {
			t.Errorf("%s: Import: %v", c.what, err)
		} else if c.code != 0 {
			wantCode(t, c.what, err, c.code)
		}
		// A good import with the same wrapping key: spent.
		again := c.ref
		again.Version, again.Algorithm, again.Use = 2, provider.ECDSAP256, provider.UseSign
		enc, wrapped = sealTo(t, provider.HPKEP256, w.PublicKey, again, good)
		_, err = p.Import(ctx, again, wrap, w.Handle, enc, wrapped)
		wantCode(t, c.what+", then a good import with the same wrapping key", err, provider.ENOENT)
	}

	// A wrapping key made for one key's import serves no other.
	wrap := wrapRefFor(ref, provider.HPKEP256)
	w, err := p.NewImportKey(ctx, wrap)
	if err != nil {
		t.Fatal(err)
	}
	enc, wrapped := sealTo(t, provider.HPKEP256, w.PublicKey, other, good)
	_, err = p.Import(ctx, other, wrapRefFor(other, provider.HPKEP256), w.Handle, enc, wrapped)
	wantCode(t, "Import with another key's wrapping key", err, provider.ENOENT)
	if err := p.Destroy(ctx, wrap, w.Handle); err != nil {
		t.Fatalf("Destroy of the wrapping key: %v", err)
	}
	if err := p.Destroy(ctx, wrap, w.Handle); err != nil {
		t.Errorf("Destroy of the wrapping key again: %v", err)
	}
	enc, wrapped = sealTo(t, provider.HPKEP256, w.PublicKey, ref, good)
	_, err = p.Import(ctx, ref, wrap, w.Handle, enc, wrapped)
	wantCode(t, "Import after Destroy of the wrapping key", err, provider.ENOENT)
	if n := p.(*tokenProvider).imports.Len(); n != 0 {
		t.Errorf("the provider holds %d wrapping keys, want 0", n)
	}
}

// TestNewImportKey: every HPKE suite makes wrapping keys whose public
// keys are valid for it, with distinct import handles (importkey's
// format), although the provider offers no HPKE algorithm for keys; a
// ref of another provider is refused; a closed provider is EUNAVAILABLE.
func TestNewImportKey(t *testing.T) {
	tk := newToken(t, "import-newkey")
	p := tk.open(t)
	ref := mustRef(t, "wrapped", 1, provider.HMACSHA256)
	seen := map[string]bool{}
	for _, suite := range []provider.Algorithm{provider.HPKEMLKEM768X25519, provider.HPKEX25519, provider.HPKEP256} {
		spec, err := alg.Default().Lookup(suite)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			w, err := p.NewImportKey(t.Context(), wrapRefFor(ref, suite))
			if err != nil {
				t.Fatalf("NewImportKey(%s): %v", suite, err)
			}
			if !spec.CheckPublicKey(w.PublicKey) || !importkey.IsHandle(w.Handle) || seen[string(w.Handle)] {
				t.Errorf("NewImportKey(%s): public key of %d bytes, handle %x (seen before: %v)", suite, len(w.PublicKey), []byte(w.Handle), seen[string(w.Handle)])
			}
			seen[string(w.Handle)] = true
		}
	}
	wrong := wrapRefFor(ref, provider.HPKEX25519)
	wrong.Provider = "other"
	_, err := p.NewImportKey(t.Context(), wrong)
	wantCode(t, "NewImportKey for another provider", err, provider.EINVAL)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = p.NewImportKey(t.Context(), wrapRefFor(ref, provider.HPKEX25519))
	wantCode(t, "NewImportKey after Close", err, provider.EUNAVAILABLE)
}

// TestImportReplacesAndSurvives: Import into a version that already has
// objects (a Generate, or an Import, interrupted before the core recorded
// it) replaces them, and an imported key works from a new provider on
// the same token.
func TestImportReplacesAndSurvives(t *testing.T) {
	tk := newToken(t, "import-replace")
	key := randomKey(t, 32)
	ref := mustRef(t, "replaced", 1, provider.HMACSHA256)
	msg := []byte("m")
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	want := m.Sum(nil)
	var h provider.Handle
	func() {
		p := tk.open(t)
		generate(t, p, ref)
		g, err := importInto(t, p, ref, key)
		if err != nil {
			t.Fatalf("Import over a generated key: %v", err)
		}
		if g, err = importInto(t, p, ref, key); err != nil {
			t.Fatalf("Import again: %v", err)
		}
		h = g.Handle
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	d := tk.openDirect(t)
	if n := len(allObjects(t, d, ref)); n != 1 {
		t.Errorf("%d objects with the key's CKA_ID, want 1", n)
	}
	p := tk.open(t)
	tag, err := p.MAC(t.Context(), ref, h, msg)
	if err != nil || !bytes.Equal(tag, want) {
		t.Errorf("MAC from a new provider = %x, %v; want the imported key's %x", tag, err, want)
	}
}

// TestProbeImportWithoutKWP: a token without CKM_AES_KEY_WRAP_PAD for
// unwrapping imports nothing (the probe asks the token nothing), and
// NewImportKey then says why.
func TestProbeImportWithoutKWP(t *testing.T) {
	infos := map[uint]p11.MechanismInfo{p11.CKM_AES_KEY_WRAP_PAD: {Flags: p11.CKF_WRAP, MinKeySize: 16, MaxKeySize: 32}}
	caps, err := probeImport(nil, 0, infos, []provider.Algorithm{provider.ECDSAP256})
	if err != nil || caps.none == nil || !strings.Contains(caps.none.Error(), "CKM_AES_KEY_WRAP_PAD") {
		t.Fatalf("probeImport = %v, %v; want none naming CKM_AES_KEY_WRAP_PAD", caps.none, err)
	}
	caps, err = probeImport(nil, 0, map[uint]p11.MechanismInfo{}, []provider.Algorithm{provider.Ed448})
	if err != nil || caps.none == nil {
		t.Fatalf("probeImport of Ed448 only = %v, %v; want none", caps.none, err)
	}
	tk := newToken(t, "import-nokwp")
	p := tk.open(t)
	p.(*tokenProvider).caps = importCaps{none: provider.Errorf(provider.ENOTSUP, "no CKM_AES_KEY_WRAP_PAD")}
	_, err = p.NewImportKey(t.Context(), wrapRefFor(mustRef(t, "k", 1, provider.ECDSAP256), provider.HPKEX25519))
	wantCode(t, "NewImportKey without KWP", err, provider.ENOTSUP)
	if err != nil && !strings.Contains(err.Error(), "cannot import") {
		t.Errorf("NewImportKey without KWP: %q does not say it cannot import", err)
	}
}

// TestImportChecksToken: a key the token holds that is not the material
// (here the provider is handed another key's public key, or another raw
// key to compare with) fails Import's check with EIO, staged or on the
// token, and leaves no object, token or session, behind.
func TestImportChecksToken(t *testing.T) {
	tk := newToken(t, "import-check")
	p := tk.open(t)
	tp := p.(*tokenProvider)
	d := tk.openDirect(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecMaterial, err := ec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := otherEC.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ecRef := mustRef(t, "check-ec", 1, provider.ECDSAP256)
	macRef := mustRef(t, "check-mac", 1, provider.HMACSHA256)
	for _, staging := range []bool{true, false} {
		tp.noStaging.Store(!staging)
		for _, c := range []struct {
			ref           provider.KeyRef
			material, pub []byte // what the token gets, and the pub Import would compare with
			compare       []byte // the material Import compares a secret key with
		}{
			{ecRef, ecMaterial, otherPub, ecMaterial},
			{macRef, randomKey(t, 32), nil, randomKey(t, 32)},
		} {
			spec, sc, id, err := tp.checkImport(t.Context(), c.ref)
			if err != nil {
				t.Fatal(err)
			}
			pub := c.pub
			in, pubAttrs, err := importInput(sc, c.material, pub)
			if err != nil {
				t.Fatal(err)
			}
			err = tp.runSpare(t.Context(), func(sh p11.SessionHandle) error {
				return tp.importKey(t.Context(), sh, c.ref, spec, sc, id, in, c.compare, pub, pubAttrs)
			})
			wantCode(t, c.ref.String()+" with a mismatched check", err, provider.EIO)
			if n := len(allObjects(t, d, c.ref)); n != 0 {
				t.Errorf("%s (staging %v): %d objects left after the failed check, want 0", c.ref, staging, n)
			}
		}
	}
	session, err := findObjects(d.ctx, d.sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_TOKEN, false)}, 16)
	if err != nil || len(session) != 0 {
		t.Errorf("%d session objects left (%v), want 0", len(session), err)
	}
}

// TestImportWithoutStaging: on a token that cannot copy session objects
// to the token (noStaging), Import unwraps on the token directly; the key
// works and its objects are token objects; SoftHSM2 2.6.1 then makes the
// unwrapped key modifiable (it refuses CKA_MODIFIABLE=false in an unwrap
// template), the public key object not.
func TestImportWithoutStaging(t *testing.T) {
	tk := newToken(t, "import-nostaging")
	p := tk.open(t)
	p.(*tokenProvider).noStaging.Store(true)
	d := tk.openDirect(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, "direct", 1, provider.ECDSAP256)
	g, err := importInto(t, p, ref, pkcs8(t, ec))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	pub, err := ec.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("m")
	sig, err := p.Sign(t.Context(), ref, g.Handle, msg)
	if err != nil {
		t.Fatal(err)
	}
	verifyIndependently(t, provider.ECDSAP256, pub, msg, sig)
	yes, no := []byte{1}, []byte{0}
	privs := d.objects(t, ref, p11.CKO_PRIVATE_KEY)
	pubs := d.objects(t, ref, p11.CKO_PUBLIC_KEY)
	if len(privs) != 1 || len(pubs) != 1 || len(allObjects(t, d, ref)) != 2 {
		t.Fatalf("%d private and %d public token objects (%d in all), want 1, 1 (2)", len(privs), len(pubs), len(allObjects(t, d, ref)))
	}
	checkAttrs(t, d, ref, privs[0], map[uint][]byte{p11.CKA_TOKEN: yes, p11.CKA_SENSITIVE: yes, p11.CKA_EXTRACTABLE: no, p11.CKA_MODIFIABLE: yes})
	checkAttrs(t, d, ref, pubs[0], map[uint][]byte{p11.CKA_TOKEN: yes, p11.CKA_MODIFIABLE: no})
	// The probe found SoftHSM2's refusal, so no template was refused (and
	// no stray session object made, see probeUnwrap).
	if !p.(*tokenProvider).noUnwrapModifiable.Load() {
		t.Error("the probe did not find that SoftHSM2 refuses CKA_MODIFIABLE=false in an unwrap template")
	}
	session, err := findObjects(d.ctx, d.sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_TOKEN, false)}, 16)
	if err != nil || len(session) != 0 {
		t.Errorf("%d session objects left (%v), want 0", len(session), err)
	}
}

// ed25519Key returns a new Ed25519 private key.
func ed25519Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(randomKey(t, ed25519.SeedSize))
}

package conformance

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// ksHPKE is a message the keystore suite sealed, with crypto/hpke, to a
// version of an asymmetric-decrypt key.
type ksHPKE struct {
	msg core.HPKEMessage
	pt  []byte
}

// hpkePublicKey returns the public key of version v of key id, as its
// metadata holds it. (core.Keystore.PublicKey serves sign keys only.)
func (e *ksEnv) hpkePublicKey(t *testing.T, id core.KeyID, v core.Version) core.PublicKey {
	t.Helper()
	m, err := e.ks.Get(t.Context(), ksCaller, id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if v < 1 || int(v) > len(m.Versions) {
		t.Fatalf("Get(%s): no version %d", id, v)
	}
	return core.PublicKey{ID: id, Version: v, Algorithm: m.Algorithm, Key: m.Versions[v-1].PublicKey}
}

// hpkeSend seals pt to version v of key id (its public key), with info
// and AAD of its own, as a sender would.
func (e *ksEnv) hpkeSend(t *testing.T, id core.KeyID, v core.Version, pt []byte) ksHPKE {
	t.Helper()
	pk := e.hpkePublicKey(t, id, v)
	info, aad := []byte("conformance: info of "+id.String()), []byte("conformance: aad")
	enc, ct, err := hpkeSeal(pk.Algorithm, pk.Key, info, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	return ksHPKE{msg: core.HPKEMessage{Enc: enc, Ciphertext: ct, Info: info, AAD: aad}, pt: pt}
}

// ksDataKeys: (the quickest AEAD) GenerateDataKey gives a fresh data key
// of the spec's size (the default and each named spec, 16 and 64 bytes)
// with version 1, sealed so that Unseal with the same AAD gives the same
// plaintext and another AAD is EBADMSG; two data keys differ;
// GenerateDataKeyWithoutPlaintext gives the sealed form only, which
// unseals to a key of the size; a spec with a name and a size, an unknown
// name, 15 or 65 bytes are EINVAL; after a rotation data keys are sealed
// under version 2 and the earlier ones still unseal; a sign or MAC key is
// EPERM; a revoked key EKEYREVOKED.
func ksDataKeys(t *testing.T, e *ksEnv) {
	a, ok := e.cheapest(provider.UseDecrypt, false)
	if !ok {
		t.Skip("provider announces no AEAD algorithm")
	}
	ctx := t.Context()
	id := e.create(t, "data-keys-"+string(a), a)
	aad := []byte("conformance: data key aad")
	type spec struct {
		s    core.DataKeySpec
		size int
	}
	specs := []spec{{core.DataKeySpec{}, 32}, {core.DataKeySpec{Name: "aes-256-gcm"}, 32}, {core.DataKeySpec{Name: "aes-128-gcm"}, 16},
		{core.DataKeySpec{Name: "chacha20-poly1305"}, 32}, {core.DataKeySpec{Name: "xchacha20-poly1305"}, 32},
		{core.DataKeySpec{Size: core.MinDataKeySize}, 16}, {core.DataKeySpec{Size: core.MaxDataKeySize}, 64}}
	var first core.DataKey
	for i, c := range specs {
		what := fmt.Sprintf("GenerateDataKey(%+v)", c.s)
		d, err := e.ks.GenerateDataKey(ctx, ksCaller, id, c.s, aad)
		if err != nil || d.Version != 1 || len(d.Plaintext) != c.size {
			t.Fatalf("%s: version %d, %d-byte key, %v; want version 1 and %d bytes", what, d.Version, len(d.Plaintext), err, c.size)
		}
		u, err := e.ks.Unseal(ctx, ksCaller, id, d.Sealed, aad)
		if err != nil || u.Version != 1 || !bytes.Equal(u.Plaintext, d.Plaintext) {
			t.Fatalf("Unseal of %s's sealed data key: version %d, same key %v, %v; want the data key", what, u.Version, bytes.Equal(u.Plaintext, d.Plaintext), err)
		}
		_, err = e.ks.Unseal(ctx, ksCaller, id, d.Sealed, append(bytes.Clone(aad), 'x'))
		ksWant(t, "Unseal of a sealed data key with another AAD", err, provider.EBADMSG)
		if i == 0 {
			first = d
		}
	}
	again, err := e.ks.GenerateDataKey(ctx, ksCaller, id, core.DataKeySpec{}, aad)
	if err != nil || bytes.Equal(again.Plaintext, first.Plaintext) {
		t.Fatalf("a second GenerateDataKey: the same data key or %v; want a fresh one", err)
	}
	for _, c := range specs[:3] {
		s, err := e.ks.GenerateDataKeyWithoutPlaintext(ctx, ksCaller, id, c.s, aad)
		if err != nil || s.Version != 1 || len(s.Data) == 0 {
			t.Fatalf("GenerateDataKeyWithoutPlaintext(%+v): version %d, %d bytes, %v", c.s, s.Version, len(s.Data), err)
		}
		u, err := e.ks.Unseal(ctx, ksCaller, id, s.Data, aad)
		if err != nil || len(u.Plaintext) != c.size {
			t.Fatalf("Unseal of GenerateDataKeyWithoutPlaintext(%+v): %d bytes, %v; want a %d-byte key", c.s, len(u.Plaintext), err, c.size)
		}
	}
	for _, bad := range []core.DataKeySpec{{Name: "aes-256-gcm", Size: 32}, {Name: "rot13"}, {Size: core.MinDataKeySize - 1}, {Size: core.MaxDataKeySize + 1}} {
		_, err := e.ks.GenerateDataKey(ctx, ksCaller, id, bad, aad)
		ksWant(t, fmt.Sprintf("GenerateDataKey(%+v)", bad), err, provider.EINVAL)
		_, err = e.ks.GenerateDataKeyWithoutPlaintext(ctx, ksCaller, id, bad, aad)
		ksWant(t, fmt.Sprintf("GenerateDataKeyWithoutPlaintext(%+v)", bad), err, provider.EINVAL)
	}
	_, err = e.ks.GenerateDataKey(ctx, ksCaller, id, core.DataKeySpec{}, make([]byte, provider.MaxAAD+1))
	ksWant(t, "GenerateDataKey with MaxAAD+1 bytes of AAD", err, provider.EMSGSIZE)

	if _, err := e.ks.Rotate(ctx, ksCaller, id); err != nil {
		t.Fatal(err)
	}
	d2, err := e.ks.GenerateDataKey(ctx, ksCaller, id, core.DataKeySpec{}, aad)
	if err != nil || d2.Version != 2 {
		t.Fatalf("GenerateDataKey after a rotation: version %d, %v; want version 2", d2.Version, err)
	}
	for _, d := range []core.DataKey{first, d2} {
		u, err := e.ks.Unseal(ctx, ksCaller, id, d.Sealed, aad)
		if err != nil || u.Version != d.Version || !bytes.Equal(u.Plaintext, d.Plaintext) {
			t.Fatalf("Unseal of a version %d data key after the rotation: version %d, %v", d.Version, u.Version, err)
		}
	}
	for _, use := range []provider.Use{provider.UseSign, provider.UseMAC, provider.UseAsymmetricDecrypt} {
		if b, ok := e.cheapest(use, false); ok {
			other := e.create(t, "data-keys-with-"+use.String(), b)
			_, err := e.ks.GenerateDataKey(ctx, ksCaller, other, core.DataKeySpec{}, nil)
			ksWant(t, "GenerateDataKey with a "+use.String()+" key", err, provider.EPERM)
		}
	}
	if _, err := e.ks.Revoke(ctx, ksCaller, id); err != nil {
		t.Fatal(err)
	}
	_, err = e.ks.GenerateDataKey(ctx, ksCaller, id, core.DataKeySpec{}, aad)
	ksWant(t, "GenerateDataKey with a revoked key", err, provider.EKEYREVOKED)
	_, err = e.ks.GenerateDataKeyWithoutPlaintext(ctx, ksCaller, id, core.DataKeySpec{}, aad)
	ksWant(t, "GenerateDataKeyWithoutPlaintext with a revoked key", err, provider.EKEYREVOKED)
}

// ksHPKEDecrypt: for every announced HPKE algorithm, a message Go's
// crypto/hpke sealed to the version's public key (from the metadata)
// decrypts through the
// keystore (version 0 is the primary, 1 named), to the plaintext; one
// with its enc, ciphertext, info or AAD changed is EBADMSG, info over
// MaxHPKEInfo EMSGSIZE; after a rotation version 2 has another public key,
// a message to version 1 still decrypts with version 1 (and not with the
// primary: EBADMSG) and one to version 2 with the primary; once version 1
// is revoked it is EKEYREVOKED and version 2 still decrypts; Seal and
// Sign with an HPKE key and Decrypt with a sign or decrypt key are EPERM.
func ksHPKEDecrypt(t *testing.T, e *ksEnv) {
	algs := e.algs(provider.UseAsymmetricDecrypt)
	if len(algs) == 0 {
		t.Skip("provider announces no HPKE (asymmetric-decrypt) algorithm")
	}
	ctx := t.Context()
	for _, a := range algs {
		t.Run(string(a), func(t *testing.T) {
			if _, ok := hpkeSuites[a]; !ok {
				t.Skipf("the suite has no independent HPKE implementation of %q", a)
			}
			id := e.create(t, "hpke-"+string(a), a)
			pk1 := e.hpkePublicKey(t, id, 1)
			var err error
			if valid, _ := independentHPKEPublicKey(a, pk1.Key); !valid || pk1.Algorithm != a {
				t.Fatalf("PublicKey(%s, 1): %s, %d bytes that crypto/hpke does not parse (%v)", id, pk1.Algorithm, len(pk1.Key), valid)
			}
			m1 := e.hpkeSend(t, id, 1, []byte("conformance: to version 1"))
			for _, v := range []core.Version{0, 1} {
				d, err := e.ks.Decrypt(ctx, ksCaller, id, v, m1.msg)
				if err != nil || d.Version != 1 || !bytes.Equal(d.Plaintext, m1.pt) {
					t.Fatalf("Decrypt(version %d): version %d, %q, %v; want version 1 and the plaintext", v, d.Version, d.Plaintext, err)
				}
			}
			flip := func(b []byte) []byte { c := bytes.Clone(b); c[len(c)/2] ^= 1; return c }
			for _, c := range []struct {
				what string
				m    core.HPKEMessage
			}{
				{"its enc changed", core.HPKEMessage{Enc: flip(m1.msg.Enc), Ciphertext: m1.msg.Ciphertext, Info: m1.msg.Info, AAD: m1.msg.AAD}},
				{"its ciphertext changed", core.HPKEMessage{Enc: m1.msg.Enc, Ciphertext: flip(m1.msg.Ciphertext), Info: m1.msg.Info, AAD: m1.msg.AAD}},
				{"its info changed", core.HPKEMessage{Enc: m1.msg.Enc, Ciphertext: m1.msg.Ciphertext, Info: flip(m1.msg.Info), AAD: m1.msg.AAD}},
				{"its AAD changed", core.HPKEMessage{Enc: m1.msg.Enc, Ciphertext: m1.msg.Ciphertext, Info: m1.msg.Info, AAD: flip(m1.msg.AAD)}},
				{"no info", core.HPKEMessage{Enc: m1.msg.Enc, Ciphertext: m1.msg.Ciphertext, AAD: m1.msg.AAD}},
				{"its ciphertext truncated", core.HPKEMessage{Enc: m1.msg.Enc, Ciphertext: m1.msg.Ciphertext[:len(m1.msg.Ciphertext)-1], Info: m1.msg.Info, AAD: m1.msg.AAD}},
			} {
				d, err := e.ks.Decrypt(ctx, ksCaller, id, 1, c.m)
				if d.Plaintext != nil {
					t.Fatalf("Decrypt of a message with %s returned a plaintext", c.what)
				}
				ksWant(t, "Decrypt of a message with "+c.what, err, provider.EBADMSG)
			}
			big := m1.msg
			big.Info = make([]byte, provider.MaxHPKEInfo+1)
			_, err = e.ks.Decrypt(ctx, ksCaller, id, 1, big)
			ksWant(t, "Decrypt with MaxHPKEInfo+1 bytes of info", err, provider.EMSGSIZE)

			if _, err := e.ks.Rotate(ctx, ksCaller, id); err != nil {
				t.Fatal(err)
			}
			if pk2 := e.hpkePublicKey(t, id, 2); bytes.Equal(pk2.Key, pk1.Key) {
				t.Fatalf("version 2 of %s has the public key of version 1; want another", id)
			}
			if d, err := e.ks.Decrypt(ctx, ksCaller, id, 1, m1.msg); err != nil || d.Version != 1 || !bytes.Equal(d.Plaintext, m1.pt) {
				t.Fatalf("Decrypt of a message to version 1 with version 1 after a rotation: version %d, %v", d.Version, err)
			}
			_, err = e.ks.Decrypt(ctx, ksCaller, id, 0, m1.msg)
			ksWant(t, "Decrypt of a message to version 1 with the primary version 2", err, provider.EBADMSG)
			m2 := e.hpkeSend(t, id, 2, []byte("conformance: to version 2"))
			if d, err := e.ks.Decrypt(ctx, ksCaller, id, 0, m2.msg); err != nil || d.Version != 2 || !bytes.Equal(d.Plaintext, m2.pt) {
				t.Fatalf("Decrypt of a message to version 2 with the primary: version %d, %v; want version 2", d.Version, err)
			}
			if _, err := e.ks.RevokeVersion(ctx, ksCaller, id, 1); err != nil {
				t.Fatal(err)
			}
			_, err = e.ks.Decrypt(ctx, ksCaller, id, 1, m1.msg)
			ksWant(t, "Decrypt with a revoked version", err, provider.EKEYREVOKED)
			if d, err := e.ks.Decrypt(ctx, ksCaller, id, 2, m2.msg); err != nil || d.Version != 2 {
				t.Fatalf("Decrypt with version 2 after version 1's revocation: version %d, %v", d.Version, err)
			}
			_, err = e.ks.Seal(ctx, ksCaller, id, []byte("p"), nil)
			ksWant(t, "Seal with an HPKE key", err, provider.EPERM)
			_, err = e.ks.Sign(ctx, ksCaller, id, []byte("m"))
			ksWant(t, "Sign with an HPKE key", err, provider.EPERM)
		})
	}
	for _, use := range []provider.Use{provider.UseSign, provider.UseDecrypt} {
		b, ok := e.cheapest(use, false)
		if !ok {
			continue
		}
		other := e.create(t, "hpke-with-"+use.String(), b)
		_, err := e.ks.Decrypt(ctx, ksCaller, other, 0, core.HPKEMessage{Enc: make([]byte, 32), Ciphertext: make([]byte, 32)})
		ksWant(t, "Decrypt with a "+use.String()+" key", err, provider.EPERM)
	}
}

// ksMaterial makes key material of a outside the provider, in its import
// format, with the public key (and, for AEAD and MAC keys, the raw key)
// to check the imported key against.
func ksMaterial(t *testing.T, a provider.Algorithm) *provImportMaterial {
	t.Helper()
	sp, err := defaultRegistry().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Use == provider.UseDecrypt || sp.Use == provider.UseMAC {
		raw := make([]byte, sp.SecretSize)
		if _, err := rand.Read(raw); err != nil {
			t.Fatal(err)
		}
		return &provImportMaterial{data: raw, raw: raw}
	}
	if bits := rsaBitsOf(a); bits != 0 {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		m, err := pkcs8Material(k, x509.MarshalPKCS1PublicKey(&k.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	priv, pub, err := newImportPrivateKey(a)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pkcs8Material(priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ksImportable returns, per use, the announced algorithm with an import
// format whose keys are quickest to make.
func (e *ksEnv) ksImportable() []provider.Algorithm {
	var out []provider.Algorithm
	for _, u := range provUses {
		var best provider.Algorithm
		bestCost := -1.0
		for _, a := range e.algs(u) {
			s, err := defaultRegistry().Lookup(a)
			if err != nil || !s.Importable() {
				continue
			}
			if _, ok := hpkeSuites[a]; u == provider.UseAsymmetricDecrypt && !ok {
				continue
			}
			if bestCost < 0 || s.GenerateCost < bestCost {
				best, bestCost = a, s.GenerateCost
			}
		}
		if bestCost >= 0 {
			out = append(out, best)
		}
	}
	return out
}

// importInto gets import parameters for key id of algorithm a (checking
// them), wraps m to them with crypto/hpke as a client does, and imports.
func (e *ksEnv) importInto(t *testing.T, id core.KeyID, a provider.Algorithm, m *provImportMaterial) (core.Metadata, core.ImportParameters, core.ImportRequest, error) {
	t.Helper()
	ctx := t.Context()
	p, err := e.ks.ImportParameters(ctx, ksCaller, id, core.ImportOptions{Algorithm: a})
	if err != nil {
		return core.Metadata{}, p, core.ImportRequest{}, err
	}
	want := hpkeSuites[core.DefaultImportWrapping]
	switch {
	case p.ID != id || p.Algorithm != a || p.WrappingAlgorithm != core.DefaultImportWrapping:
		t.Fatalf("ImportParameters(%s, %s): for %s, %s, wrapping %s; want the key, its algorithm and %s", id, a, p.ID, p.Algorithm, p.WrappingAlgorithm, core.DefaultImportWrapping)
	case p.KEMID != want.kem || p.KDFID != want.kdf || p.AEADID != want.aead:
		t.Fatalf("ImportParameters(%s): suite %#04x/%#04x/%#04x, want %#04x/%#04x/%#04x", id, p.KEMID, p.KDFID, p.AEADID, want.kem, want.kdf, want.aead)
	case !bytes.Equal(p.Info, provider.ImportInfo(id, a)):
		t.Fatalf("ImportParameters(%s): info %q, want provider.ImportInfo", id, p.Info)
	case !strings.HasPrefix(p.Token, "kit1."):
		t.Fatalf("ImportParameters(%s): token %q is not a kit1. token", id, p.Token)
	case !p.Expires.Equal(e.clock.Now().Add(core.DefaultImportTTL)):
		t.Fatalf("ImportParameters(%s): expires %v, want now + %v", id, p.Expires, core.DefaultImportTTL)
	}
	enc, ct, err := hpkeSealWith(hpkeSuite{p.KEMID, p.KDFID, p.AEADID}, p.PublicKey, p.Info, nil, m.data)
	if err != nil {
		t.Fatal(err)
	}
	r := core.ImportRequest{Token: p.Token, Enc: enc, Wrapped: ct}
	md, err := e.ks.Import(ctx, ksCaller, id, r)
	return md, p, r, err
}

// ksUseImported checks version v of the imported key id against m, used
// outside: a signature verifies under m's own public key, a tag is
// crypto/hmac's under the raw key, a message to m's public key decrypts,
// a seal round-trips (the keystore's envelope is its own, so the raw AEAD
// key is checked by the provider suite's Import/RoundTrip).
func (e *ksEnv) ksUseImported(t *testing.T, id core.KeyID, v core.Version, a provider.Algorithm, m *provImportMaterial) {
	t.Helper()
	ctx := t.Context()
	msg := []byte("conformance: imported through the keystore")
	s, err := defaultRegistry().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	switch s.Use {
	case provider.UseSign:
		sig, err := e.ks.SignWith(ctx, ksCaller, id, v, core.SignInput{Message: msg})
		if err != nil {
			t.Fatalf("SignWith(%s, version %d): %v", id, v, err)
		}
		if vf, ok := independentVerifiers[a]; ok && !vf(m.pub, msg, sig.Signature) {
			t.Fatalf("the signature of imported version %d does not verify under the imported key's own public key", v)
		}
	case provider.UseMAC:
		if v != 0 {
			if err := e.ks.VerifyMAC(ctx, ksCaller, id, v, msg, independentTag(a, m.raw, msg)); err != nil {
				t.Fatalf("VerifyMAC(%s, version %d) of crypto/hmac's tag under the raw key: %v", id, v, err)
			}
			return
		}
		tag, err := e.ks.MAC(ctx, ksCaller, id, msg)
		if err != nil || !bytes.Equal(tag.Tag, independentTag(a, m.raw, msg)) {
			t.Fatalf("MAC(%s) with the imported key: %v; want crypto/hmac's tag under the raw key", id, err)
		}
	case provider.UseDecrypt:
		if v != 0 {
			return // a seal is always under the primary; Unseal of older blobs is checked by the caller
		}
		b, err := e.ks.Seal(ctx, ksCaller, id, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		u, err := e.ks.Unseal(ctx, ksCaller, id, b.Data, nil)
		if err != nil || !bytes.Equal(u.Plaintext, msg) {
			t.Fatalf("Unseal with the imported key: %v", err)
		}
	case provider.UseAsymmetricDecrypt:
		enc, ct, err := hpkeSeal(a, m.pub, []byte("i"), []byte("a"), msg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.ks.Decrypt(ctx, ksCaller, id, v, core.HPKEMessage{Enc: enc, Ciphertext: ct, Info: []byte("i"), AAD: []byte("a")})
		if err != nil || !bytes.Equal(d.Plaintext, msg) {
			t.Fatalf("Decrypt(%s, version %d) of a message to the imported key's own public key: %v", id, v, err)
		}
	}
}

// ksImport: (per use, the quickest announced algorithm with an import
// format) ImportParameters gives the default hybrid suite's wrapping key,
// the import info, a kit1. token and a 24 h expiry; material made outside
// (PKCS #8 or raw), wrapped with crypto/hpke, imports into a new key of
// origin imported with the material's own public key, and works as that
// material does outside; the token then is EALREADY; a second import adds
// version 2 (imported; version 1 still works); Rotate is EPERM and
// RotateWith Generate adds a generated version 3 and makes the key
// generated; material of another algorithm is EINVAL, a tampered wrap
// EBADMSG; a generated key refuses ImportParameters (EPERM). A provider
// that cannot import answers ENOTSUP, and the check says so and skips.
func ksImport(t *testing.T, e *ksEnv) {
	algs := e.ksImportable()
	if len(algs) == 0 {
		t.Skip("provider announces no algorithm with an import format")
	}
	ctx := t.Context()
	probe, err := provider.NewKeyID(ksCaller.App, "suite", "import-probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.ImportParameters(ctx, ksCaller, probe, core.ImportOptions{Algorithm: algs[0]}); errors.Is(err, provider.ErrNotSupported) && e.imports == nil {
		t.Skipf("the provider cannot import (ImportParameters is ENOTSUP: %v); accepted", err)
	} else if err != nil {
		t.Fatalf("ImportParameters: %v", err)
	}
	for _, a := range algs {
		t.Run(string(a), func(t *testing.T) {
			id, err := provider.NewKeyID(ksCaller.App, "suite", "import-"+string(a))
			if err != nil {
				t.Fatal(err)
			}
			m1 := ksMaterial(t, a)
			md, _, r, err := e.importInto(t, id, a, m1)
			if must, ok := e.imports.requires(a); ok && must && err != nil {
				t.Fatalf("Import(%s): %v; the provider was run WithImport, so it must import %s keys", id, err, a)
			}
			if errors.Is(err, provider.ErrNotSupported) {
				// As the provider suite's Import checks accept: a provider
				// that cannot import this algorithm (a token lacking the
				// key type's unwrap) says ENOTSUP, and makes no key.
				if _, gerr := e.ks.Get(ctx, ksCaller, id); !errors.Is(gerr, provider.ErrNotFound) {
					t.Fatalf("Import(%s) was ENOTSUP but Get answers %v; want ENOENT (no key made)", id, gerr)
				}
				t.Skipf("the provider cannot import %s keys (%v); accepted", a, err)
			}
			if err != nil {
				t.Fatalf("Import(%s): %v", id, err)
			}
			if md.Origin != core.OriginImported || md.Current != 1 || len(md.Versions) != 1 || md.Versions[0].Origin != core.OriginImported {
				t.Fatalf("Import(%s): origin %s, current %d, %d versions; want an imported key of one imported version", id, md.Origin, md.Current, len(md.Versions))
			}
			if !bytes.Equal(md.Versions[0].PublicKey, m1.pub) {
				t.Fatalf("Import(%s): the public key is not the imported key's own", id)
			}
			e.ksUseImported(t, id, 0, a, m1)
			var sealed []byte
			if m1.raw != nil && md.Use == provider.UseDecrypt {
				b, err := e.ks.Seal(ctx, ksCaller, id, []byte("v1"), nil)
				if err != nil {
					t.Fatal(err)
				}
				sealed = b.Data
			}
			_, err = e.ks.Import(ctx, ksCaller, id, r)
			ksWant(t, "Import with a used token", err, provider.EALREADY)

			m2 := ksMaterial(t, a)
			md, _, _, err = e.importInto(t, id, a, m2)
			if err != nil || md.Current != 2 || md.Origin != core.OriginImported || md.Versions[1].Origin != core.OriginImported {
				t.Fatalf("a second Import(%s): current %d, origin %s, %v; want imported version 2", id, md.Current, md.Origin, err)
			}
			e.ksUseImported(t, id, 0, a, m2)
			e.ksUseImported(t, id, 1, a, m1)
			if sealed != nil {
				if u, err := e.ks.Unseal(ctx, ksCaller, id, sealed, nil); err != nil || u.Version != 1 {
					t.Fatalf("Unseal of a version 1 blob after the second import: version %d, %v", u.Version, err)
				}
			}
			_, err = e.ks.Rotate(ctx, ksCaller, id)
			ksWant(t, "Rotate of an imported key", err, provider.EPERM)
			md, err = e.ks.RotateWith(ctx, ksCaller, id, core.RotateOptions{Generate: true})
			if err != nil || md.Current != 3 || md.Origin != core.OriginGenerated || md.Versions[2].Origin != core.OriginGenerated || md.Versions[0].Origin != core.OriginImported {
				t.Fatalf("RotateWith Generate: current %d, origin %s, %v; want a generated version 3 of a now generated key", md.Current, md.Origin, err)
			}
			_, err = e.ks.ImportParameters(ctx, ksCaller, id, core.ImportOptions{Algorithm: a})
			ksWant(t, "ImportParameters for a key that is now generated", err, provider.EPERM)

			// Material of another algorithm, a tampered wrap.
			wrongID, err := provider.NewKeyID(ksCaller.App, "suite", "import-wrong-"+string(a))
			if err != nil {
				t.Fatal(err)
			}
			s, err := defaultRegistry().Lookup(a)
			if err != nil {
				t.Fatal(err)
			}
			size := 0
			if s.Use == provider.UseDecrypt || s.Use == provider.UseMAC {
				size = s.SecretSize
			}
			wrongs, err := wrongMaterial(a, size)
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = e.importInto(t, wrongID, a, &provImportMaterial{data: wrongs[0].data})
			ksWant(t, "Import of "+wrongs[0].name, err, provider.EINVAL)
			p, err := e.ks.ImportParameters(ctx, ksCaller, wrongID, core.ImportOptions{Algorithm: a})
			if err != nil {
				t.Fatal(err)
			}
			enc, ct, err := hpkeSealWith(hpkeSuite{p.KEMID, p.KDFID, p.AEADID}, p.PublicKey, p.Info, nil, m1.data)
			if err != nil {
				t.Fatal(err)
			}
			ct[0] ^= 1
			_, err = e.ks.Import(ctx, ksCaller, wrongID, core.ImportRequest{Token: p.Token, Enc: enc, Wrapped: ct})
			ksWant(t, "Import of a tampered wrap", err, provider.EBADMSG)
			if _, err := e.ks.Get(ctx, ksCaller, wrongID); !errors.Is(err, provider.ErrNotFound) {
				t.Fatalf("Get of a key whose imports all failed: %v; want ENOENT", err)
			}
		})
	}
	gen, ok := e.cheapest(provider.UseSign, false)
	if ok {
		if s, err := defaultRegistry().Lookup(gen); err == nil && s.Importable() {
			id := e.create(t, "import-into-generated", gen)
			_, err := e.ks.ImportParameters(ctx, ksCaller, id, core.ImportOptions{Algorithm: gen})
			ksWant(t, "ImportParameters for a generated key", err, provider.EPERM)
		}
	}
}

package leak

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/testseed"
)

// Issue 12's calls in the workload: HPKE decryption, data keys and key
// import. What they add to the search:
//   - HPKE keys' private material, as for every key (testseed's known
//     secrets of their versions);
//   - every data key the daemon handed out (GenerateDataKey's plaintext,
//     and GenerateDataKeyWithoutPlaintext's, unsealed): in no log, audit
//     record or state file (responses carry them, by design);
//   - every imported key's material in each form that gives it away (the
//     PKCS #8 DER, the seed or scalar, SEC 1, the raw key): nowhere, not
//     even in a response;
//   - every one-time import wrapping key's private material, recomputed
//     from the seed (testseed's import draws) and checked against the
//     public key the daemon handed out: nowhere.

// hpkeSealTo seals pt to an HPKE public key response with crypto/hpke.
func hpkeSealTo(t *testing.T, kemID, kdfID, aeadID uint32, pub, info, aad, pt []byte) (enc, ct []byte) {
	t.Helper()
	kem, err := hpke.NewKEM(uint16(kemID))
	if err != nil {
		t.Fatal(err)
	}
	kdf, err := hpke.NewKDF(uint16(kdfID))
	if err != nil {
		t.Fatal(err)
	}
	aead, err := hpke.NewAEAD(uint16(aeadID))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("the daemon's HPKE public key does not decode: %v", err)
	}
	enc, s, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		t.Fatal(err)
	}
	if ct, err = s.Seal(aad, pt); err != nil {
		t.Fatal(err)
	}
	return enc, ct
}

// hpkeMessage is a message the workload sent to an HPKE key version.
type hpkeMessage struct {
	version            int64
	enc, ct, info, aad []byte
	plaintext          []byte
}

func (m hpkeMessage) request(key string) *keystorev1.DecryptRequest {
	return &keystorev1.DecryptRequest{Key: key, Version: m.version, Enc: m.enc, Ciphertext: m.ct, Info: m.info, Aad: m.aad}
}

// sealToKey sends a new canary plaintext (with canary info and aad) to
// version v of the HPKE key name.
func (w *workload) sealToKey(ctx context.Context, name string, v int64) (hpkeMessage, bool) {
	pub, err := w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name, Version: v})
	w.expect(fmt.Sprintf("public key v%d %s", v, name), err, "ok")
	if err != nil {
		return hpkeMessage{}, false
	}
	m := hpkeMessage{version: v, info: w.next("info"), aad: w.next("aad"), plaintext: w.next("plaintext")}
	m.enc, m.ct = hpkeSealTo(w.t, pub.GetKemId(), pub.GetKdfId(), pub.GetAeadId(), pub.GetPublicKey(), m.info, m.aad, m.plaintext)
	return m, true
}

// hpkeKey drives Decrypt over the HPKE key name, with its error paths, a
// rotation and a revoked version.
func (w *workload) hpkeKey(ctx context.Context, name string) {
	t := w.t
	g, err := w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: name})
	w.expect("get "+name, err, "ok")
	m1, ok := w.sealToKey(ctx, name, 1)
	if !ok {
		return
	}
	d, err := w.keys.Decrypt(ctx, m1.request(name))
	w.expect("decrypt "+name, err, "ok")
	if err == nil && !bytes.Equal(d.GetPlaintext(), m1.plaintext) {
		t.Errorf("decrypt %s: plaintext differs", name)
	}
	for what, f := range map[string]func(r *keystorev1.DecryptRequest){
		"another aad":        func(r *keystorev1.DecryptRequest) { r.Aad = w.next("aad") },
		"another info":       func(r *keystorev1.DecryptRequest) { r.Info = w.next("info") },
		"a flipped tag":      func(r *keystorev1.DecryptRequest) { r.Ciphertext = flipLast(r.Ciphertext) },
		"a flipped enc":      func(r *keystorev1.DecryptRequest) { r.Enc = flipLast(r.Enc) },
		"a short enc":        func(r *keystorev1.DecryptRequest) { r.Enc = r.Enc[:len(r.Enc)-1] },
		"under a tag":        func(r *keystorev1.DecryptRequest) { r.Ciphertext = r.Ciphertext[:15] },
		"version 2 (absent)": func(r *keystorev1.DecryptRequest) { r.Version = 2 },
	} {
		r := m1.request(name)
		f(r)
		want := "EBADMSG"
		if what == "version 2 (absent)" {
			want = "ENOENT"
		}
		_, err = w.keys.Decrypt(ctx, r)
		w.expect("decrypt with "+what+" "+name, err, want)
	}
	over := m1.request(name)
	over.Ciphertext = append(w.next("plaintext"), make([]byte, provider.MaxHPKECiphertext)...)
	_, err = w.keys.Decrypt(ctx, over)
	w.expect("decrypt oversize "+name, err, "EMSGSIZE")
	_, err = w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: w.next("plaintext"), Aad: w.next("aad")})
	w.expect("seal with HPKE key "+name, err, "EPERM")
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: w.next("message")})
	w.expect("sign with HPKE key "+name, err, "EPERM")
	_, err = w.keys.GenerateDataKey(ctx, &keystorev1.GenerateDataKeyRequest{Key: name, Aad: w.next("aad")})
	w.expect("data key with HPKE key "+name, err, "EPERM")
	rot, err := w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name})
	w.expect("rotate "+name, err, "ok")
	if err == nil {
		w.track(rot.GetKey())
	}
	d, err = w.keys.Decrypt(ctx, m1.request(name))
	w.expect("decrypt retired version 1 "+name, err, "ok")
	if err == nil && (d.GetVersion() != 1 || !bytes.Equal(d.GetPlaintext(), m1.plaintext)) {
		t.Errorf("decrypt %s version 1 after a rotation: version %d, plaintext differs %v", name, d.GetVersion(), !bytes.Equal(d.GetPlaintext(), m1.plaintext))
	}
	primary := m1.request(name)
	primary.Version = 0
	_, err = w.keys.Decrypt(ctx, primary)
	w.expect("decrypt version 1's message with the primary "+name, err, "EBADMSG")
	m2, ok := w.sealToKey(ctx, name, 2)
	if !ok {
		return
	}
	_, err = w.keys.Decrypt(ctx, m2.request(name))
	w.expect("decrypt v2 "+name, err, "ok")
	r, err := w.keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: name, Version: 1})
	w.expect("revoke v1 "+name, err, "ok")
	if err == nil {
		w.track(r.GetKey())
	}
	_, err = w.keys.Decrypt(ctx, m1.request(name))
	w.expect("decrypt revoked version 1 "+name, err, "EKEYREVOKED")
	w.hpke[name] = m2
	if g != nil {
		w.track(g.GetKey())
	}
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	if len(b) > 0 {
		b[len(b)-1] ^= 1
	}
	return b
}

// dataKeyCalls asks the AEAD key name for data keys of every kind, each
// unsealed back (the ones without plaintext learnt that way), and for the
// refused ones.
func (w *workload) dataKeyCalls(ctx context.Context, name string) {
	t := w.t
	for _, req := range []*keystorev1.GenerateDataKeyRequest{
		{Key: name, Aad: w.next("aad")},
		{Key: name, Spec: "aes-128-gcm", Aad: w.next("aad")},
		{Key: name, Spec: "xchacha20-poly1305"},
		{Key: name, NumberOfBytes: 64, Aad: w.next("aad")},
	} {
		r, err := w.keys.GenerateDataKey(ctx, req)
		w.expect("data key "+name, err, "ok")
		if err != nil {
			continue
		}
		w.datakeys = append(w.datakeys, needle{what: fmt.Sprintf("data key of %s@%d (%d bytes)", name, r.GetVersion(), len(r.GetPlaintext())), b: r.GetPlaintext()})
		u, err := w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: r.GetSealed(), Aad: req.GetAad()})
		w.expect("unseal a data key "+name, err, "ok")
		if err == nil && !bytes.Equal(u.GetPlaintext(), r.GetPlaintext()) {
			t.Errorf("data key %s: the sealed key unseals to another key", name)
		}
	}
	a := w.next("aad")
	r, err := w.keys.GenerateDataKeyWithoutPlaintext(ctx, &keystorev1.GenerateDataKeyRequest{Key: name, NumberOfBytes: 48, Aad: a})
	w.expect("data key without plaintext "+name, err, "ok")
	if err == nil {
		if len(r.GetPlaintext()) != 0 {
			t.Errorf("data key without plaintext %s: a %d-byte plaintext", name, len(r.GetPlaintext()))
		}
		u, err := w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: r.GetSealed(), Aad: a})
		w.expect("unseal a data key without plaintext "+name, err, "ok")
		if err == nil {
			w.datakeys = append(w.datakeys, needle{what: "data key (without plaintext) of " + name, b: u.GetPlaintext()})
		}
	}
	for what, req := range map[string]*keystorev1.GenerateDataKeyRequest{
		"an unknown spec":   {Key: name, Spec: "aes-512-gcm"},
		"a spec and a size": {Key: name, Spec: "aes-256-gcm", NumberOfBytes: 32},
		"too few bytes":     {Key: name, NumberOfBytes: 8},
		"a signing key":     {Key: keyName("leak", provider.Ed25519)},
		"a missing key":     {Key: "leak/box/missing"},
		"a bad name":        {Key: "../box/k"},
		"an oversize AAD":   {Key: name, Aad: append(w.next("aad"), make([]byte, provider.MaxAAD)...)},
	} {
		want := map[string]string{"a signing key": "EPERM", "a missing key": "ENOENT", "an oversize AAD": "EMSGSIZE"}[what]
		if want == "" {
			want = "EINVAL"
		}
		_, err := w.keys.GenerateDataKey(ctx, req)
		w.expect("data key with "+what+" "+name, err, want)
		_, err = w.keys.GenerateDataKeyWithoutPlaintext(ctx, req)
		w.expect("data key without plaintext with "+what+" "+name, err, want)
	}
}

// wrapRecord is a one-time import wrapping key the daemon handed out.
type wrapRecord struct {
	key, alg string
	pub      []byte
}

// importParams gets import parameters for key (remembering the wrapping
// key) and wraps material to them.
func (w *workload) importParams(ctx context.Context, key, a, wrapping string, material []byte) (*keystorev1.ImportKeyRequest, bool) {
	p, err := w.keys.GetImportParameters(ctx, &keystorev1.GetImportParametersRequest{Key: key, Algorithm: a, WrappingAlgorithm: wrapping})
	w.expect("import parameters "+a+" "+key, err, "ok")
	if err != nil {
		return nil, false
	}
	w.wraps = append(w.wraps, wrapRecord{key: p.GetKey(), alg: p.GetWrappingAlgorithm(), pub: p.GetPublicKey()})
	enc, wrapped := hpkeSealTo(w.t, p.GetKemId(), p.GetKdfId(), p.GetAeadId(), p.GetPublicKey(), p.GetInfo(), nil, material)
	return &keystorev1.ImportKeyRequest{Key: key, Token: p.GetToken(), Enc: enc, Wrapped: wrapped}, true
}

// importKey imports material into key; the version it makes is the
// material's (the daemon's public key of it must be pub, when given).
func (w *workload) importKey(ctx context.Context, key, a, wrapping string, material, pub []byte) *keystorev1.KeyMetadata {
	req, ok := w.importParams(ctx, key, a, wrapping, material)
	if !ok {
		return nil
	}
	r, err := w.keys.Import(ctx, req)
	w.expect("import "+a+" "+key, err, "ok")
	if err != nil {
		return nil
	}
	m := r.GetKey()
	w.track(m)
	vs := m.GetVersions()
	if len(vs) == 0 || vs[len(vs)-1].GetOrigin() != "imported" || m.GetOrigin() != "imported" {
		w.t.Errorf("import %s: metadata %v, want an imported key and version", key, m)
	}
	if pub != nil && (len(vs) == 0 || !bytes.Equal(vs[len(vs)-1].GetPublicKey(), pub)) {
		w.t.Errorf("import %s: the daemon's public key is not the imported material's", key)
	}
	_, err = w.keys.Import(ctx, req)
	w.expect("import again with the spent token "+key, err, "EALREADY")
	return m
}

// importCalls imports key material made here, in every format, each
// checked to be what the daemon uses, with the refusals.
func (w *workload) importCalls(ctx context.Context) {
	t := w.t
	mk := func(label string) []byte {
		h := sha256.Sum256([]byte("keystored/e2e/leak/import/" + label))
		return h[:]
	}
	secret := func(what string, b []byte) { w.imported = append(w.imported, needle{what: "imported " + what, b: b}) }

	// Ed25519, PKCS #8; then a second version.
	ed := ed25519.NewKeyFromSeed(mk("ed25519"))
	edP8, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	secret("ed25519 PKCS #8", edP8)
	secret("ed25519 seed", ed.Seed())
	secret("ed25519 private key", ed)
	name := "leak/imp/ed25519"
	w.importKey(ctx, name, "ed25519", "", edP8, ed.Public().(ed25519.PublicKey))
	msg := w.next("message")
	s, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: msg})
	w.expect("sign with the imported key", err, "ok")
	if err == nil && !ed25519.Verify(ed.Public().(ed25519.PublicKey), msg, s.GetSignature()) {
		t.Error("the imported Ed25519 key's signature does not verify with the material's public key")
	}
	ed2 := ed25519.NewKeyFromSeed(mk("ed25519 v2"))
	ed2P8, err := x509.MarshalPKCS8PrivateKey(ed2)
	if err != nil {
		t.Fatal(err)
	}
	secret("ed25519 v2 PKCS #8", ed2P8)
	secret("ed25519 v2 seed", ed2.Seed())
	w.importKey(ctx, name, "ed25519", "hpke-p256-sha256-aes128gcm", ed2P8, ed2.Public().(ed25519.PublicKey))
	_, err = w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name})
	w.expect("rotate an imported key", err, "EPERM")
	rot, err := w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name, Generate: true})
	w.expect("rotate an imported key to generated", err, "ok")
	if err == nil {
		w.track(rot.GetKey())
	}

	// ECDSA P-256, PKCS #8.
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), mk("ecdsa"))
	if err != nil {
		t.Fatal(err)
	}
	ecP8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := ec.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secret("ecdsa PKCS #8", ecP8)
	secret("ecdsa SEC 1", sec1)
	secret("ecdsa scalar", mk("ecdsa"))
	w.importKey(ctx, "leak/imp/ecdsa", "ecdsa-p256-sha256", "hpke-x25519-sha256-chacha20poly1305", ecP8, ecPub)

	// X25519 for HPKE, PKCS #8: a message to it decrypts.
	x, err := ecdh.X25519().NewPrivateKey(mk("x25519"))
	if err != nil {
		t.Fatal(err)
	}
	xP8, err := x509.MarshalPKCS8PrivateKey(x)
	if err != nil {
		t.Fatal(err)
	}
	secret("x25519 PKCS #8", xP8)
	secret("x25519 private key", x.Bytes())
	w.importKey(ctx, "leak/imp/x25519", string(provider.HPKEX25519), "", xP8, x.PublicKey().Bytes())
	if m, ok := w.sealToKey(ctx, "leak/imp/x25519", 1); ok {
		d, err := w.keys.Decrypt(ctx, m.request("leak/imp/x25519"))
		w.expect("decrypt with the imported X25519 key", err, "ok")
		if err == nil && !bytes.Equal(d.GetPlaintext(), m.plaintext) {
			t.Error("the imported X25519 key decrypts to another plaintext")
		}
	}

	// AES-256-GCM and HMAC-SHA256, raw: the daemon seals what opens here
	// and MACs what HMACs here.
	aesKey, hmacKey := mk("aes"), mk("hmac")
	secret("aes-256-gcm key", aesKey)
	secret("hmac-sha256 key", hmacKey)
	if m := w.importKey(ctx, "leak/imp/aes", "aes-256-gcm", "", aesKey, nil); m != nil {
		pt, a := w.next("plaintext"), w.next("aad")
		s, err := w.keys.Seal(ctx, &keystorev1.SealRequest{Key: "leak/imp/aes", Plaintext: pt, Aad: a})
		w.expect("seal with the imported AES key", err, "ok")
		if got, oerr := openAES(aesKey, m.GetId(), a, s.GetSealed()); err == nil && (oerr != nil || !bytes.Equal(got, pt)) {
			t.Errorf("the imported AES key's envelope does not open with the material: %v", oerr)
		}
	}
	if w.importKey(ctx, "leak/imp/hmac", "hmac-sha256", "", hmacKey, nil) != nil {
		msg := w.next("message")
		r, err := w.keys.Mac(ctx, &keystorev1.MacRequest{Key: "leak/imp/hmac", Message: msg})
		w.expect("mac with the imported HMAC key", err, "ok")
		h := hmac.New(sha256.New, hmacKey)
		h.Write(msg)
		if err == nil && !bytes.Equal(r.GetTag(), h.Sum(nil)) {
			t.Error("the imported HMAC key's tag is not the material's")
		}
	}

	// Refusals: material of another algorithm or size, tampered wrapped
	// material, tokens unknown, malformed or of another key; algorithms
	// that cannot be imported; a generated key.
	for _, c := range []struct {
		what, key, alg string
		material       []byte
		want           string
	}{
		{"ed25519 material as ecdsa", "leak/imp/wrong", "ecdsa-p256-sha256", edP8, "EINVAL"},
		{"ecdsa material as ed25519", "leak/imp/wrong", "ed25519", ecP8, "EINVAL"},
		{"16 bytes as aes-256-gcm", "leak/imp/wrong", "aes-256-gcm", aesKey[:16], "EINVAL"},
		{"PKCS #8 as hmac-sha256", "leak/imp/wrong", "hmac-sha256", edP8, "EINVAL"},
	} {
		req, ok := w.importParams(ctx, c.key, c.alg, "", c.material)
		if !ok {
			continue
		}
		_, err := w.keys.Import(ctx, req)
		w.expect("import "+c.what, err, c.want)
	}
	if req, ok := w.importParams(ctx, "leak/imp/wrong", "aes-256-gcm", "", aesKey); ok {
		other := &keystorev1.ImportKeyRequest{Key: "leak/imp/other", Token: req.GetToken(), Enc: req.GetEnc(), Wrapped: req.GetWrapped()}
		_, err := w.keys.Import(ctx, other)
		w.expect("import with another key's token", err, "EINVAL")
		bad := &keystorev1.ImportKeyRequest{Key: req.GetKey(), Token: req.GetToken(), Enc: req.GetEnc(), Wrapped: flipLast(req.GetWrapped())}
		_, err = w.keys.Import(ctx, bad)
		w.expect("import of tampered wrapped material", err, "EBADMSG")
	}
	for tok, want := range map[string]string{"kit1.AAAAAAAAAAAAAAAAAAAAAA": "ENOENT", "kit1.short": "EINVAL", "": "EINVAL"} {
		_, err := w.keys.Import(ctx, &keystorev1.ImportKeyRequest{Key: "leak/imp/wrong", Token: tok, Enc: make([]byte, 32), Wrapped: w.next("plaintext")})
		w.expect("import with token "+tok, err, want)
	}
	for _, a := range []string{"ed448", "ml-dsa-65", string(provider.HPKEMLKEM768X25519)} {
		_, err := w.keys.GetImportParameters(ctx, &keystorev1.GetImportParametersRequest{Key: "leak/imp/wrong", Algorithm: a})
		w.expect("import parameters for "+a, err, "ENOTSUP")
	}
	_, err = w.keys.GetImportParameters(ctx, &keystorev1.GetImportParametersRequest{Key: keyName("leak", provider.Ed25519), Algorithm: "ed25519"})
	w.expect("import parameters for a generated key", err, "EPERM")
	_, err = w.keys.GetImportParameters(ctx, &keystorev1.GetImportParametersRequest{Key: "leak/imp/wrong", Algorithm: "aes-256-gcm", TtlSeconds: 1})
	w.expect("import parameters valid 1 s", err, "EINVAL")
	if _, err := w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: "leak/imp/wrong"}); code(err) != "ENOENT" {
		t.Errorf("refused imports made leak/imp/wrong: %v", err)
	}
}

// openAES opens a keystored aes-256-gcm envelope (docs/storage.md) with
// the raw key.
func openAES(key []byte, keyID string, aad, sealed []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 8+g.NonceSize()+g.Overhead() {
		return nil, fmt.Errorf("a %d-byte envelope", len(sealed))
	}
	hdr := sealed[:8]
	a := append([]byte(nil), hdr...)
	a = binary.BigEndian.AppendUint16(a, uint16(len(keyID)))
	a = append(a, keyID...)
	a = binary.BigEndian.AppendUint32(a, uint32(len(aad)))
	a = append(a, aad...)
	return g.Open(nil, sealed[8:8+g.NonceSize()], sealed[8+g.NonceSize():], a)
}

// wrapSecrets recomputes the private material of every import wrapping
// key the daemon handed out: testseed draws it as HKDF(seed, Salt,
// "import" ‖ u64be(n) ‖ wrap ref, 32), n counting the provider's import
// draws, and derives the key pair from it (docs/testing.md). The n whose
// key pair has the public key the daemon handed out is found by trying
// them in turn; a wrapping key none matches fails the test (the search
// for its secrets would be vacuous).
func wrapSecrets(t *testing.T, seed []byte, wraps []wrapRecord, provName string) []needle {
	t.Helper()
	maxDraws := uint64(4*len(wraps) + 64)
	var out []needle
	for _, wr := range wraps {
		id, err := provider.ParseKeyID(wr.key)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := alg.Default().Lookup(provider.Algorithm(wr.alg))
		if err != nil {
			t.Fatal(err)
		}
		ref := provider.KeyRef{ID: id, Version: 1, Algorithm: spec.Name, Use: provider.UseAsymmetricDecrypt, Provider: provName}
		refBin, err := ref.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for n := uint64(1); n <= maxDraws && !found; n++ {
			info := append(binary.BigEndian.AppendUint64([]byte("import"), n), refBin...)
			random, err := hkdf.Key(sha256.New, seed, []byte(testseed.Salt), string(info), 32)
			if err != nil {
				t.Fatal(err)
			}
			material, err := spec.NewMaterial(random, true)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := spec.NewDecrypter(material)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(dec.PublicKey(), wr.pub) {
				found = true
				out = append(out, needle{what: fmt.Sprintf("import wrapping key of %s (%s, draw %d)", wr.key, wr.alg, n), b: material},
					needle{what: fmt.Sprintf("import wrapping key seed of %s (draw %d)", wr.key, n), b: random})
			}
		}
		if !found {
			t.Errorf("import wrapping key of %s (%s): no testseed import draw up to %d has its public key; the computed secrets are not the daemon's", wr.key, wr.alg, maxDraws)
		}
	}
	return out
}

package core_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// fixedAESKey is a known AES-256 key the tests import.
var fixedAESKey = bytes.Repeat([]byte{0x42}, 32)

// importRequest gets import parameters for id and seals material to them
// the way a client does (crypto/hpke, base mode, the parameters' info).
func (e *env) importRequest(t *testing.T, c core.Caller, id core.KeyID, a core.Algorithm, material []byte) core.ImportRequest {
	t.Helper()
	p, err := e.ks.ImportParameters(ctx, c, id, core.ImportOptions{Algorithm: a})
	if err != nil {
		t.Fatalf("ImportParameters(%s): %v", id, err)
	}
	enc, ct := sealTo(t, p.KEMID, p.KDFID, p.AEADID, p.PublicKey, p.Info, nil, material)
	return core.ImportRequest{Token: p.Token, Enc: enc, Wrapped: ct}
}

// sealTo seals msg with crypto/hpke to a serialized public key.
func sealTo(t *testing.T, kemID, kdfID, aeadID uint16, pub, info, aad, msg []byte) (enc, ct []byte) {
	t.Helper()
	kem, err := hpke.NewKEM(kemID)
	if err != nil {
		t.Fatal(err)
	}
	kdf, err := hpke.NewKDF(kdfID)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := hpke.NewAEAD(aeadID)
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

// hpkeSeal sends msg to version v of an HPKE key, info "i", aad "a".
func (e *env) hpkeSeal(t *testing.T, c core.Caller, id core.KeyID, v core.Version, msg []byte) core.HPKEMessage {
	t.Helper()
	pk, err := e.ks.PublicKey(ctx, c, id, v)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := alg.Default().Lookup(pk.Algorithm)
	if err != nil {
		t.Fatal(err)
	}
	enc, ct := sealTo(t, spec.KEMID, spec.KDFID, spec.AEADID, pk.Key, []byte("i"), []byte("a"), msg)
	return core.HPKEMessage{Enc: enc, Ciphertext: ct, Info: []byte("i"), AAD: []byte("a")}
}

func TestDataKey(t *testing.T) {
	e := newEnv(t)
	id := e.create(t, appA, "app-a/d/k", provider.XChaCha20Poly1305)
	for _, c := range []struct {
		spec core.DataKeySpec
		size int
	}{{core.DataKeySpec{}, 32}, {core.DataKeySpec{Name: "aes-128-gcm"}, 16}, {core.DataKeySpec{Name: "xchacha20-poly1305"}, 32}, {core.DataKeySpec{Size: 64}, 64}} {
		d, err := e.ks.GenerateDataKey(ctx, appA, id, c.spec, []byte("ctx"))
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Plaintext) != c.size || d.Version != 1 {
			t.Fatalf("%+v: data key of %d bytes, version %d", c.spec, len(d.Plaintext), d.Version)
		}
		u, err := e.ks.Unseal(ctx, appA, id, d.Sealed, []byte("ctx"))
		if err != nil || !bytes.Equal(u.Plaintext, d.Plaintext) {
			t.Fatalf("Unseal of the sealed data key: %v", err)
		}
		if _, err := e.ks.Unseal(ctx, appA, id, d.Sealed, []byte("other")); !errors.Is(err, provider.ErrBadMessage) {
			t.Fatalf("Unseal with another AAD: %v, want EBADMSG", err)
		}
		if ev := e.audit.last(t); ev.Op != core.OpUnseal {
			t.Fatalf("last event %v", ev.Op)
		}
	}
	s, err := e.ks.GenerateDataKeyWithoutPlaintext(ctx, appA, id, core.DataKeySpec{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := e.ks.Unseal(ctx, appA, id, s.Data, nil); err != nil || len(u.Plaintext) != 32 {
		t.Fatalf("Unseal of a data key without plaintext: %v", err)
	}
	if ev := e.audit.all(); ev[len(ev)-2].Op != core.OpGenerateDataKeyWithoutPlaintext {
		t.Fatalf("event %v", ev[len(ev)-2].Op)
	}
	// Each data key counts as a seal.
	m, err := e.ks.Get(ctx, appA, id)
	if err != nil || m.Versions[0].Seals != 5 {
		t.Fatalf("seals counted %d, want 5 (%v)", m.Versions[0].Seals, err)
	}
	for _, bad := range []core.DataKeySpec{{Name: "aes-256-gcm", Size: 32}, {Name: "des"}, {Size: 8}, {Size: 65}} {
		if _, err := e.ks.GenerateDataKey(ctx, appA, id, bad, nil); !errors.Is(err, provider.ErrInvalid) {
			t.Errorf("spec %+v: %v, want EINVAL", bad, err)
		}
	}
	if _, err := e.ks.GenerateDataKey(ctx, appA, id, core.DataKeySpec{}, make([]byte, provider.MaxAAD+1)); !errors.Is(err, provider.ErrTooLarge) {
		t.Errorf("oversize AAD: %v", err)
	}
	sid := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if _, err := e.ks.GenerateDataKey(ctx, appA, sid, core.DataKeySpec{}, nil); !errors.Is(err, provider.ErrPermission) {
		t.Errorf("data key under a sign key: %v, want EPERM", err)
	}
	if _, err := e.ks.GenerateDataKey(ctx, appB, id, core.DataKeySpec{}, nil); !errors.Is(err, provider.ErrPermission) {
		t.Errorf("data key under another app's key: %v, want EPERM", err)
	}
}

func TestHPKEDecrypt(t *testing.T) {
	e := newEnv(t)
	for _, a := range []core.Algorithm{provider.HPKEX25519, provider.HPKEP256, provider.HPKEMLKEM768X25519} {
		id := e.create(t, appA, "app-a/h/"+strings.ReplaceAll(string(a), "-", ""), a)
		m1 := e.hpkeSeal(t, appA, id, 1, []byte("to v1"))
		if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
		m2 := e.hpkeSeal(t, appA, id, 2, []byte("to v2"))
		for _, c := range []struct {
			v    core.Version
			m    core.HPKEMessage
			want string
		}{{1, m1, "to v1"}, {2, m2, "to v2"}, {0, m2, "to v2"}} {
			d, err := e.ks.Decrypt(ctx, appA, id, c.v, c.m)
			if err != nil || string(d.Plaintext) != c.want {
				t.Fatalf("%s v%d: %q %v", a, c.v, d.Plaintext, err)
			}
		}
		// A message to v1 does not open with v2, and tampering is EBADMSG.
		if _, err := e.ks.Decrypt(ctx, appA, id, 2, m1); !errors.Is(err, provider.ErrBadMessage) {
			t.Fatalf("%s: v1 message under v2: %v", a, err)
		}
		for i, m := range []core.HPKEMessage{
			{Enc: flipped(m2.Enc), Ciphertext: m2.Ciphertext, Info: m2.Info, AAD: m2.AAD},
			{Enc: m2.Enc, Ciphertext: flipped(m2.Ciphertext), Info: m2.Info, AAD: m2.AAD},
			{Enc: m2.Enc, Ciphertext: m2.Ciphertext, Info: []byte("j"), AAD: m2.AAD},
			{Enc: m2.Enc, Ciphertext: m2.Ciphertext, Info: m2.Info, AAD: []byte("b")},
			{Enc: m2.Enc[1:], Ciphertext: m2.Ciphertext, Info: m2.Info, AAD: m2.AAD},
		} {
			if _, err := e.ks.Decrypt(ctx, appA, id, 2, m); !errors.Is(err, provider.ErrBadMessage) {
				t.Errorf("%s tampered %d: %v, want EBADMSG", a, i, err)
			}
		}
		if ev := e.audit.last(t); ev.Op != core.OpDecrypt || ev.Version != 2 {
			t.Fatalf("audit %+v", ev)
		}
		// The minimum decryption version and a revoked version refuse.
		if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{MinDecryptionVersion: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ks.Decrypt(ctx, appA, id, 1, m1); !errors.Is(err, provider.ErrPermission) {
			t.Fatalf("below the minimum: %v", err)
		}
		if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ks.RevokeVersion(ctx, appA, id, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ks.Decrypt(ctx, appA, id, 1, m1); !errors.Is(err, provider.ErrKeyRevoked) {
			t.Fatalf("revoked version: %v", err)
		}
		if _, err := e.ks.Decrypt(ctx, appB, id, 2, m2); !errors.Is(err, provider.ErrPermission) {
			t.Fatalf("another app: %v", err)
		}
	}
	// Bounds before any lookup, and the wrong use.
	id := mustID(t, "app-a/h/hpkex25519sha256chacha20poly1305")
	for _, m := range []core.HPKEMessage{{Enc: make([]byte, provider.MaxHPKEEnc+1)}, {Ciphertext: make([]byte, provider.MaxHPKECiphertext+1)},
		{Info: make([]byte, provider.MaxHPKEInfo+1)}, {AAD: make([]byte, provider.MaxAAD+1)}} {
		if _, err := e.ks.Decrypt(ctx, appA, mustID(t, "app-a/h/missing"), 0, m); !errors.Is(err, provider.ErrTooLarge) {
			t.Errorf("oversize input: %v, want EMSGSIZE", err)
		}
	}
	sid := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if _, err := e.ks.Decrypt(ctx, appA, sid, 1, core.HPKEMessage{Enc: make([]byte, 32), Ciphertext: make([]byte, 16)}); !errors.Is(err, provider.ErrPermission) {
		t.Errorf("decrypt with a sign key: %v, want EPERM", err)
	}
	if _, err := e.ks.Seal(ctx, appA, id, []byte("x"), nil); !errors.Is(err, provider.ErrPermission) {
		t.Errorf("seal with an HPKE key: %v, want EPERM", err)
	}
	// Created without an algorithm, an asymmetric-decrypt key gets the
	// post-quantum hybrid.
	m, err := e.ks.Create(ctx, appA, mustID(t, "app-a/h/default"), core.CreateOptions{Use: provider.UseAsymmetricDecrypt})
	if err != nil || m.Algorithm != provider.HPKEMLKEM768X25519 {
		t.Fatalf("default: %v %v", m.Algorithm, err)
	}
}

func flipped(b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)-1] ^= 1
	return c
}

func TestImport(t *testing.T) {
	e := newEnv(t)
	seed := bytes.Repeat([]byte{9}, 32)
	edKey := ed25519.NewKeyFromSeed(seed)
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	// An Ed25519 key: created by the import, origin imported, its public
	// key the imported one's, and it signs as that key.
	id := mustID(t, "app-a/imp/ed")
	m, err := e.ks.Import(ctx, appA, id, e.importRequest(t, appA, id, provider.Ed25519, edDER))
	if err != nil {
		t.Fatal(err)
	}
	if m.Origin != core.OriginImported || m.Versions[0].Origin != core.OriginImported || m.Algorithm != provider.Ed25519 {
		t.Fatalf("metadata %+v", m)
	}
	if !bytes.Equal(m.Versions[0].PublicKey, edKey[32:]) {
		t.Fatal("imported key's public key differs")
	}
	sig, err := e.ks.Sign(ctx, appA, id, []byte("msg"))
	if err != nil || !ed25519.Verify(edKey.Public().(ed25519.PublicKey), []byte("msg"), sig.Signature) {
		t.Fatalf("signature of the imported key does not verify under its own public key: %v", err)
	}
	// Rotate refuses without the switch; a rotation period is refused.
	if _, err := e.ks.Rotate(ctx, appA, id); !errors.Is(err, provider.ErrPermission) {
		t.Fatalf("rotate of an imported key: %v, want EPERM", err)
	}
	if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{RotationPeriod: time.Hour}); !errors.Is(err, provider.ErrPermission) {
		t.Fatalf("rotation period on an imported key: %v, want EPERM", err)
	}
	// A second import adds version 2 and retires version 1.
	ecKey, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	edKey2 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{10}, 32))
	edDER2, err := x509.MarshalPKCS8PrivateKey(edKey2)
	if err != nil {
		t.Fatal(err)
	}
	m, err = e.ks.Import(ctx, appA, id, e.importRequest(t, appA, id, provider.Ed25519, edDER2))
	if err != nil || m.Current != 2 || m.Versions[0].State != core.VersionRetired || !bytes.Equal(m.Versions[1].PublicKey, edKey2[32:]) {
		t.Fatalf("second import: %+v %v", m, err)
	}
	// Material of another algorithm is EINVAL and spends the token.
	req := e.importRequest(t, appA, id, provider.Ed25519, ecDER)
	if _, err := e.ks.Import(ctx, appA, id, req); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("ECDSA material for an Ed25519 import: %v, want EINVAL", err)
	}
	if _, err := e.ks.Import(ctx, appA, id, req); !errors.Is(err, provider.ErrAlready) {
		t.Fatalf("reused token: %v, want EALREADY", err)
	}
	// The switch to generated material.
	m, err = e.ks.RotateWith(ctx, appA, id, core.RotateOptions{Generate: true})
	if err != nil || m.Origin != core.OriginGenerated || m.Versions[2].Origin != core.OriginGenerated || m.Versions[1].Origin != core.OriginImported {
		t.Fatalf("rotate --generate: %+v %v", m, err)
	}
	if ev := e.audit.last(t); !strings.Contains(ev.Detail, "switched from imported") {
		t.Fatalf("audit detail %q", ev.Detail)
	}
	if _, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.Ed25519}); !errors.Is(err, provider.ErrPermission) {
		t.Fatalf("import into a generated key: %v, want EPERM", err)
	}

	// An AES key: data sealed outside the daemon with the raw key, in
	// docs/storage.md's envelope, unseals.
	aid := mustID(t, "app-a/imp/aes")
	if _, err := e.ks.Import(ctx, appA, aid, e.importRequest(t, appA, aid, provider.AES256GCM, fixedAESKey)); err != nil {
		t.Fatal(err)
	}
	sealed := sealOutside(t, fixedAESKey, aid.String(), []byte("aad"), []byte("sealed outside"))
	u, err := e.ks.Unseal(ctx, appA, aid, sealed, []byte("aad"))
	if err != nil || string(u.Plaintext) != "sealed outside" {
		t.Fatalf("unseal of data sealed with the raw key: %q %v", u.Plaintext, err)
	}

	// Tokens: another app's, another key's, expired, unknown, malformed.
	oid := mustID(t, "app-a/imp/other")
	issued := e.clock.Now().UTC()
	p, err := e.ks.ImportParameters(ctx, appA, oid, core.ImportOptions{Algorithm: provider.AES256GCM, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	enc, ct := sealTo(t, p.KEMID, p.KDFID, p.AEADID, p.PublicKey, p.Info, nil, fixedAESKey)
	r := core.ImportRequest{Token: p.Token, Enc: enc, Wrapped: ct}
	if _, err := e.ks.Import(ctx, appB, mustID(t, "app-b/imp/other"), r); !errors.Is(err, provider.ErrPermission) {
		t.Fatalf("another app's token: %v, want EPERM", err)
	}
	if _, err := e.ks.Import(ctx, appA, aid, r); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("another key's token: %v, want EINVAL", err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.ks.Import(ctx, appA, oid, r); !errors.Is(err, provider.ErrExpired) {
		t.Fatalf("expired token: %v, want EKEYEXPIRED", err)
	}
	if _, err := e.ks.Get(ctx, appA, oid); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("a refused import made a key: %v", err)
	}
	r.Token = "kit1." + strings.Repeat("A", 22)
	if _, err := e.ks.Import(ctx, appA, oid, r); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("unknown token: %v, want ENOENT", err)
	}
	r.Token = "nope"
	if _, err := e.ks.Import(ctx, appA, oid, r); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("malformed token: %v, want EINVAL", err)
	}
	// Options.
	for _, o := range []core.ImportOptions{{}, {Algorithm: provider.AES256GCM, TTL: time.Second}, {Algorithm: provider.AES256GCM, TTL: 25 * time.Hour},
		{Algorithm: provider.AES256GCM, WrappingAlgorithm: provider.AES256GCM}} {
		if _, err := e.ks.ImportParameters(ctx, appA, oid, o); !errors.Is(err, provider.ErrInvalid) {
			t.Errorf("options %+v: %v, want EINVAL", o, err)
		}
	}
	for _, a := range []core.Algorithm{provider.Ed448, provider.MLDSA65, provider.HPKEMLKEM768X25519} {
		if _, err := e.ks.ImportParameters(ctx, appA, oid, core.ImportOptions{Algorithm: a}); !errors.Is(err, provider.ErrNotSupported) {
			t.Errorf("import of %s: %v, want ENOTSUP", a, err)
		}
	}
	if _, err := e.ks.Import(ctx, appA, oid, core.ImportRequest{Token: p.Token, Policy: core.Policy{RotationPeriod: time.Hour}}); !errors.Is(err, provider.ErrPermission) {
		t.Errorf("import with a rotation period: %v, want EPERM", err)
	}
	// The wrapping parameters: the default suite is the hybrid.
	if p.WrappingAlgorithm != provider.HPKEMLKEM768X25519 || p.KEMID != alg.KEMMLKEM768X25519 || !p.Expires.Equal(issued.Add(time.Minute)) {
		t.Fatalf("parameters %+v", p)
	}
	if !bytes.Equal(p.Info, provider.ImportInfo(oid, provider.AES256GCM)) {
		t.Fatal("info differs from provider.ImportInfo")
	}
}

// TestImportTokenBound: an app holds at most MaxImportTokensPerApp unused
// tokens; using one or letting one expire frees a place.
func TestImportTokenBound(t *testing.T) {
	e := newEnv(t)
	id := mustID(t, "app-a/imp/many")
	var first core.ImportParameters
	for i := 0; i < core.MaxImportTokensPerApp; i++ {
		p, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM, TTL: time.Minute})
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if i == 0 {
			first = p
		}
	}
	if _, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM}); !errors.Is(err, provider.ErrQuota) {
		t.Fatalf("token past the bound: %v, want EDQUOT", err)
	}
	if _, err := e.ks.ImportParameters(ctx, appB, mustID(t, "app-b/imp/k"), core.ImportOptions{Algorithm: provider.AES256GCM}); err != nil {
		t.Fatalf("another app is not affected: %v", err)
	}
	enc, ct := sealTo(t, first.KEMID, first.KDFID, first.AEADID, first.PublicKey, first.Info, nil, fixedAESKey)
	if _, err := e.ks.Import(ctx, appA, id, core.ImportRequest{Token: first.Token, Enc: enc, Wrapped: ct}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM}); err != nil {
		t.Fatalf("after one was used: %v", err)
	}
	e.clock.Advance(time.Minute)
	for i := 0; i < core.MaxImportTokensPerApp-1; i++ {
		if _, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM}); err != nil {
			t.Fatalf("after expiry, token %d: %v", i, err)
		}
	}
}

// sealOutside seals plaintext with a raw AES-256-GCM key in keystored's
// envelope (docs/storage.md), as an independent implementation would:
// header "KS" 1 algID version(4), then nonce ‖ ciphertext ‖ tag with the
// provider AAD header ‖ u16(len id) ‖ id ‖ u32(len aad) ‖ aad.
func sealOutside(t *testing.T, key []byte, keyID string, aad, plaintext []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	hdr := []byte{'K', 'S', 1, 18, 0, 0, 0, 1}
	paad := append(append([]byte(nil), hdr...), byte(len(keyID)>>8), byte(len(keyID)))
	paad = append(paad, keyID...)
	paad = append(paad, byte(len(aad)>>24), byte(len(aad)>>16), byte(len(aad)>>8), byte(len(aad)))
	paad = append(paad, aad...)
	nonce := bytes.Repeat([]byte{1}, g.NonceSize())
	out := append(append([]byte(nil), hdr...), nonce...)
	return g.Seal(out, nonce, plaintext, paad)
}

// TestDataKeyPrintsNoKey: a DataKey printed with any verb, or logged,
// shows no byte of the data key.
func TestDataKeyPrintsNoKey(t *testing.T) {
	d := core.DataKey{Version: 1, Plaintext: bytes.Repeat([]byte{0xAB}, 32), Sealed: []byte("s")}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "dk", d)
	for _, out := range []string{fmt.Sprint(d), fmt.Sprintf("%v %+v %#v %x %s %q", d, d, d, d, d, d), logged.String()} {
		if strings.Contains(strings.ToLower(out), "abab") || strings.Contains(out, "\xab") || strings.Contains(out, "171") {
			t.Fatalf("data key printed: %s", out)
		}
	}
}

// TestImportSpentTokensBounded: an app that asks for parameters and spends
// them in a loop does not grow the table without bound; the newest spent
// token still says "already used". A policy given with an import into an
// existing key is EINVAL.
func TestImportSpentTokensBounded(t *testing.T) {
	e := newEnv(t)
	id := mustID(t, "app-a/imp/loop")
	var last core.ImportRequest
	for i := 0; i < core.MaxImportTokens*5; i++ {
		p, err := e.ks.ImportParameters(ctx, appA, id, core.ImportOptions{Algorithm: provider.AES256GCM, WrappingAlgorithm: provider.HPKEX25519})
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		last = core.ImportRequest{Token: p.Token, Enc: make([]byte, 32), Wrapped: make([]byte, 48)}
		if _, err := e.ks.Import(ctx, appA, id, last); !errors.Is(err, provider.ErrBadMessage) {
			t.Fatalf("round %d: %v, want EBADMSG", i, err)
		}
	}
	if n := core.ImportTableLen(e.ks); n > 4*core.MaxImportTokens {
		t.Fatalf("table holds %d tokens, want at most %d", n, 4*core.MaxImportTokens)
	}
	if _, err := e.ks.Import(ctx, appA, id, last); !errors.Is(err, provider.ErrAlready) {
		t.Fatalf("the newest spent token: %v, want EALREADY", err)
	}
	if _, err := e.ks.Import(ctx, appA, id, e.importRequest(t, appA, id, provider.AES256GCM, fixedAESKey)); err != nil {
		t.Fatal(err)
	}
	r := e.importRequest(t, appA, id, provider.AES256GCM, fixedAESKey)
	r.Policy = core.Policy{MinDecryptionVersion: 1}
	if _, err := e.ks.Import(ctx, appA, id, r); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("a policy with an import into an existing key: %v, want EINVAL", err)
	}
}

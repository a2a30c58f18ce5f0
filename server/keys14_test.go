package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// hpkeSealTo seals msg with crypto/hpke (base mode) to pub under the
// RFC 9180 suite the daemon named: what any sender does with PublicKey's
// or GetImportParameters' answer, without keystored's code.
func hpkeSealTo(t testing.TB, kemID, kdfID, aeadID uint32, pub, info, aad, msg []byte) (enc, ct []byte) {
	t.Helper()
	kem, err := hpke.NewKEM(uint16(kemID))
	if err != nil {
		t.Fatalf("KEM %#x: %v", kemID, err)
	}
	kdf, err := hpke.NewKDF(uint16(kdfID))
	if err != nil {
		t.Fatalf("KDF %#x: %v", kdfID, err)
	}
	aead, err := hpke.NewAEAD(uint16(aeadID))
	if err != nil {
		t.Fatalf("AEAD %#x: %v", aeadID, err)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("public key of %d bytes: %v", len(pub), err)
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

// wrapFor gets import parameters for key and alg and wraps material to
// them as a client does; it returns the import request and the
// parameters.
func (e *env) wrapFor(t *testing.T, key string, alg provider.Algorithm, material []byte) (*keystorev1.ImportKeyRequest, *keystorev1.GetImportParametersResponse) {
	t.Helper()
	p, err := e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: key, Algorithm: string(alg)})
	mustOK(t, "GetImportParameters "+key, err)
	enc, wrapped := hpkeSealTo(t, p.GetKemId(), p.GetKdfId(), p.GetAeadId(), p.GetPublicKey(), p.GetInfo(), nil, material)
	return &keystorev1.ImportKeyRequest{Key: key, Token: p.GetToken(), Enc: enc, Wrapped: wrapped}, p
}

// wantRecord fails unless the last audit record is of op on key with
// result.
func (e *env) wantRecord(t *testing.T, op, key, result string) {
	t.Helper()
	if r := e.audit.last(t); r.Op != op || r.Key != key || r.Result != result {
		t.Fatalf("record %+v, want %s %s of %s", r, op, result, key)
	}
}

// TestGenerateDataKey: a data key of the default spec is 32 random bytes
// and its sealed form an ordinary envelope Unseal opens with the same AAD
// (and no other); the specs and number_of_bytes set the size (16 .. 64),
// both or neither of a known name is EINVAL; WithoutPlaintext returns no
// plaintext; an AAD over 64 KiB is EMSGSIZE (far over: refused by the
// receive limit); a sign key or another app's key is EPERM; each call is
// one record of its op with the version.
func TestGenerateDataKey(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "dk/k"})
	mustOK(t, "Create", err)
	aad := []byte("file header")
	d, err := e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Aad: aad})
	mustOK(t, "GenerateDataKey", err)
	if d.GetKey() != "alice/dk/k" || d.GetVersion() != 1 || len(d.GetPlaintext()) != 32 || len(d.GetSealed()) == 0 {
		t.Fatalf("GenerateDataKey = key %q version %d, %d-byte data key, %d sealed; want alice/dk/k@1, 32 bytes",
			d.GetKey(), d.GetVersion(), len(d.GetPlaintext()), len(d.GetSealed()))
	}
	e.wantRecord(t, "keys.generate-data-key", "alice/dk/k", "ok")
	if r := e.audit.last(t); r.Version != 1 {
		t.Fatalf("record of version %d, want 1", r.Version)
	}
	un, err := e.keys.Unseal(bg, &keystorev1.UnsealRequest{Key: "dk/k", Sealed: d.GetSealed(), Aad: aad})
	mustOK(t, "Unseal of the sealed data key", err)
	if !bytes.Equal(un.GetPlaintext(), d.GetPlaintext()) {
		t.Fatal("the sealed data key unseals to another key")
	}
	_, err = e.keys.Unseal(bg, &keystorev1.UnsealRequest{Key: "dk/k", Sealed: d.GetSealed(), Aad: []byte("other")})
	wantCode(t, "Unseal of the data key with another AAD", err, provider.EBADMSG)
	d2, err := e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k"})
	mustOK(t, "GenerateDataKey", err)
	if bytes.Equal(d2.GetPlaintext(), d.GetPlaintext()) {
		t.Fatal("two data keys are the same")
	}

	for _, tc := range []struct {
		spec string
		n    uint32
		want int
	}{{"aes-256-gcm", 0, 32}, {"aes-128-gcm", 0, 16}, {"chacha20-poly1305", 0, 32}, {"xchacha20-poly1305", 0, 32}, {"", 16, 16}, {"", 64, 64}} {
		what := fmt.Sprintf("GenerateDataKey spec %q, %d bytes", tc.spec, tc.n)
		d, err := e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Spec: tc.spec, NumberOfBytes: tc.n})
		mustOK(t, what, err)
		if len(d.GetPlaintext()) != tc.want {
			t.Errorf("%s: %d bytes, want %d", what, len(d.GetPlaintext()), tc.want)
		}
		w, err := e.keys.GenerateDataKeyWithoutPlaintext(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Spec: tc.spec, NumberOfBytes: tc.n})
		mustOK(t, what+" without plaintext", err)
		if w.GetPlaintext() != nil || w.GetVersion() != 1 || w.GetKey() != "alice/dk/k" {
			t.Fatalf("%s without plaintext = %v", what, w)
		}
		e.wantRecord(t, "keys.generate-data-key-without-plaintext", "alice/dk/k", "ok")
		un, err := e.keys.Unseal(bg, &keystorev1.UnsealRequest{Key: "dk/k", Sealed: w.GetSealed()})
		mustOK(t, what+": Unseal of the sealed form", err)
		if len(un.GetPlaintext()) != tc.want {
			t.Errorf("%s without plaintext: sealed a %d-byte key, want %d", what, len(un.GetPlaintext()), tc.want)
		}
	}
	for _, tc := range []struct {
		spec string
		n    uint32
	}{{"aes-256-gcm", 32}, {"rot13", 0}, {strings.Repeat("x", 1000), 0}, {"", 15}, {"", 65}, {"", 1<<32 - 1}} {
		_, err := e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Spec: tc.spec, NumberOfBytes: tc.n})
		wantCode(t, fmt.Sprintf("GenerateDataKey spec %.20q, %d bytes", tc.spec, tc.n), err, provider.EINVAL)
		_, err = e.keys.GenerateDataKeyWithoutPlaintext(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Spec: tc.spec, NumberOfBytes: tc.n})
		wantCode(t, fmt.Sprintf("GenerateDataKeyWithoutPlaintext spec %.20q, %d bytes", tc.spec, tc.n), err, provider.EINVAL)
	}
	e.wantRecord(t, "keys.generate-data-key-without-plaintext", "alice/dk/k", "EINVAL")
	_, err = e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Aad: make([]byte, provider.MaxAAD)})
	mustOK(t, "GenerateDataKey with an AAD of MaxAAD", err)
	_, err = e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Aad: make([]byte, provider.MaxAAD+1)})
	wantCode(t, "GenerateDataKey with an AAD of MaxAAD+1", err, provider.EMSGSIZE)
	_, err = e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k", Aad: make([]byte, 1<<20)})
	wantCode(t, "GenerateDataKey with an AAD of 1 MiB (over the receive limit)", err, provider.EMSGSIZE)

	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "sig/k"})
	wantCode(t, "GenerateDataKey with a sign key", err, provider.EPERM)
	e.createFor(t, "bob/dk/k", provider.XChaCha20Poly1305)
	_, err = e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "bob/dk/k"})
	wantCode(t, "GenerateDataKey with another app's key", err, provider.EPERM)
	_, err = e.keys.GenerateDataKeyWithoutPlaintext(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/missing"})
	wantCode(t, "GenerateDataKeyWithoutPlaintext of a missing key", err, provider.ENOENT)
}

// TestHPKEDecrypt: a key created by use asymmetric-decrypt is the hybrid
// suite; for each HPKE algorithm, PublicKey names the RFC 9180 suite
// (kem_id, kdf_id, aead_id) of the raw public key, a message sealed with
// crypto/hpke from that answer alone decrypts (empty and largest
// plaintext, info and AAD), any tampering is EBADMSG; after a rotation
// the old version still decrypts when named, 0 means the new primary; a
// revoked version is EKEYREVOKED; versions out of range EINVAL, unknown
// ENOENT; bounds EMSGSIZE; wrong uses EPERM both ways; non-HPKE keys have
// no suite IDs.
func TestHPKEDecrypt(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	cr, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "hpke/default", Use: "asymmetric-decrypt"})
	mustOK(t, "Create use asymmetric-decrypt", err)
	if m := cr.GetKey(); m.GetAlgorithm() != string(provider.HPKEMLKEM768X25519) || len(m.GetUses()) != 1 || m.GetUses()[0] != "asymmetric-decrypt" ||
		m.GetOrigin() != "generated" || m.GetVersions()[0].GetOrigin() != "generated" || len(m.GetVersions()[0].GetPublicKey()) != 1216 {
		t.Fatalf("Create use asymmetric-decrypt = %v; want the hybrid suite, uses [asymmetric-decrypt], generated, a 1216-byte public key", m)
	}
	suites := map[provider.Algorithm][3]uint32{
		provider.HPKEX25519:         {0x0020, 0x0001, 0x0003},
		provider.HPKEP256:           {0x0010, 0x0001, 0x0001},
		provider.HPKEMLKEM768X25519: {0x647a, 0x0001, 0x0002},
	}
	for a, suite := range suites {
		key := "hpke/" + strings.SplitN(string(a), "-", 3)[1]
		full := "alice/" + key
		_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: key, Algorithm: string(a)})
		mustOK(t, "Create "+string(a), err)
		pk, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: key})
		mustOK(t, "PublicKey "+string(a), err)
		if got := [3]uint32{pk.GetKemId(), pk.GetKdfId(), pk.GetAeadId()}; got != suite || pk.GetAlgorithm() != string(a) || pk.GetVersion() != 1 {
			t.Fatalf("PublicKey of %s = suite %#x, algorithm %q, version %d; want %#x", a, got, pk.GetAlgorithm(), pk.GetVersion(), suite)
		}
		decrypt := func(v int64, enc, ct, info, aad []byte) (*keystorev1.DecryptResponse, error) {
			return e.keys.Decrypt(bg, &keystorev1.DecryptRequest{Key: key, Version: v, Enc: enc, Ciphertext: ct, Info: info, Aad: aad})
		}
		for _, n := range [][3]int{{0, 0, 0}, {1, 1, 1}, {provider.MaxHPKECiphertext - 16, provider.MaxHPKEInfo, provider.MaxAAD}} {
			msg, info, aad := bytes.Repeat([]byte{'m'}, n[0]), bytes.Repeat([]byte{'i'}, n[1]), bytes.Repeat([]byte{'a'}, n[2])
			enc, ct := hpkeSealTo(t, pk.GetKemId(), pk.GetKdfId(), pk.GetAeadId(), pk.GetPublicKey(), info, aad, msg)
			d, err := decrypt(0, enc, ct, info, aad)
			mustOK(t, fmt.Sprintf("Decrypt (%s) of %v bytes", a, n), err)
			if !bytes.Equal(d.GetPlaintext(), msg) || d.GetVersion() != 1 || d.GetKey() != full {
				t.Fatalf("Decrypt (%s) of %v bytes = %d bytes, version %d, key %q", a, n, len(d.GetPlaintext()), d.GetVersion(), d.GetKey())
			}
		}
		e.wantRecord(t, "keys.decrypt", full, "ok")
		msg := []byte("to version 1")
		enc, ct := hpkeSealTo(t, pk.GetKemId(), pk.GetKdfId(), pk.GetAeadId(), pk.GetPublicKey(), []byte("info"), []byte("aad"), msg)
		flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
		for name, m := range map[string][4][]byte{
			"enc flipped":        {flip(enc, 0), ct, []byte("info"), []byte("aad")},
			"ciphertext flipped": {enc, flip(ct, len(ct)-1), []byte("info"), []byte("aad")},
			"other info":         {enc, ct, []byte("infO"), []byte("aad")},
			"other aad":          {enc, ct, []byte("info"), nil},
			"short enc":          {enc[:len(enc)-1], ct, []byte("info"), []byte("aad")},
			"ciphertext < tag":   {enc, ct[:15], []byte("info"), []byte("aad")},
		} {
			d, err := decrypt(1, m[0], m[1], m[2], m[3])
			wantCode(t, fmt.Sprintf("Decrypt (%s), %s", a, name), err, provider.EBADMSG)
			if d != nil {
				t.Fatalf("Decrypt (%s), %s: output with the error", a, name)
			}
		}
		e.wantRecord(t, "keys.decrypt", full, "EBADMSG")
		_, err = e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: key})
		mustOK(t, "Rotate", err)
		d, err := decrypt(1, enc, ct, []byte("info"), []byte("aad"))
		mustOK(t, "Decrypt with retired version 1", err)
		if !bytes.Equal(d.GetPlaintext(), msg) || d.GetVersion() != 1 {
			t.Fatalf("Decrypt with version 1 = %q, version %d", d.GetPlaintext(), d.GetVersion())
		}
		_, err = decrypt(0, enc, ct, []byte("info"), []byte("aad"))
		wantCode(t, "Decrypt of a message to version 1 with the new primary", err, provider.EBADMSG)
		_, err = decrypt(3, enc, ct, []byte("info"), []byte("aad"))
		wantCode(t, "Decrypt with version 3", err, provider.ENOENT)
		for _, v := range []int64{-1, 1 << 32} {
			_, err = decrypt(v, enc, ct, []byte("info"), []byte("aad"))
			wantCode(t, fmt.Sprintf("Decrypt with version %d", v), err, provider.EINVAL)
		}
		_, err = e.keys.RevokeVersion(bg, &keystorev1.RevokeKeyVersionRequest{Key: key, Version: 1})
		mustOK(t, "RevokeVersion 1", err)
		_, err = decrypt(1, enc, ct, []byte("info"), []byte("aad"))
		wantCode(t, "Decrypt with revoked version 1", err, provider.EKEYREVOKED)
		_, err = e.keys.Seal(bg, &keystorev1.SealRequest{Key: key, Plaintext: []byte("x")})
		wantCode(t, "Seal with an HPKE key", err, provider.EPERM)
	}
	big := func(n int) []byte { return make([]byte, n) }
	for name, r := range map[string]*keystorev1.DecryptRequest{
		"enc over MaxHPKEEnc":               {Enc: big(provider.MaxHPKEEnc + 1)},
		"ciphertext over MaxHPKECiphertext": {Ciphertext: big(provider.MaxHPKECiphertext + 1)},
		"info over MaxHPKEInfo":             {Info: big(provider.MaxHPKEInfo + 1)},
		"aad over MaxAAD":                   {Aad: big(provider.MaxAAD + 1)},
		"request over the receive limit":    {Ciphertext: big(2 << 20)},
	} {
		r.Key = "hpke/default"
		_, err := e.keys.Decrypt(bg, r)
		wantCode(t, "Decrypt, "+name, err, provider.EMSGSIZE)
	}
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = e.keys.Decrypt(bg, &keystorev1.DecryptRequest{Key: "sig/k", Enc: big(32), Ciphertext: big(16)})
	wantCode(t, "Decrypt with a sign key", err, provider.EPERM)
	pk, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/k"})
	mustOK(t, "PublicKey of a sign key", err)
	if pk.GetKemId() != 0 || pk.GetKdfId() != 0 || pk.GetAeadId() != 0 {
		t.Fatalf("PublicKey of an ed25519 key names an HPKE suite: %v", pk)
	}
	e.createFor(t, "bob/hpke/k", provider.HPKEX25519)
	_, err = e.keys.Decrypt(bg, &keystorev1.DecryptRequest{Key: "bob/hpke/k", Enc: big(32), Ciphertext: big(16)})
	wantCode(t, "Decrypt with another app's key", err, provider.EPERM)
}

// edKey is a fixed Ed25519 key the import tests bring in.
var edKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x5e}, ed25519.SeedSize))

// pkcs8 returns the PKCS #8 DER of k.
func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestImport: GetImportParameters answers the key, algorithm, a token,
// the default wrapping suite (the hybrid) with its RFC 9180 IDs and raw
// public key, the documented info and an expiry 24 h on; material wrapped
// with crypto/hpke from that answer alone imports: the key is imported
// (key and version), its public key is the material's and its signatures
// verify with crypto/ed25519; a second import adds an imported primary;
// rotate is EPERM until generate switches the key to generated material.
// Refused with typed errors: a reused token (EALREADY), an expired one
// (EKEYEXPIRED, FAILED_PRECONDITION), another app's (EPERM), another
// key's (EINVAL), an unknown one (ENOENT), a malformed one (EINVAL),
// material of another algorithm (EINVAL), material wrapped under another
// info (EBADMSG), a generated key (EPERM), a rotation period (EPERM),
// TTLs out of range (EINVAL), the 17th outstanding token (EDQUOT),
// wrapped material over its bound (EMSGSIZE).
func TestImport(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	der := pkcs8(t, edKey)
	req, p := e.wrapFor(t, "imp/ed", provider.Ed25519, der)
	e.wantRecord(t, "keys.get-import-parameters", "alice/imp/ed", "ok")
	if p.GetKey() != "alice/imp/ed" || p.GetAlgorithm() != "ed25519" || !strings.HasPrefix(p.GetToken(), "kit1.") ||
		p.GetWrappingAlgorithm() != string(provider.HPKEMLKEM768X25519) || p.GetKemId() != 0x647a || p.GetKdfId() != 1 || p.GetAeadId() != 2 ||
		len(p.GetPublicKey()) != 1216 || !p.GetExpires().AsTime().Equal(testTime.Add(24*time.Hour)) {
		t.Fatalf("GetImportParameters = %v", p)
	}
	if want := "keystored import v1\x00alice/imp/ed\x00ed25519"; string(p.GetInfo()) != want {
		t.Fatalf("info = %q, want %q", p.GetInfo(), want)
	}
	ir, err := e.keys.Import(bg, req)
	mustOK(t, "Import", err)
	e.wantRecord(t, "keys.import", "alice/imp/ed", "ok")
	m := ir.GetKey()
	pub := edKey.Public().(ed25519.PublicKey)
	if m.GetId() != "alice/imp/ed" || m.GetOrigin() != "imported" || m.GetCurrentVersion() != 1 || m.GetVersions()[0].GetOrigin() != "imported" ||
		!bytes.Equal(m.GetVersions()[0].GetPublicKey(), pub) {
		t.Fatalf("Import = %v; want an imported key whose public key is the material's", m)
	}
	sig, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "imp/ed", Message: []byte("release")})
	mustOK(t, "Sign with the imported key", err)
	if !ed25519.Verify(pub, []byte("release"), sig.GetSignature()) {
		t.Fatal("the imported key's signature does not verify with crypto/ed25519 under the material's public key")
	}
	_, err = e.keys.Import(bg, req)
	wantCode(t, "Import with a used token", err, provider.EALREADY)

	// A second version from new material; rotate needs generate.
	edKey2 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x6f}, ed25519.SeedSize))
	req2, _ := e.wrapFor(t, "imp/ed", provider.Ed25519, pkcs8(t, edKey2))
	ir, err = e.keys.Import(bg, req2)
	mustOK(t, "Import a second version", err)
	if m := ir.GetKey(); m.GetCurrentVersion() != 2 || m.GetVersions()[1].GetOrigin() != "imported" || m.GetVersions()[0].GetState() != keystorev1.VersionState_VERSION_STATE_RETIRED {
		t.Fatalf("second Import = %v", m)
	}
	_, err = e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "imp/ed"})
	wantCode(t, "Rotate an imported key", err, provider.EPERM)
	_, err = e.keys.SetPolicy(bg, &keystorev1.SetKeyPolicyRequest{Key: "imp/ed", Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}})
	wantCode(t, "a rotation period on an imported key", err, provider.EPERM)
	rr, err := e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "imp/ed", Generate: true})
	mustOK(t, "Rotate generate", err)
	if m := rr.GetKey(); m.GetOrigin() != "generated" || m.GetCurrentVersion() != 3 || m.GetVersions()[2].GetOrigin() != "generated" || m.GetVersions()[0].GetOrigin() != "imported" {
		t.Fatalf("Rotate generate = %v; want a generated key with imported versions 1 and 2", m)
	}
	e.wantRecord(t, "keys.rotate", "alice/imp/ed", "ok")
	_, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/ed", Algorithm: "ed25519"})
	wantCode(t, "GetImportParameters for a key now generated", err, provider.EPERM)

	// An AES key from raw bytes.
	req, _ = e.wrapFor(t, "imp/aes", provider.AES256GCM, bytes.Repeat([]byte{0x42}, 32))
	ir, err = e.keys.Import(bg, req)
	mustOK(t, "Import an AES key", err)
	if m := ir.GetKey(); m.GetUses()[0] != "decrypt" || m.GetOrigin() != "imported" {
		t.Fatalf("Import of an AES key = %v", m)
	}

	// Expiry: the fake clock passes a 60 s TTL.
	p, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/late", Algorithm: "aes-256-gcm", TtlSeconds: 60})
	mustOK(t, "GetImportParameters with a TTL of 60 s", err)
	if !p.GetExpires().AsTime().Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("expires %v, want a minute from now", p.GetExpires().AsTime())
	}
	enc, wrapped := hpkeSealTo(t, p.GetKemId(), p.GetKdfId(), p.GetAeadId(), p.GetPublicKey(), p.GetInfo(), nil, bytes.Repeat([]byte{1}, 32))
	e.clock.Advance(61 * time.Second)
	_, err = e.keys.Import(bg, &keystorev1.ImportKeyRequest{Key: "imp/late", Token: p.GetToken(), Enc: enc, Wrapped: wrapped})
	wantCode(t, "Import with an expired token", err, provider.EKEYEXPIRED)
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition {
		t.Fatalf("an expired token's gRPC code is %v, want FailedPrecondition", st.Code())
	}
	e.wantRecord(t, "keys.import", "alice/imp/late", "EKEYEXPIRED")

	// A token another app (here an operator, in process) was given for
	// alice's key.
	kid, err := provider.ParseKeyID("alice/imp/theirs")
	if err != nil {
		t.Fatal(err)
	}
	op, err := e.srv.Keystore().ImportParameters(bg, operator, kid, core.ImportOptions{Algorithm: provider.AES256GCM})
	mustOK(t, "ImportParameters by an operator", err)
	_, err = e.keys.Import(bg, &keystorev1.ImportKeyRequest{Key: "imp/theirs", Token: op.Token, Enc: enc, Wrapped: wrapped})
	wantCode(t, "Import with another app's token", err, provider.EPERM)
	// A token for another key, an unknown one, a malformed one.
	req, _ = e.wrapFor(t, "imp/one", provider.AES256GCM, bytes.Repeat([]byte{2}, 32))
	other := proto.CloneOf(req)
	other.Key = "imp/two"
	_, err = e.keys.Import(bg, other)
	wantCode(t, "Import with another key's token", err, provider.EINVAL)
	unknown := proto.CloneOf(req)
	unknown.Token = "kit1." + strings.Repeat("A", 22)
	_, err = e.keys.Import(bg, unknown)
	wantCode(t, "Import with an unknown token", err, provider.ENOENT)
	for _, tok := range []string{"", "kit1.", "kit2." + strings.Repeat("A", 22), strings.Repeat("t", 10000)} {
		bad := proto.CloneOf(req)
		bad.Token = tok
		_, err = e.keys.Import(bg, bad)
		wantCode(t, fmt.Sprintf("Import with token %.12q", tok), err, provider.EINVAL)
	}
	// Material of another algorithm, material wrapped under another info.
	req, _ = e.wrapFor(t, "imp/wrong", provider.Ed25519, bytes.Repeat([]byte{3}, 32))
	_, err = e.keys.Import(bg, req)
	wantCode(t, "Import of raw bytes as an Ed25519 key", err, provider.EINVAL)
	p, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/info", Algorithm: "aes-256-gcm"})
	mustOK(t, "GetImportParameters", err)
	enc, wrapped = hpkeSealTo(t, p.GetKemId(), p.GetKdfId(), p.GetAeadId(), p.GetPublicKey(), []byte("keystored import v1\x00alice/imp/other\x00aes-256-gcm"), nil, bytes.Repeat([]byte{4}, 32))
	_, err = e.keys.Import(bg, &keystorev1.ImportKeyRequest{Key: "imp/info", Token: p.GetToken(), Enc: enc, Wrapped: wrapped})
	wantCode(t, "Import of material wrapped for another key", err, provider.EBADMSG)
	_, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "imp/info"})
	wantCode(t, "Get of a key whose import failed", err, provider.ENOENT)

	// A generated key, a rotation period, TTLs, bounds.
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "gen/k"})
	mustOK(t, "Create", err)
	_, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "gen/k", Algorithm: "xchacha20-poly1305"})
	wantCode(t, "GetImportParameters for a generated key", err, provider.EPERM)
	req, _ = e.wrapFor(t, "imp/rot", provider.AES256GCM, bytes.Repeat([]byte{5}, 32))
	req.Policy = &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}
	_, err = e.keys.Import(bg, req)
	wantCode(t, "Import with a rotation period", err, provider.EPERM)
	for _, ttl := range []int64{-1, 59, 86401, 1 << 62} {
		_, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/ttl", Algorithm: "aes-256-gcm", TtlSeconds: ttl})
		wantCode(t, fmt.Sprintf("GetImportParameters with a TTL of %d s", ttl), err, provider.EINVAL)
	}
	_, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/x", Algorithm: "ed25519", WrappingAlgorithm: "ed25519"})
	if err == nil {
		t.Fatal("GetImportParameters with a wrapping algorithm that is not HPKE succeeded")
	}
	_, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/x"})
	if err == nil {
		t.Fatal("GetImportParameters without an algorithm succeeded")
	}
	_, err = e.keys.Import(bg, &keystorev1.ImportKeyRequest{Key: "imp/x", Token: req.GetToken(), Wrapped: make([]byte, provider.MaxImportWrapped+1)})
	wantCode(t, "Import of wrapped material over its bound", err, provider.EMSGSIZE)
	_, err = e.keys.Import(bg, &keystorev1.ImportKeyRequest{Key: "imp/x", Token: req.GetToken(), Wrapped: make([]byte, 64<<10)})
	wantCode(t, "Import over its receive limit", err, provider.EMSGSIZE)
	e.createFor(t, "bob/imp/k", provider.XChaCha20Poly1305)
	_, err = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "bob/imp/k", Algorithm: "aes-256-gcm"})
	wantCode(t, "GetImportParameters for another app's key", err, provider.EPERM)

	// The app's outstanding tokens are bounded.
	var quota error
	for i := 0; i < core.MaxImportTokensPerApp+1 && quota == nil; i++ {
		_, quota = e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: fmt.Sprintf("imp/q%d", i), Algorithm: "aes-256-gcm", WrappingAlgorithm: string(provider.HPKEX25519)})
	}
	wantCode(t, "import tokens past the app's quota", quota, provider.EDQUOT)
}

// TestV14FailsClosed: with the audit log broken, data keys, decryption,
// import parameters and import fail with EIO and return nothing, and no
// key is imported.
func TestV14FailsClosed(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "dk/k"})
	mustOK(t, "Create", err)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "hpke/k", Algorithm: string(provider.HPKEX25519)})
	mustOK(t, "Create", err)
	pk, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "hpke/k"})
	mustOK(t, "PublicKey", err)
	enc, ct := hpkeSealTo(t, pk.GetKemId(), pk.GetKdfId(), pk.GetAeadId(), pk.GetPublicKey(), nil, nil, []byte("message"))
	req, _ := e.wrapFor(t, "imp/k", provider.AES256GCM, bytes.Repeat([]byte{9}, 32))
	e.audit.setBroken(true)
	d, err := e.keys.GenerateDataKey(bg, &keystorev1.GenerateDataKeyRequest{Key: "dk/k"})
	wantCode(t, "GenerateDataKey with a broken audit log", err, provider.EIO)
	dec, err2 := e.keys.Decrypt(bg, &keystorev1.DecryptRequest{Key: "hpke/k", Enc: enc, Ciphertext: ct})
	wantCode(t, "Decrypt with a broken audit log", err2, provider.EIO)
	p, err3 := e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/other", Algorithm: "aes-256-gcm"})
	wantCode(t, "GetImportParameters with a broken audit log", err3, provider.EIO)
	ir, err4 := e.keys.Import(bg, req)
	wantCode(t, "Import with a broken audit log", err4, provider.EIO)
	if d != nil || dec != nil || p != nil || ir != nil {
		t.Fatal("output returned with a broken audit log")
	}
	e.audit.setBroken(false)
	_, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "imp/k"})
	wantCode(t, "Get of a key imported while the log was broken", err, provider.ENOENT)
}

// TestScrubClearsV14Plaintexts: a data key or decrypted plaintext that
// will not be sent (its audit record failed) is cleared.
func TestScrubClearsV14Plaintexts(t *testing.T) {
	dk := bytes.Repeat([]byte{7}, 32)
	pt := bytes.Repeat([]byte{8}, 10)
	scrub(&keystorev1.GenerateDataKeyResponse{Plaintext: dk})
	scrub(&keystorev1.DecryptResponse{Plaintext: pt})
	if !bytes.Equal(dk, make([]byte, 32)) || !bytes.Equal(pt, make([]byte, 10)) {
		t.Fatalf("scrub left %x and %x", dk, pt)
	}
}

// TestV14ReceiveLimitsAndOps: the v1.4 methods' receive limits follow
// their payload bounds, and each has its operation name.
func TestV14ReceiveLimitsAndOps(t *testing.T) {
	for op, want := range map[string]int64{
		"keys.generate-data-key":                   provider.MaxAAD + framing,
		"keys.generate-data-key-without-plaintext": provider.MaxAAD + framing,
		"keys.decrypt":                             provider.MaxHPKEEnc + provider.MaxHPKECiphertext + provider.MaxHPKEInfo + provider.MaxAAD + framing,
		"keys.get-import-parameters":               smallRequest,
		"keys.import":                              provider.MaxHPKEEnc + provider.MaxImportWrapped + framing,
	} {
		if got := ReceiveLimit(op); got != want {
			t.Errorf("ReceiveLimit(%s) = %d, want %d", op, got, want)
		}
	}
	for method, op := range map[string]string{
		keystorev1.Keys_GenerateDataKey_FullMethodName:                 "keys.generate-data-key",
		keystorev1.Keys_GenerateDataKeyWithoutPlaintext_FullMethodName: "keys.generate-data-key-without-plaintext",
		keystorev1.Keys_Decrypt_FullMethodName:                         "keys.decrypt",
		keystorev1.Keys_GetImportParameters_FullMethodName:             "keys.get-import-parameters",
		keystorev1.Keys_Import_FullMethodName:                          "keys.import",
	} {
		if got := OpName(method); got != op {
			t.Errorf("OpName(%s) = %q, want %q", method, got, op)
		}
	}
	// Every method of keystore.v1 has a name of its own.
	seen := map[string]string{}
	for _, m := range fuzzMethods() {
		op := OpName(m)
		if op == opUnknown {
			t.Errorf("%s has no operation name", m)
		}
		if prev, dup := seen[op]; dup {
			t.Errorf("%s and %s share operation name %q", prev, m, op)
		}
		seen[op] = m
	}
}

package plugin

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/testseed"
)

// secretForms returns the ways a secret could appear in text output: raw,
// hex in both cases, base64 (standard and URL, padded or not) and Go's
// %v of a byte slice.
func secretForms(secret []byte) map[string][]byte {
	return map[string][]byte{
		"raw":           secret,
		"hex":           []byte(hex.EncodeToString(secret)),
		"HEX":           []byte(strings.ToUpper(hex.EncodeToString(secret))),
		"base64":        []byte(base64.StdEncoding.EncodeToString(secret)),
		"base64 raw":    []byte(base64.RawStdEncoding.EncodeToString(secret)),
		"base64url":     []byte(base64.URLEncoding.EncodeToString(secret)),
		"base64url raw": []byte(base64.RawURLEncoding.EncodeToString(secret)),
		"%v":            []byte(strings.Trim(fmt.Sprint(secret), "[]")),
	}
}

// TestPluginOutputHasNoSecrets runs a workload through a keystore backed
// by the INSECURE testseed plugin (every algorithm; signs of messages and
// digests, seals, failed unseals, MACs and failed MAC verifications, HPKE
// decryptions and failed ones, data keys, imports of known material and
// refused imports, corrupted handles, revoke, rotate, destroy, a crash and
// a restart), captures everything the plugin wrote (its stderr and stdio,
// raw and as forwarded into the host log) and searches it for every
// private key, every imported key's material and the KEK: there must be
// none.
func TestPluginOutputHasNoSecrets(t *testing.T) {
	t.Parallel()
	raw, logs := &syncBuffer{}, &syncBuffer{}
	c := testseedPlugin(t, Config{Logger: testLogger(logs), rawOutput: raw, RestartBackoff: 1})
	ks := openKeystore(t, c)
	ctx := t.Context()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// secrets holds what the workload learns besides the provider's own
	// keys (derived from the seed below): data keys, imported material.
	var secrets []secret
	var refs []provider.KeyRef
	for i, a := range info.Algorithms {
		id, err := provider.NewKeyID("app", "leak", fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		md, err := ks.Create(ctx, testCaller, id, core.CreateOptions{Algorithm: a})
		if err != nil {
			t.Fatalf("create %s: %v", a, err)
		}
		use := md.Use
		for v := provider.Version(1); v <= 2; v++ {
			refs = append(refs, provider.KeyRef{ID: id, Version: v, Algorithm: a, Use: use, Provider: info.Name})
		}
		for round := 0; round < 2; round++ {
			switch use {
			case provider.UseSign:
				if _, err := ks.Sign(ctx, testCaller, id, []byte("message")); err != nil {
					t.Fatalf("sign %s: %v", a, err)
				}
				if s, err := alg.Default().Lookup(a); err == nil && s.Hash != 0 {
					in := core.SignInput{Digest: make([]byte, s.Hash.Size()), Hash: s.Hash}
					if _, err := ks.SignWith(ctx, testCaller, id, 0, in); err != nil {
						t.Fatalf("sign a digest with %s: %v", a, err)
					}
				}
			case provider.UseMAC:
				tag, err := ks.MAC(ctx, testCaller, id, []byte("message"))
				if err != nil {
					t.Fatalf("mac %s: %v", a, err)
				}
				if err := ks.VerifyMAC(ctx, testCaller, id, tag.Version, []byte("other message"), tag.Tag); err == nil {
					t.Fatalf("verify-mac %s of another message succeeded", a)
				}
			case provider.UseDecrypt:
				sealed, err := ks.Seal(ctx, testCaller, id, []byte("plaintext"), []byte("aad"))
				if err != nil {
					t.Fatalf("seal %s: %v", a, err)
				}
				if _, err := ks.Unseal(ctx, testCaller, id, sealed.Data, []byte("other aad")); err == nil {
					t.Fatalf("unseal %s with the wrong AAD succeeded", a)
				}
				dk, err := ks.GenerateDataKey(ctx, testCaller, id, core.DataKeySpec{}, []byte("aad"))
				if err != nil {
					t.Fatalf("generate a data key with %s: %v", a, err)
				}
				secrets = append(secrets, secret{fmt.Sprintf("a data key of %s", id), dk.Plaintext})
			case provider.UseAsymmetricDecrypt:
				m, err := ks.Get(ctx, testCaller, id)
				if err != nil {
					t.Fatal(err)
				}
				pub := m.Versions[m.Current-1].PublicKey
				msg := []byte("plaintext")
				enc, ct := hpkeSeal(t, a, pub, []byte("info"), []byte("aad"), msg)
				d, err := ks.Decrypt(ctx, testCaller, id, 0, core.HPKEMessage{Enc: enc, Ciphertext: ct, Info: []byte("info"), AAD: []byte("aad")})
				if err != nil || !bytes.Equal(d.Plaintext, msg) {
					t.Fatalf("decrypt %s: %q, %v", a, d.Plaintext, err)
				}
				if _, err := ks.Decrypt(ctx, testCaller, id, 0, core.HPKEMessage{Enc: enc, Ciphertext: ct, Info: []byte("info"), AAD: []byte("other aad")}); err == nil {
					t.Fatalf("decrypt %s with the wrong AAD succeeded", a)
				}
			}
			if round == 0 {
				if _, err := ks.Rotate(ctx, testCaller, id); err != nil {
					t.Fatalf("rotate %s: %v", a, err)
				}
			}
		}
		// Corrupted and misbound handles, straight to the plugin.
		g, err := c.Generate(ctx, provider.KeyRef{ID: id, Version: 3, Algorithm: a, Use: use, Provider: info.Name})
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, provider.KeyRef{ID: id, Version: 3, Algorithm: a, Use: use, Provider: info.Name})
		bad := bytes.Clone(g.Handle)
		bad[len(bad)-1] ^= 1
		other := provider.KeyRef{ID: id, Version: 4, Algorithm: a, Use: use, Provider: info.Name}
		for _, tc := range []struct {
			ref provider.KeyRef
			h   provider.Handle
		}{{refs[len(refs)-1], bad}, {other, g.Handle}} {
			switch use {
			case provider.UseSign:
				_, err = c.Sign(ctx, tc.ref, tc.h, []byte("m"))
			case provider.UseMAC:
				_, err = c.MAC(ctx, tc.ref, tc.h, []byte("m"))
			case provider.UseAsymmetricDecrypt:
				spec, serr := alg.Default().Lookup(a)
				if serr != nil {
					t.Fatal(serr)
				}
				_, err = c.Decrypt(ctx, tc.ref, tc.h, make([]byte, spec.EncSize), make([]byte, 32), nil, nil)
			default:
				_, err = c.Open(ctx, tc.ref, tc.h, make([]byte, 64), nil)
			}
			if err == nil {
				t.Fatalf("%s: a corrupted or misbound handle worked", a)
			}
		}
		if _, err := ks.Revoke(ctx, testCaller, id); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Destroy(ctx, testCaller, id); err != nil {
			t.Fatalf("destroy %s: %v", a, err)
		}
	}
	// Imports of material the test knows, of each format (raw AEAD and
	// HMAC keys, PKCS #8 Ed25519, ECDSA and X25519 keys), each used once,
	// and imports refused for material of another algorithm.
	for i, im := range importMaterials(t) {
		id, err := provider.NewKeyID("app", "leak-import", fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, secret{fmt.Sprintf("imported %s material", im.alg), im.data})
		secrets = append(secrets, im.secrets...)
		md, err := ks.Import(ctx, testCaller, id, importRequest(t, ks, id, im.alg, im.data))
		if err != nil || md.Origin != core.OriginImported {
			t.Fatalf("import %s: %v", im.alg, err)
		}
		switch md.Use {
		case provider.UseSign:
			_, err = ks.Sign(ctx, testCaller, id, []byte("message"))
		case provider.UseMAC:
			_, err = ks.MAC(ctx, testCaller, id, []byte("message"))
		case provider.UseDecrypt:
			_, err = ks.Seal(ctx, testCaller, id, []byte("plaintext"), nil)
		case provider.UseAsymmetricDecrypt:
			pub := md.Versions[0].PublicKey
			enc, ct := hpkeSeal(t, im.alg, pub, nil, nil, []byte("plaintext"))
			_, err = ks.Decrypt(ctx, testCaller, id, 1, core.HPKEMessage{Enc: enc, Ciphertext: ct})
		}
		if err != nil {
			t.Fatalf("use of the imported %s key: %v", im.alg, err)
		}
		// The same material offered as another algorithm's: refused.
		wrong := provider.HMACSHA512
		if im.alg == provider.HMACSHA512 {
			wrong = provider.AES256GCM
		}
		wid, err := provider.NewKeyID("app", "leak-import", fmt.Sprintf("wrong%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Import(ctx, testCaller, wid, importRequest(t, ks, wid, wrong, im.data)); err == nil {
			t.Fatalf("%s material imported as %s", im.alg, wrong)
		}
	}
	// A crash and a restart add go-plugin's messages to the output.
	killPlugin(t, c)
	for i := 0; i < 2; i++ {
		if _, err := c.Generate(ctx, refs[0]); err == nil {
			break
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	outputs := map[string][]byte{"raw plugin output": raw.Bytes(), "host log": logs.Bytes()}
	if !bytes.Contains(outputs["raw plugin output"], []byte("INSECURE")) || !bytes.Contains(outputs["host log"], []byte("INSECURE")) {
		t.Fatalf("the plugin's start-up warning was not captured and forwarded:\nraw:\n%s\nlog:\n%s", outputs["raw plugin output"], outputs["host log"])
	}
	kek, err := testseed.InsecureKEK(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, secret{"KEK", kek}, secret{"seed", testSeed})
	for _, ref := range refs {
		known, err := testseed.InsecureKnownSecrets(testSeed, ref)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range known {
			secrets = append(secrets, secret{fmt.Sprintf("%s (%s) secret %d", ref, ref.Algorithm, i), s})
		}
	}
	searched := 0
	for _, s := range secrets {
		for form, needle := range secretForms(s.b) {
			for name, hay := range outputs {
				searched++
				if bytes.Contains(hay, needle) {
					t.Errorf("%s found in the %s as %s", s.what, name, form)
				}
			}
		}
	}
	t.Logf("searched %d bytes of plugin output and %d of host log for %d secrets (%d searches)",
		len(outputs["raw plugin output"]), len(outputs["host log"]), len(secrets), searched)
}

// importMaterial is key material the leak test imports: its algorithm,
// its import form and the other forms that give it away.
type importMaterial struct {
	alg     provider.Algorithm
	data    []byte
	secrets []secret
}

// secret is something the plugin's output must never contain.
type secret struct {
	what string
	b    []byte
}

// importMaterials returns fixed material of each import format.
func importMaterials(t *testing.T) []importMaterial {
	t.Helper()
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	type s = secret
	edSeed := bytes.Repeat([]byte{0x5e}, ed25519.SeedSize)
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), bytes.Repeat([]byte{0x3c}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ecScalar, err := ec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x77}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return []importMaterial{
		{alg: provider.AES256GCM, data: bytes.Repeat([]byte{0xa1}, 32)},
		{alg: provider.HMACSHA256, data: bytes.Repeat([]byte{0xb2}, 32)},
		{alg: provider.Ed25519, data: pkcs8(ed25519.NewKeyFromSeed(edSeed)), secrets: []s{{"imported Ed25519 seed", edSeed}}},
		{alg: provider.ECDSAP256, data: pkcs8(ec), secrets: []s{{"imported ECDSA scalar", ecScalar}}},
		{alg: provider.HPKEX25519, data: pkcs8(x), secrets: []s{{"imported X25519 key", x.Bytes()}}},
	}
}

// importRequest gets import parameters for id and alg from ks and wraps
// data to them as a client does (crypto/hpke, base mode, the parameters'
// info, no AAD).
func importRequest(t *testing.T, ks *core.Keystore, id provider.KeyID, a provider.Algorithm, data []byte) core.ImportRequest {
	t.Helper()
	p, err := ks.ImportParameters(t.Context(), testCaller, id, core.ImportOptions{Algorithm: a})
	if err != nil {
		t.Fatalf("import parameters for %s: %v", a, err)
	}
	enc, wrapped := hpkeSeal(t, p.WrappingAlgorithm, p.PublicKey, p.Info, nil, data)
	return core.ImportRequest{Token: p.Token, Enc: enc, Wrapped: wrapped}
}

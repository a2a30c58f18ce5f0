package e2e

import (
	"bytes"
	"context"
	"crypto/hpke"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// HPKE decryption (issue 12) against the real daemon: for every suite
// the daemon's public key is exported (keystorectl pubkey --format hpke,
// and PEM where a standard exists, which OpenSSL must read as the same
// key), messages are sealed outside the daemon by independent HPKE
// implementations (Go's crypto/hpke here, in the test, and hpke-js under
// node: TestHPKEInteropJS) and decrypted by the daemon through keystorectl
// hpke-decrypt and client.Decrypt; versions behave as for sign keys across
// a rotation; any tampering is EBADMSG.

// hpkeSuite is one HPKE algorithm with its RFC 9180 identifiers and
// sizes.
type hpkeSuite struct {
	alg            client.Algorithm
	kem, kdf, aead uint16
	pub, enc       int
	// pem: the public key has a standard SPKI form (X25519, P-256; the
	// hybrid has none).
	pem bool
}

var hpkeSuites = []hpkeSuite{
	{client.HPKEX25519, 0x0020, 0x0001, 0x0003, 32, 32, true},
	{client.HPKEP256, 0x0010, 0x0001, 0x0001, 65, 65, true},
	{client.HPKEMLKEM768X25519, 0x647a, 0x0001, 0x0002, 1216, 1120, false},
}

// hpkeKey is keystorectl pubkey --format hpke's JSON.
type hpkeKey struct {
	Key       string `json:"key"`
	Version   uint32 `json:"version"`
	Algorithm string `json:"algorithm"`
	KEMID     uint16 `json:"kem_id"`
	KDFID     uint16 `json:"kdf_id"`
	AEADID    uint16 `json:"aead_id"`
	PublicKey []byte `json:"public_key"`
}

// exportHPKE runs keystorectl pubkey --format hpke for ref and checks the
// suite and sizes it names.
func exportHPKE(t *testing.T, d *daemontest.Daemon, s hpkeSuite, ref string) hpkeKey {
	t.Helper()
	var k hpkeKey
	if err := json.Unmarshal(ctlOK(t, d, nil, "pubkey", ref, "--format", "hpke").stdout, &k); err != nil {
		t.Fatalf("pubkey --format hpke: %v", err)
	}
	if k.Algorithm != string(s.alg) || k.KEMID != s.kem || k.KDFID != s.kdf || k.AEADID != s.aead || len(k.PublicKey) != s.pub {
		t.Fatalf("pubkey --format hpke = %+v (%d-byte key), want %s with KEM %#04x KDF %#04x AEAD %#04x and a %d-byte key",
			k, len(k.PublicKey), s.alg, s.kem, s.kdf, s.aead, s.pub)
	}
	return k
}

// goSeal seals plaintext to k with Go's crypto/hpke, from the identifiers
// and raw key of the export alone.
func goSeal(t *testing.T, k hpkeKey, info, aad, plaintext []byte) (enc, ct []byte) {
	t.Helper()
	kem, err := hpke.NewKEM(k.KEMID)
	if err != nil {
		t.Fatal(err)
	}
	kdf, err := hpke.NewKDF(k.KDFID)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := hpke.NewAEAD(k.AEADID)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kem.NewPublicKey(k.PublicKey)
	if err != nil {
		t.Fatalf("crypto/hpke does not take the exported public key: %v", err)
	}
	enc, sender, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		t.Fatal(err)
	}
	ct, err = sender.Seal(aad, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return enc, ct
}

// decryptCLI decrypts enc ‖ ct with keystorectl hpke-decrypt ref.
func decryptCLI(t *testing.T, d *daemontest.Daemon, ref, info, aad string, enc, ct []byte) []byte {
	t.Helper()
	return ctlOK(t, d, nil, "hpke-decrypt", ref, "--info", info, "--aad", aad, "--in", writeTemp(t, append(append([]byte(nil), enc...), ct...))).stdout
}

// checkHPKEPEM has OpenSSL read the PEM export and checks that it is the
// raw key (the end of the SubjectPublicKeyInfo OpenSSL writes back).
func checkHPKEPEM(t *testing.T, d *daemontest.Daemon, ref string, raw []byte) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed (apt-get install openssl): the PEM export is not read back by OpenSSL")
		return
	}
	pem := writeTemp(t, ctlOK(t, d, nil, "pubkey", ref, "--format", "pem").stdout)
	if out, err := runOpenSSL(t, openssl, nil, "pkey", "-pubin", "-in", pem, "-noout"); err != nil {
		t.Fatalf("openssl pkey -pubin refuses the PEM export: %v\n%s", err, out)
	}
	der := filepath.Join(t.TempDir(), "pub.der")
	if out, err := runOpenSSL(t, openssl, nil, "pkey", "-pubin", "-in", pem, "-outform", "DER", "-out", der); err != nil {
		t.Fatalf("openssl pkey -outform DER: %v\n%s", err, out)
	}
	if spki := mustRead(t, der); !bytes.HasSuffix(spki, raw) {
		t.Fatalf("OpenSSL's SubjectPublicKeyInfo %x does not end with the raw key %x", spki, raw)
	}
}

func TestHPKEDecrypt(t *testing.T) {
	ctx := context.Background()
	d := start(t)
	c := dial(t, d)
	for _, s := range hpkeSuites {
		t.Run(string(s.alg), func(t *testing.T) {
			key := "inbox/" + string(s.alg)
			ctlOK(t, d, nil, "create", key, "--alg", string(s.alg))
			k1 := exportHPKE(t, d, s, key)
			if k1.Version != 1 {
				t.Fatalf("exported version %d, want 1", k1.Version)
			}
			if s.pem {
				checkHPKEPEM(t, d, key, k1.PublicKey)
			} else {
				ctlFails(t, d, nil, int(syscall.ENOTSUP), "ENOTSUP", "pubkey", key, "--format", "pem")
			}

			// Sealed by crypto/hpke from the export, opened in the daemon.
			info, aad := "orders v1", "order 7"
			pt := []byte("a message for the daemon\x00\xff")
			enc, ct := goSeal(t, k1, []byte(info), []byte(aad), pt)
			if len(enc) != s.enc {
				t.Fatalf("enc of %d bytes, want %d", len(enc), s.enc)
			}
			if got := decryptCLI(t, d, key+"@1", info, aad, enc, ct); !bytes.Equal(got, pt) {
				t.Fatalf("hpke-decrypt = %q, want %q", got, pt)
			}
			msg := client.HPKEMessage{Enc: enc, Ciphertext: ct, Info: []byte(info), AAD: []byte(aad)}
			dec, err := c.Decrypt(ctx, key, 1, msg)
			if err != nil || !bytes.Equal(dec.Plaintext, pt) || dec.Version != 1 {
				t.Fatalf("Decrypt = %q v%d, %v", dec.Plaintext, dec.Version, err)
			}
			// Empty info, aad and plaintext.
			e0, c0 := goSeal(t, k1, nil, nil, nil)
			if dec, err := c.Decrypt(ctx, key, 0, client.HPKEMessage{Enc: e0, Ciphertext: c0}); err != nil || len(dec.Plaintext) != 0 {
				t.Errorf("Decrypt of an empty message = %q, %v", dec.Plaintext, err)
			}

			// Tampering: EBADMSG, no plaintext, whatever was changed.
			flip := func(b []byte, i int) []byte {
				b = bytes.Clone(b)
				b[i] ^= 0x01
				return b
			}
			for what, m := range map[string]client.HPKEMessage{
				"enc, first byte":          {Enc: flip(enc, 0), Ciphertext: ct, Info: msg.Info, AAD: msg.AAD},
				"enc, last byte":           {Enc: flip(enc, len(enc)-1), Ciphertext: ct, Info: msg.Info, AAD: msg.AAD},
				"enc, short":               {Enc: enc[:len(enc)-1], Ciphertext: ct, Info: msg.Info, AAD: msg.AAD},
				"ciphertext, first byte":   {Enc: enc, Ciphertext: flip(ct, 0), Info: msg.Info, AAD: msg.AAD},
				"ciphertext, tag":          {Enc: enc, Ciphertext: flip(ct, len(ct)-1), Info: msg.Info, AAD: msg.AAD},
				"ciphertext, truncated":    {Enc: enc, Ciphertext: ct[:len(ct)-1], Info: msg.Info, AAD: msg.AAD},
				"ciphertext, under a tag":  {Enc: enc, Ciphertext: ct[:15], Info: msg.Info, AAD: msg.AAD},
				"ciphertext, extended":     {Enc: enc, Ciphertext: append(bytes.Clone(ct), 0), Info: msg.Info, AAD: msg.AAD},
				"info":                     {Enc: enc, Ciphertext: ct, Info: []byte("orders v2"), AAD: msg.AAD},
				"no info":                  {Enc: enc, Ciphertext: ct, AAD: msg.AAD},
				"aad":                      {Enc: enc, Ciphertext: ct, Info: msg.Info, AAD: []byte("order 8")},
				"no aad":                   {Enc: enc, Ciphertext: ct, Info: msg.Info},
				"info and aad swapped":     {Enc: enc, Ciphertext: ct, Info: msg.AAD, AAD: msg.Info},
				"another message's enc":    {Enc: e0, Ciphertext: ct, Info: msg.Info, AAD: msg.AAD},
				"another message's cipher": {Enc: enc, Ciphertext: c0, Info: msg.Info, AAD: msg.AAD},
			} {
				dec, err := c.Decrypt(ctx, key, 1, m)
				if !errors.Is(err, client.ErrBadMessage) || !errors.Is(err, syscall.EBADMSG) || dec.Plaintext != nil {
					t.Errorf("Decrypt with tampered %s = %q, %v; want ErrBadMessage and no plaintext", what, dec.Plaintext, err)
				}
			}
			tampered := filepath.Join(t.TempDir(), "tampered")
			ctlFails(t, d, nil, int(syscall.EBADMSG), "EBADMSG", "hpke-decrypt", key+"@1", "--info", info, "--aad", aad, "--in",
				writeFile(t, tampered, append(bytes.Clone(enc), flip(ct, 3)...)), "--out", filepath.Join(filepath.Dir(tampered), "out"))
			if _, err := os.Stat(filepath.Join(filepath.Dir(tampered), "out")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed hpke-decrypt left its --out file: %v", err)
			}
			ctlFails(t, d, nil, int(syscall.EBADMSG), "EBADMSG", "hpke-decrypt", key+"@1", "--info", "orders v2", "--aad", aad, "--in",
				writeTemp(t, append(bytes.Clone(enc), ct...)))

			// hpke-encrypt (client-side, to the exported key) round trips
			// through hpke-decrypt and client.Decrypt.
			r := ctlOK(t, d, pt, "hpke-encrypt", key, "--info", info, "--aad", aad)
			if !strings.Contains(r.stderr, "encrypted to "+k1.Key+"@1") {
				t.Errorf("hpke-encrypt stderr %q", r.stderr)
			}
			if got := decryptCLI(t, d, key+"@1", info, aad, r.stdout[:s.enc], r.stdout[s.enc:]); !bytes.Equal(got, pt) {
				t.Errorf("hpke-decrypt of hpke-encrypt's output = %q", got)
			}
			var sealed struct {
				Key        string `json:"key"`
				Version    uint32 `json:"version"`
				Enc        []byte `json:"enc"`
				Ciphertext []byte `json:"ciphertext"`
			}
			if err := json.Unmarshal(ctlOK(t, d, pt, "--json", "hpke-encrypt", key, "--info", info).stdout, &sealed); err != nil {
				t.Fatal(err)
			}
			if dec, err := c.Decrypt(ctx, sealed.Key, sealed.Version, client.HPKEMessage{Enc: sealed.Enc, Ciphertext: sealed.Ciphertext, Info: []byte(info)}); err != nil || !bytes.Equal(dec.Plaintext, pt) {
				t.Errorf("Decrypt of hpke-encrypt --json's output = %q, %v", dec.Plaintext, err)
			}

			// Rotation: senders encrypt to a version; older ones decrypt.
			ctlOK(t, d, nil, "rotate", key)
			k2 := exportHPKE(t, d, s, key)
			if k2.Version != 2 || bytes.Equal(k2.PublicKey, k1.PublicKey) {
				t.Fatalf("after rotate the export is version %d (same key: %v), want a new version 2", k2.Version, bytes.Equal(k2.PublicKey, k1.PublicKey))
			}
			if again := exportHPKE(t, d, s, key+"@1"); !bytes.Equal(again.PublicKey, k1.PublicKey) || again.Version != 1 {
				t.Errorf("pubkey %s@1 after rotate: version %d, same key %v", key, again.Version, bytes.Equal(again.PublicKey, k1.PublicKey))
			}
			if dec, err := c.Decrypt(ctx, key, 1, msg); err != nil || dec.Version != 1 || !bytes.Equal(dec.Plaintext, pt) {
				t.Errorf("a message to version 1 after rotate: %q v%d, %v", dec.Plaintext, dec.Version, err)
			}
			if got := decryptCLI(t, d, key+"@1", info, aad, enc, ct); !bytes.Equal(got, pt) {
				t.Errorf("hpke-decrypt @1 after rotate = %q", got)
			}
			if _, err := c.Decrypt(ctx, key, 0, msg); !errors.Is(err, client.ErrBadMessage) {
				t.Errorf("a message to version 1 opened by the primary (2): %v, want ErrBadMessage", err)
			}
			e2, c2 := goSeal(t, k2, []byte(info), nil, pt)
			if dec, err := c.Decrypt(ctx, key, 0, client.HPKEMessage{Enc: e2, Ciphertext: c2, Info: []byte(info)}); err != nil || dec.Version != 2 || !bytes.Equal(dec.Plaintext, pt) {
				t.Errorf("a message to version 2 by the primary: %q v%d, %v", dec.Plaintext, dec.Version, err)
			}
			if _, err := c.Decrypt(ctx, key, 1, client.HPKEMessage{Enc: e2, Ciphertext: c2, Info: []byte(info)}); !errors.Is(err, client.ErrBadMessage) {
				t.Errorf("a message to version 2 opened by version 1: %v, want ErrBadMessage", err)
			}
			if _, err := c.Decrypt(ctx, key, 3, msg); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("version 3: %v, want ErrNotFound", err)
			}
			r = ctlOK(t, d, pt, "hpke-encrypt", key+"@1", "--info", info)
			if got := decryptCLI(t, d, key+"@1", info, "", r.stdout[:s.enc], r.stdout[s.enc:]); !bytes.Equal(got, pt) {
				t.Errorf("hpke-encrypt to @1 after rotate, decrypted = %q", got)
			}
			// A revoked version decrypts no more.
			ctlOK(t, d, nil, "revoke", key+"@1")
			if _, err := c.Decrypt(ctx, key, 1, msg); !errors.Is(err, client.ErrKeyRevoked) {
				t.Errorf("a message to revoked version 1: %v, want ErrKeyRevoked", err)
			}
		})
	}
	// An HPKE key is for Decrypt only; other keys are not HPKE keys.
	ctlOK(t, d, nil, "create", "box/k", "--alg", "xchacha20-poly1305")
	e0, c0 := goSeal(t, exportHPKE(t, d, hpkeSuites[0], "inbox/"+string(hpkeSuites[0].alg)), nil, nil, []byte("x"))
	if _, err := c.Decrypt(ctx, "box/k", 0, client.HPKEMessage{Enc: e0, Ciphertext: c0}); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Decrypt with an AEAD key: %v, want ErrPermission", err)
	}
	if _, err := c.Seal(ctx, "inbox/"+string(hpkeSuites[0].alg), []byte("x"), nil); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Seal with an HPKE key: %v, want ErrPermission", err)
	}
	// The default algorithm of the use is the post-quantum hybrid.
	r := ctlOK(t, d, nil, "--json", "create", "inbox/default", "--use", "asymmetric-decrypt")
	if !strings.Contains(string(r.stdout), `"algorithm":"hpke-mlkem768x25519-sha256-aes256gcm"`) {
		t.Errorf("create --use asymmetric-decrypt: %s", r.stdout)
	}
}

// hpkeJS returns the node binary for e2e/hpkejs/seal.mjs, or skips saying
// what is missing; with $KEYSTORED_REQUIRE_INTEROP set (.ci/run sets it,
// after npm ci) a missing piece fails the test instead.
func hpkeJS(t *testing.T) (node, script string) {
	t.Helper()
	missing := ""
	node, err := exec.LookPath("node")
	script, aerr := filepath.Abs(filepath.Join("hpkejs", "seal.mjs"))
	switch {
	case err != nil:
		missing = "node is not installed (apt-get install nodejs npm)"
	case aerr != nil:
		missing = aerr.Error()
	default:
		if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "@hpke", "core")); err != nil {
			missing = "hpke-js is not installed (npm ci --prefix e2e/hpkejs)"
		}
	}
	if missing != "" {
		if os.Getenv("KEYSTORED_REQUIRE_INTEROP") != "" {
			t.Fatalf("KEYSTORED_REQUIRE_INTEROP is set, but %s", missing)
		}
		t.Skipf("SKIP: the hpke-js interop check needs node and e2e/hpkejs/node_modules: %s; .ci/run installs both and sets KEYSTORED_REQUIRE_INTEROP", missing)
	}
	return node, script
}

// jsSeal seals plaintext to k with hpke-js (seal.mjs, a non-Go RFC 9180
// implementation), from the identifiers and raw key of the export alone.
func jsSeal(t *testing.T, node, script string, k hpkeKey, info, aad, plaintext []byte) (enc, ct []byte) {
	t.Helper()
	b64 := func(b []byte) []byte { return append([]byte{}, b...) } // "" for empty, never null
	in, err := json.Marshal(map[string]any{
		"kem_id": k.KEMID, "kdf_id": k.KDFID, "aead_id": k.AEADID, "public_key": k.PublicKey,
		"info": b64(info), "aad": b64(aad), "plaintext": b64(plaintext),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node seal.mjs: %v\n%s", err, stderr.String())
	}
	var out struct {
		Enc        []byte `json:"enc"`
		Ciphertext []byte `json:"ciphertext"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("node seal.mjs wrote %q: %v", stdout.Bytes(), err)
	}
	return out.Enc, out.Ciphertext
}

// TestHPKEInteropJS: hpke-js (pinned in e2e/hpkejs/package-lock.json)
// seals to every suite's exported key; the daemon decrypts through
// keystorectl hpke-decrypt and client.Decrypt, also a message to version
// 1 after a rotation; a tampered one is EBADMSG.
func TestHPKEInteropJS(t *testing.T) {
	node, script := hpkeJS(t)
	ctx := context.Background()
	d := start(t)
	c := dial(t, d)
	for _, s := range hpkeSuites {
		t.Run(string(s.alg), func(t *testing.T) {
			key := "js/" + string(s.alg)
			ctlOK(t, d, nil, "create", key, "--alg", string(s.alg))
			k1 := exportHPKE(t, d, s, key)
			info, aad := "js info", "js aad"
			pt := bytes.Repeat([]byte("sealed by hpke-js\n"), 100)
			enc, ct := jsSeal(t, node, script, k1, []byte(info), []byte(aad), pt)
			if len(enc) != s.enc || len(ct) != len(pt)+16 {
				t.Fatalf("hpke-js wrote enc %d bytes, ciphertext %d; want %d and %d", len(enc), len(ct), s.enc, len(pt)+16)
			}
			if got := decryptCLI(t, d, key+"@1", info, aad, enc, ct); !bytes.Equal(got, pt) {
				t.Fatalf("hpke-decrypt of hpke-js's message = %q", got)
			}
			msg := client.HPKEMessage{Enc: enc, Ciphertext: ct, Info: []byte(info), AAD: []byte(aad)}
			if dec, err := c.Decrypt(ctx, key, 1, msg); err != nil || !bytes.Equal(dec.Plaintext, pt) {
				t.Fatalf("Decrypt of hpke-js's message = %q, %v", dec.Plaintext, err)
			}
			e0, c0 := jsSeal(t, node, script, k1, nil, nil, nil)
			if dec, err := c.Decrypt(ctx, key, 1, client.HPKEMessage{Enc: e0, Ciphertext: c0}); err != nil || len(dec.Plaintext) != 0 {
				t.Errorf("Decrypt of hpke-js's empty message = %q, %v", dec.Plaintext, err)
			}
			bad := msg
			bad.Ciphertext = bytes.Clone(ct)
			bad.Ciphertext[0] ^= 0x80
			if _, err := c.Decrypt(ctx, key, 1, bad); !errors.Is(err, client.ErrBadMessage) {
				t.Errorf("a tampered hpke-js message: %v, want ErrBadMessage", err)
			}
			bad = msg
			bad.Info = []byte("other info")
			if _, err := c.Decrypt(ctx, key, 1, bad); !errors.Is(err, client.ErrBadMessage) {
				t.Errorf("an hpke-js message with another info: %v, want ErrBadMessage", err)
			}
			ctlOK(t, d, nil, "rotate", key)
			if dec, err := c.Decrypt(ctx, key, 1, msg); err != nil || dec.Version != 1 || !bytes.Equal(dec.Plaintext, pt) {
				t.Errorf("hpke-js's message to version 1 after rotate: v%d, %v", dec.Version, err)
			}
			k2 := exportHPKE(t, d, s, key)
			e2, c2 := jsSeal(t, node, script, k2, []byte(info), nil, pt)
			if got := decryptCLI(t, d, key+"@2", info, "", e2, c2); !bytes.Equal(got, pt) {
				t.Errorf("hpke-decrypt of hpke-js's message to version 2 = %q", got)
			}
		})
	}
}

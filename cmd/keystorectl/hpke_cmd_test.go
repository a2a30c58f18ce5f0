package main

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
)

// hpkeKeyJSON is pubkey --format hpke's object.
type hpkeKeyJSON struct {
	Key       string `json:"key"`
	Version   uint32 `json:"version"`
	Algorithm string `json:"algorithm"`
	KEMID     uint16 `json:"kem_id"`
	KDFID     uint16 `json:"kdf_id"`
	AEADID    uint16 `json:"aead_id"`
	PublicKey []byte `json:"public_key"`
}

// For each HPKE algorithm: create, pubkey in its formats, hpke-encrypt to
// it and hpke-decrypt; an independent sender (crypto/hpke, from the hpke
// JSON alone) is decrypted too; a wrong info or aad is EBADMSG.
func TestHPKECommands(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "web"}).Socket
	r := ctl(t, s, nil, "create", "inbox/default", "--use", "asymmetric-decrypt")
	if r.code != 0 || !strings.Contains(string(r.stdout), "hpke-mlkem768x25519-sha256-aes256gcm") {
		t.Fatalf("create --use asymmetric-decrypt: exit %d, %q %s; want the hybrid by default", r.code, r.stdout, r.stderr)
	}
	fails(t, s, nil, 22, "create", "inbox/bad", "--use", "asymmetric-decrypt", "--alg", "ed25519")
	dir := t.TempDir()
	for alg, enc := range map[string]int{"hpke-x25519-sha256-chacha20poly1305": 32, "hpke-p256-sha256-aes128gcm": 65, "hpke-mlkem768x25519-sha256-aes256gcm": 1120} {
		key := "inbox/" + alg[:9]
		ok(t, s, nil, "create", key, "--alg", alg)
		msg := []byte("order 42: two crates")
		sealedPath := filepath.Join(dir, alg+".hpke")
		r := ok(t, s, msg, "hpke-encrypt", key, "--info", "orders-v1", "--aad", "hdr", "--out", sealedPath)
		if want := "keystorectl: encrypted to web/" + key + "@1 (" + alg + ")\n"; r.stderr != want {
			t.Errorf("%s: hpke-encrypt stderr %q, want %q", alg, r.stderr, want)
		}
		sealed, err := os.ReadFile(sealedPath)
		if err != nil || len(sealed) != enc+len(msg)+16 {
			t.Fatalf("%s: enc ‖ ciphertext of %d bytes (%v), want %d", alg, len(sealed), err, enc+len(msg)+16)
		}
		if got := ok(t, s, nil, "hpke-decrypt", key+"@1", "--info", "orders-v1", "--aad", "hdr", "--in", sealedPath).stdout; !bytes.Equal(got, msg) {
			t.Errorf("%s: hpke-decrypt = %q", alg, got)
		}
		for name, args := range map[string][]string{
			"another info": {"--info", "orders-v2", "--aad", "hdr"}, "no aad": {"--info", "orders-v1"}, "no info": {"--aad", "hdr"},
		} {
			r := fails(t, s, nil, 74, append([]string{"hpke-decrypt", key + "@1", "--in", sealedPath}, args...)...)
			if !strings.Contains(r.stderr, "hint: wrong key or version, another --info or --aad") || len(r.stdout) != 0 {
				t.Errorf("%s with %s: %q", alg, name, r.stderr)
			}
		}
		flipped := bytes.Clone(sealed)
		flipped[3] ^= 1
		fails(t, s, flipped, 74, "hpke-decrypt", key+"@1", "--info", "orders-v1", "--aad", "hdr")
		fails(t, s, sealed[:enc+15], 74, "hpke-decrypt", key+"@1")

		// An independent sender: crypto/hpke with the hpke JSON's key and suite.
		var hk hpkeKeyJSON
		if err := json.Unmarshal(ok(t, s, nil, "pubkey", key, "--format", "hpke").stdout, &hk); err != nil {
			t.Fatal(err)
		}
		if hk.Key != "web/"+key || hk.Version != 1 || hk.Algorithm != alg || hk.KDFID != 1 {
			t.Errorf("%s: pubkey --format hpke = %+v", alg, hk)
		}
		kem, err1 := hpke.NewKEM(hk.KEMID)
		kdf, err2 := hpke.NewKDF(hk.KDFID)
		aead, err3 := hpke.NewAEAD(hk.AEADID)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("%s: suite %+v: %v %v %v", alg, hk, err1, err2, err3)
		}
		pk, err := kem.NewPublicKey(hk.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := hpke.Seal(pk, kdf, aead, []byte("independent"), []byte("from crypto/hpke"))
		if err != nil {
			t.Fatal(err)
		}
		if got := ok(t, s, ct, "hpke-decrypt", key+"@1", "--info", "independent").stdout; string(got) != "from crypto/hpke" {
			t.Errorf("%s: crypto/hpke's message decrypts to %q", alg, got)
		}
		if raw := ok(t, s, nil, "pubkey", key, "--format", "raw").stdout; !bytes.Equal(raw, hk.PublicKey) {
			t.Errorf("%s: pubkey --format raw differs from the hpke JSON's key", alg)
		}
		m := decode(t, ok(t, s, nil, "--json", "pubkey", key, "--format", "hpke"))
		if m["kem_id"] != float64(hk.KEMID) || m["hpke"] == nil {
			t.Errorf("%s: pubkey --json --format hpke = %v", alg, m)
		}
		// --json of hpke-encrypt and hpke-decrypt.
		m = decode(t, ok(t, s, msg, "--json", "hpke-encrypt", key))
		e, _ := base64.StdEncoding.DecodeString(m["enc"].(string))
		c, _ := base64.StdEncoding.DecodeString(m["ciphertext"].(string))
		if len(e) != enc || m["version"] != 1.0 || m["algorithm"] != alg {
			t.Errorf("%s: hpke-encrypt --json = %v", alg, m)
		}
		m = decode(t, ok(t, s, append(e, c...), "--json", "hpke-decrypt", key+"@1"))
		if p, _ := base64.StdEncoding.DecodeString(m["plaintext"].(string)); !bytes.Equal(p, msg) {
			t.Errorf("%s: hpke-decrypt --json = %v", alg, m)
		}
	}
	// PEM and JWK where a standard exists; the hybrid has raw and hpke only.
	block, _ := pem.Decode(ok(t, s, nil, "pubkey", "inbox/hpke-x255").stdout)
	if block == nil {
		t.Fatal("no PEM for an X25519 key")
	}
	if k, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil || k.(*ecdh.PublicKey).Curve() != ecdh.X25519() {
		t.Errorf("X25519 PEM: %T %v", k, err)
	}
	var jwk map[string]string
	if err := json.Unmarshal(ok(t, s, nil, "pubkey", "inbox/hpke-p256", "--format", "jwk").stdout, &jwk); err != nil || jwk["kty"] != "EC" || jwk["crv"] != "P-256" || jwk["use"] != "enc" {
		t.Errorf("P-256 jwk = %v, %v", jwk, err)
	}
	for _, f := range []string{"pem", "jwk", "ssh"} {
		r := fails(t, s, nil, 95, "pubkey", "inbox/hpke-mlke", "--format", f)
		if f != "ssh" && !strings.Contains(r.stderr, "raw") {
			t.Errorf("hybrid --format %s: %q, want it to say raw", f, r.stderr)
		}
	}
	// Usage: hpke-decrypt needs @N; a decrypt key is not an HPKE key.
	fails(t, s, nil, exitUsage, "hpke-decrypt", "inbox/hpke-x255")
	ok(t, s, nil, "create", "box/k")
	fails(t, s, []byte("x"), 1, "hpke-encrypt", "box/k")
	fails(t, s, make([]byte, 64), 1, "hpke-decrypt", "box/k@1")
	fails(t, s, []byte("x"), 90, "hpke-encrypt", "inbox/hpke-x255", "--info", strings.Repeat("i", 4<<10+1))
}

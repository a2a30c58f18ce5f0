package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

// ecdsaPub reads KEY@N's public key through pubkey --format pem.
func ecdsaPub(t *testing.T, sock, ref string) *ecdsa.PublicKey {
	t.Helper()
	block, _ := pem.Decode(ok(t, sock, nil, "pubkey", ref).stdout)
	if block == nil {
		t.Fatalf("pubkey %s: no PEM", ref)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PublicKey)
}

func TestSignVerifyDigest(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	ok(t, s, nil, "create", "p/ec", "--alg", "ecdsa-p256-sha256")
	ok(t, s, nil, "create", "p/ed", "--alg", "ed25519")
	big := bytes.Repeat(binaryInput, (provider.MaxSignMessage/len(binaryInput))*2) // over the message bound
	file := writeTemp(t, big)
	sum := sha256.Sum256(big)
	pub := ecdsaPub(t, s, "p/ec@1")

	r := ok(t, s, nil, "sign", "p/ec", "--digest", "sha256", "--in", file)
	if !ecdsa.VerifyASN1(pub, sum[:], r.stdout) || !strings.Contains(r.stderr, "signed by app/p/ec@1") {
		t.Fatalf("sign --digest: the signature does not verify with crypto/ecdsa (stderr %q)", r.stderr)
	}
	sigFile := writeTemp(t, r.stdout)
	if r := ok(t, s, nil, "verify", "p/ec@1", "--digest", "sha256", "--sig", sigFile, "--in", file); string(r.stdout) != "valid signature by p/ec@1\n" {
		t.Errorf("verify --digest: %q", r.stdout)
	}
	ok(t, s, big, "verify", "p/ec@1", "--digest", "sha256", "--sig", sigFile) // the message from stdin
	fails(t, s, nil, 74, "verify", "p/ec@1", "--digest", "sha256", "--sig", sigFile, "--in", writeTemp(t, []byte("other")))
	if n := srv.Calls("/keystore.v1.Keys/Sign"); n != 1 {
		t.Errorf("the daemon saw %d sign calls, want 1", n)
	}

	// A signature made without --digest verifies with it, and the reverse.
	small := writeTemp(t, []byte("small"))
	plain := writeTemp(t, ok(t, s, nil, "sign", "p/ec", "--in", small).stdout)
	ok(t, s, nil, "verify", "p/ec@1", "--digest", "sha256", "--sig", plain, "--in", small)
	hashed := writeTemp(t, ok(t, s, nil, "sign", "p/ec", "--digest", "sha256", "--in", small).stdout)
	ok(t, s, nil, "verify", "p/ec@1", "--sig", hashed, "--in", small)

	m := decode(t, ok(t, s, nil, "--json", "sign", "p/ec", "--digest", "sha256", "--in", file))
	jsig, err := base64.StdEncoding.DecodeString(m["signature"].(string))
	if err != nil || m["key"] != "app/p/ec" || m["version"] != 1.0 || !ecdsa.VerifyASN1(pub, sum[:], jsig) || len(m) != 3 {
		t.Errorf("sign --json --digest = %v (%v)", m, err)
	}

	// Without --digest the bound holds, with a hint to use it.
	r = fails(t, s, nil, 90, "sign", "p/ec", "--in", file)
	if !strings.Contains(r.stderr, "hint: a message may be at most 65536 bytes (64 KiB); for a larger input sign its digest: --digest sha256") {
		t.Errorf("sign of a large file: stderr %q", r.stderr)
	}
	fails(t, s, nil, 90, "verify", "p/ec@1", "--sig", sigFile, "--in", file)
	// Wrong hash, wrong key, unknown hash.
	r = fails(t, s, nil, 22, "sign", "p/ec", "--digest", "sha384", "--in", file)
	if !strings.Contains(r.stderr, "hint: --digest must be the key's own hash: sha256 for ecdsa-p256-sha256") {
		t.Errorf("sign --digest sha384 on P-256: stderr %q", r.stderr)
	}
	r = fails(t, s, nil, 1, "sign", "p/ed", "--digest", "sha256", "--in", file)
	if !strings.Contains(r.stderr, "hint: --digest needs an ECDSA, RSA or ed25519ph key") {
		t.Errorf("sign --digest on ed25519: stderr %q", r.stderr)
	}
	fails(t, s, nil, exitUsage, "sign", "p/ec", "--digest", "md5", "--in", file)
	fails(t, s, nil, exitUsage, "verify", "p/ec@1", "--digest", "sha1", "--sig", sigFile, "--in", file)
	fails(t, s, nil, 2, "sign", "p/ec", "--digest", "sha256", "--in", filepath.Join(t.TempDir(), "none"))
	if n := srv.Calls("/keystore.v1.Keys/Sign"); n != 6 {
		t.Errorf("the daemon saw %d sign calls, want 6 (local errors never reach it)", n)
	}

	// Every hash with its key.
	for alg, hash := range map[string]string{"ecdsa-p384-sha384": "sha384", "ed25519ph": "sha512", "rsa-2048-pss-sha256": "sha256", "rsa-2048-pkcs1-sha256": "sha256"} {
		key := "p/" + alg
		ok(t, s, nil, "create", key, "--alg", alg)
		sig := writeTemp(t, ok(t, s, nil, "sign", key, "--digest", hash, "--in", file).stdout)
		ok(t, s, nil, "verify", key+"@1", "--digest", hash, "--sig", sig, "--in", file)
	}
}

func TestMACCommands(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	ok(t, s, nil, "create", "tokens/session", "--alg", "hmac-sha512")
	ok(t, s, nil, "create", "p/ed", "--alg", "ed25519")
	msg := writeTemp(t, binaryInput)

	r := ok(t, s, nil, "mac", "tokens/session", "--in", msg)
	if len(r.stdout) != 64 || !strings.Contains(r.stderr, "tag by app/tokens/session@1") {
		t.Fatalf("mac: %d bytes, stderr %q; want a 64-byte tag", len(r.stdout), r.stderr)
	}
	tag := writeTemp(t, r.stdout)
	if again := ok(t, s, binaryInput, "mac", "tokens/session").stdout; !bytes.Equal(again, r.stdout) {
		t.Error("mac from stdin differs from mac --in")
	}
	if r := ok(t, s, nil, "verify-mac", "tokens/session@1", "--tag", tag, "--in", msg); string(r.stdout) != "valid tag by tokens/session@1\n" {
		t.Errorf("verify-mac: %q", r.stdout)
	}
	ok(t, s, binaryInput, "verify-mac", "tokens/session@1", "--tag", tag)
	m := decode(t, ok(t, s, nil, "--json", "verify-mac", "tokens/session@1", "--tag", tag, "--in", msg))
	if m["valid"] != true || m["version"] != 1.0 || m["key"] != "tokens/session" {
		t.Errorf("verify-mac --json = %v", m)
	}
	m = decode(t, ok(t, s, binaryInput, "--json", "mac", "tokens/session"))
	if jt, err := base64.StdEncoding.DecodeString(m["tag"].(string)); err != nil || !bytes.Equal(jt, r.stdout) || m["key"] != "app/tokens/session" || m["version"] != 1.0 || len(m) != 3 {
		t.Errorf("mac --json = %v", m)
	}
	out := filepath.Join(t.TempDir(), "tag")
	ok(t, s, nil, "mac", "tokens/session", "--in", msg, "--out", out)
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, r.stdout) {
		t.Errorf("mac --out: %v", err)
	}

	bad := bytes.Clone(r.stdout)
	bad[63] ^= 1
	for name, tg := range map[string][]byte{"flipped": bad, "truncated": r.stdout[:32]} {
		r := fails(t, s, nil, 74, "verify-mac", "tokens/session@1", "--tag", writeTemp(t, tg), "--in", msg)
		if !strings.Contains(r.stderr, "hint: the tag was not made by tokens/session@1") {
			t.Errorf("verify-mac %s tag: stderr %q", name, r.stderr)
		}
	}
	fails(t, s, nil, 90, "verify-mac", "tokens/session@1", "--tag", writeTemp(t, make([]byte, 65)), "--in", msg)
	fails(t, s, nil, exitUsage, "verify-mac", "tokens/session", "--tag", tag, "--in", msg) // no @N
	fails(t, s, binaryInput, exitUsage, "verify-mac", "tokens/session@1", "--tag", "-")    // both stdin
	fails(t, s, nil, exitUsage, "verify-mac", "tokens/session@1", "--in", msg)             // no --tag
	r = fails(t, s, nil, 1, "mac", "p/ed", "--in", msg)
	if !strings.Contains(r.stderr, "not a mac key") {
		t.Errorf("mac with a signing key: stderr %q", r.stderr)
	}
	fails(t, s, nil, 1, "sign", "tokens/session", "--in", msg)
	ok(t, s, make([]byte, provider.MaxMACMessage), "mac", "tokens/session")
	fails(t, s, make([]byte, provider.MaxMACMessage+1), 90, "mac", "tokens/session")

	ok(t, s, nil, "rotate", "tokens/session")
	ok(t, s, nil, "verify-mac", "tokens/session@1", "--tag", tag, "--in", msg) // retired: still verifies
	fails(t, s, nil, 74, "verify-mac", "tokens/session@2", "--tag", tag, "--in", msg)
	ok(t, s, nil, "revoke", "tokens/session")
	fails(t, s, nil, 128, "verify-mac", "tokens/session@1", "--tag", tag, "--in", msg)
}

func TestCreateUse(t *testing.T) {
	s := startDaemon(t, clienttest.Options{}).Socket
	for use, alg := range map[string]string{"sign": "ed25519", "decrypt": "xchacha20-poly1305", "mac": "hmac-sha256"} {
		r := ok(t, s, nil, "create", "use/"+use, "--use", use)
		if want := fmt.Sprintf("created app/use/%s (%s, version 1)\n", use, alg); string(r.stdout) != want {
			t.Errorf("create --use %s: %q, want %q", use, r.stdout, want)
		}
	}
	ok(t, s, nil, "create", "use/both", "--alg", "hmac-sha384", "--use", "mac")
	r := fails(t, s, nil, 22, "create", "use/bad", "--alg", "ed25519", "--use", "mac")
	if !strings.Contains(r.stderr, "hint: ed25519 is a sign algorithm") {
		t.Errorf("create --alg ed25519 --use mac: stderr %q", r.stderr)
	}
	fails(t, s, nil, exitUsage, "create", "use/bad", "--use", "encrypt")
	help := ok(t, s, nil, "create", "--help").stdout
	for _, alg := range []string{"ecdsa-p384-sha384", "rsa-4096-pkcs1-sha256", "ed25519ph", "hmac-sha512"} {
		if !bytes.Contains(help, []byte(alg)) {
			t.Errorf("create --help does not list %s", alg)
		}
	}
	comp := ok(t, s, nil, "__complete", "create", "k", "--alg", "").stdout
	if !bytes.Contains(comp, []byte("hmac-sha256\n")) || !bytes.Contains(comp, []byte("rsa-2048-pss-sha256\n")) {
		t.Errorf("--alg completion lacks the new algorithms: %s", comp)
	}
	comp = ok(t, s, nil, "__complete", "create", "k", "--use", "").stdout
	if !bytes.HasPrefix(comp, []byte("sign\ndecrypt\nmac\n")) {
		t.Errorf("--use completion: %s", comp)
	}
}

func TestBatchMACAndDigests(t *testing.T) {
	s := startDaemon(t, clienttest.Options{})
	ok(t, s.Socket, nil, "create", "tokens/k", "--alg", "hmac-sha256")
	ok(t, s.Socket, nil, "create", "p/ec", "--alg", "ecdsa-p256-sha256")
	ok(t, s.Socket, nil, "rotate", "p/ec")
	msg := base64.StdEncoding.EncodeToString([]byte("hello"))
	in := `{"key":"tokens/k","message":"` + msg + `"}` + "\n" + `{"key":"tokens/missing","message":""}` + "\n"
	r := ctl(t, s.Socket, []byte(in), "batch", "mac")
	lines := strings.Split(strings.TrimSpace(string(r.stdout)), "\n")
	if r.code != 2 || len(lines) != 2 {
		t.Fatalf("batch mac: exit %d, %d lines: %s", r.code, len(lines), r.stdout)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	tag, err := base64.StdEncoding.DecodeString(first["tag"].(string))
	if err != nil || len(tag) != 32 || first["version"] != 1.0 {
		t.Fatalf("batch mac line 1 = %v", first)
	}
	ok(t, s.Socket, nil, "verify-mac", "tokens/k@1", "--tag", writeTemp(t, tag), "--in", writeTemp(t, []byte("hello")))

	sum := sha256.Sum256([]byte("hello"))
	d := base64.StdEncoding.EncodeToString(sum[:])
	in = `{"key":"p/ec","digest":"` + d + `","digest_hash":"sha256"}` + "\n" +
		`{"key":"p/ec","digest":"` + d + `","digest_hash":"sha256","version":1}` + "\n" +
		`{"key":"p/ec","digest":"` + d + `"}` + "\n" +
		`{"key":"p/ec","digest":"` + d + `","digest_hash":"md5"}` + "\n" +
		`{"key":"p/ec","digest":"` + d + `","digest_hash":"sha256","message":"` + msg + `"}` + "\n"
	r = ctl(t, s.Socket, []byte(in), "batch", "sign")
	lines = strings.Split(strings.TrimSpace(string(r.stdout)), "\n")
	if r.code != 22 || len(lines) != 5 {
		t.Fatalf("batch sign digests: exit %d: %s", r.code, r.stdout)
	}
	for i, wantVersion := range []float64{2, 1} {
		var res map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &res); err != nil {
			t.Fatal(err)
		}
		sig, err := base64.StdEncoding.DecodeString(fmt.Sprint(res["signature"]))
		pub := ecdsaPub(t, s.Socket, fmt.Sprintf("p/ec@%d", int(wantVersion)))
		if err != nil || res["version"] != wantVersion || !ecdsa.VerifyASN1(pub, sum[:], sig) {
			t.Errorf("batch sign line %d = %v, want a signature of version %v", i+1, res, wantVersion)
		}
	}
	for _, line := range lines[2:] {
		if !strings.Contains(line, `"reason":"EINVAL"`) {
			t.Errorf("batch sign: %s, want EINVAL", line)
		}
	}
}

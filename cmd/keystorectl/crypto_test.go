package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

// binaryInput is bytes that break text handling: NUL, invalid UTF-8, CR,
// no final newline.
var binaryInput = []byte("\x00\xff\xfe\r\n\xc3\x28 text \x00\x80\xbf\xf8")

func TestSignVerify(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	ok(t, s, nil, "create", "p/sig", "--alg", "ed25519")
	dir := t.TempDir()

	r := ok(t, s, binaryInput, "sign", "p/sig")
	if len(r.stdout) != ed25519.SignatureSize {
		t.Fatalf("sign wrote %d bytes, want a raw %d-byte signature", len(r.stdout), ed25519.SignatureSize)
	}
	if !strings.Contains(r.stderr, "signed by app/p/sig@1") {
		t.Errorf("sign stderr %q lacks the version", r.stderr)
	}
	pub := ok(t, s, nil, "pubkey", "p/sig", "--format", "raw").stdout
	if !ed25519.Verify(pub, binaryInput, r.stdout) {
		t.Fatal("signature from stdin does not verify with crypto/ed25519")
	}
	sigFile := filepath.Join(dir, "sig")
	msgFile := filepath.Join(dir, "msg")
	if err := os.WriteFile(msgFile, binaryInput, 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, s, nil, "sign", "p/sig", "--in", msgFile, "--out", sigFile)
	sig, err := os.ReadFile(sigFile)
	if err != nil || !ed25519.Verify(pub, binaryInput, sig) {
		t.Fatalf("sign --in --out: %v", err)
	}

	m := decode(t, ok(t, s, binaryInput, "--json", "sign", "p/sig"))
	jsig, err := base64.StdEncoding.DecodeString(m["signature"].(string))
	if err != nil || m["key"] != "app/p/sig" || m["version"] != 1.0 || !ed25519.Verify(pub, binaryInput, jsig) {
		t.Errorf("sign --json = %v (%v)", m, err)
	}
	if len(m) != 3 {
		t.Errorf("sign --json has fields %v, want key, version, signature", m)
	}

	r = ok(t, s, binaryInput, "verify", "p/sig@1", "--sig", sigFile)
	if string(r.stdout) != "valid signature by p/sig@1\n" {
		t.Errorf("verify: %q", r.stdout)
	}
	ok(t, s, nil, "verify", "p/sig@1", "--sig", sigFile, "--in", msgFile)
	m = decode(t, ok(t, s, binaryInput, "--json", "verify", "p/sig@1", "--sig", sigFile))
	if m["valid"] != true || m["version"] != 1.0 {
		t.Errorf("verify --json = %v", m)
	}
	r = fails(t, s, []byte("other"), 74, "verify", "p/sig@1", "--sig", sigFile)
	if !strings.Contains(r.stderr, "(EBADMSG)\nhint: the signature was not made by p/sig@1") {
		t.Errorf("verify invalid: stderr %q", r.stderr)
	}
	m = decode(t, fails(t, s, []byte("other"), 74, "--json", "verify", "p/sig@1", "--sig", sigFile))
	if e := m["error"].(map[string]any); e["reason"] != "EBADMSG" || e["exit"] != 74.0 {
		t.Errorf("verify invalid --json = %v", m)
	}
	fails(t, s, binaryInput, exitUsage, "verify", "p/sig", "--sig", sigFile)              // no @N
	fails(t, s, binaryInput, exitUsage, "verify", "p/sig@1")                              // no --sig
	fails(t, s, binaryInput, 22, "verify", "p/sig@0", "--sig", sigFile)                   // bad version
	fails(t, s, binaryInput, exitUsage, "verify", "p/sig@1", "--sig", "-")                // both stdin
	fails(t, s, binaryInput, exitUsage, "verify", "p/sig@1", "--sig", "")                 // "" is stdin too
	fails(t, s, binaryInput, 2, "verify", "p/sig@1", "--sig", filepath.Join(dir, "none")) // ENOENT
	if n := srv.Calls("/keystore.v1.Keys/Verify"); n != 5 {
		t.Errorf("the daemon saw %d verify calls, want 5 (usage errors never reach it)", n)
	}

	// Rotation: the old version still verifies.
	ok(t, s, nil, "rotate", "p/sig")
	ok(t, s, binaryInput, "verify", "p/sig@1", "--sig", sigFile)
	if r := ok(t, s, binaryInput, "sign", "p/sig"); !strings.Contains(r.stderr, "@2") {
		t.Errorf("sign after rotate: %q", r.stderr)
	}
	ok(t, s, nil, "revoke", "p/sig")
	r = fails(t, s, binaryInput, 128, "sign", "p/sig")
	if len(r.stdout) != 0 {
		t.Errorf("failed sign wrote %q to stdout", r.stdout)
	}
	fails(t, s, binaryInput, 128, "verify", "p/sig@1", "--sig", sigFile)
}

func TestSealUnseal(t *testing.T) {
	s := startDaemon(t, clienttest.Options{}).Socket
	ok(t, s, nil, "create", "db/box")
	dir := t.TempDir()

	sealed := ok(t, s, binaryInput, "seal", "db/box", "--aad", "row\x007").stdout
	r := ok(t, s, sealed, "unseal", "db/box", "--aad", "row\x007")
	if !bytes.Equal(r.stdout, binaryInput) {
		t.Fatalf("unseal = %q, want %q", r.stdout, binaryInput)
	}
	r = fails(t, s, sealed, 74, "unseal", "db/box", "--aad", "row 8")
	if len(r.stdout) != 0 || !strings.Contains(r.stderr, "hint: wrong key, wrong --aad") {
		t.Errorf("wrong AAD: stdout %q stderr %q", r.stdout, r.stderr)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)/2] ^= 0x40
	fails(t, s, tampered, 74, "unseal", "db/box", "--aad", "row\x007")
	fails(t, s, sealed[:10], 74, "unseal", "db/box", "--aad", "row\x007")

	in, out, back := filepath.Join(dir, "in"), filepath.Join(dir, "sealed"), filepath.Join(dir, "back")
	if err := os.WriteFile(in, binaryInput, 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, s, nil, "seal", "db/box", "--in", in, "--out", out)
	ok(t, s, nil, "unseal", "db/box", "--in", out, "--out", back)
	got, err := os.ReadFile(back)
	if err != nil || !bytes.Equal(got, binaryInput) {
		t.Fatalf("unseal --out = %q, %v", got, err)
	}
	if st, err := os.Stat(back); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("unseal --out mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}

	m := decode(t, ok(t, s, binaryInput, "--json", "seal", "db/box"))
	js, err := base64.StdEncoding.DecodeString(m["sealed"].(string))
	if err != nil || m["version"] != 1.0 || m["key"] != "db/box" {
		t.Fatalf("seal --json = %v", m)
	}
	m = decode(t, ok(t, s, js, "--json", "unseal", "db/box"))
	pt, err := base64.StdEncoding.DecodeString(m["plaintext"].(string))
	if err != nil || !bytes.Equal(pt, binaryInput) {
		t.Errorf("unseal --json plaintext = %q, %v", pt, err)
	}
	m = decode(t, ok(t, s, js, "--json", "unseal", "db/box", "--out", back))
	if m["out"] != back || m["plaintext"] != nil {
		t.Errorf("unseal --json --out = %v, want out and no plaintext", m)
	}

	// Empty plaintext round trip.
	e := ok(t, s, nil, "seal", "db/box").stdout
	if r := ok(t, s, e, "unseal", "db/box"); len(r.stdout) != 0 {
		t.Errorf("unseal(empty) = %q", r.stdout)
	}
	fails(t, s, binaryInput, 1, "sign", "db/box") // wrong use
}

func TestInputBounds(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	ok(t, s, nil, "create", "p/sig", "--alg", "ed25519")
	ok(t, s, nil, "create", "p/box")

	ok(t, s, make([]byte, provider.MaxSignMessage), "sign", "p/sig")
	r := fails(t, s, make([]byte, provider.MaxSignMessage+1), 90, "sign", "p/sig")
	if !strings.Contains(r.stderr, "hint: a message may be at most 65536 bytes (64 KiB)") {
		t.Errorf("sign over bound: stderr %q", r.stderr)
	}
	if n := srv.Calls("/keystore.v1.Keys/Sign"); n != 1 {
		t.Errorf("the daemon saw %d sign calls, want 1: the oversized one is refused locally", n)
	}
	fails(t, s, make([]byte, provider.MaxSealPlaintext+1), 90, "seal", "p/box")
	ok(t, s, nil, "seal", "p/box", "--aad", strings.Repeat("a", provider.MaxAAD))
	fails(t, s, nil, 90, "seal", "p/box", "--aad", strings.Repeat("a", provider.MaxAAD+1))
	fails(t, s, make([]byte, provider.MaxSealed+1), 90, "unseal", "p/box")
	m := decode(t, fails(t, s, make([]byte, provider.MaxSignMessage+1), 90, "--json", "sign", "p/sig"))
	if e := m["error"].(map[string]any); e["reason"] != "EMSGSIZE" || e["exit"] != 90.0 || !strings.Contains(e["hint"].(string), "65536") {
		t.Errorf("--json bound error = %v", m)
	}
}

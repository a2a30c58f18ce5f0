package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

func writePEM(t *testing.T, path string, pub any, mode os.FileMode) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return der
}

func anchorDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "anchors")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestTrustAnchors(t *testing.T) {
	dir := anchorDir(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := writePEM(t, filepath.Join(dir, "release-2026.pem"), pub, 0o644)
	pub2, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "a-first.pem"), pub2, 0o600)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not an anchor"), 0o644); err != nil {
		t.Fatal(err)
	}
	anchors, err := LoadAnchors(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{anchors: anchors})

	l, err := e.anchors.ListAnchors(bg, &keystorev1.ListAnchorsRequest{})
	mustOK(t, "ListAnchors", err)
	if len(l.GetAnchors()) != 2 || l.GetAnchors()[0].GetName() != "a-first" || l.GetAnchors()[1].GetName() != "release-2026" {
		t.Fatalf("ListAnchors = %v", l.GetAnchors())
	}
	sum := sha256.Sum256(der)
	a := l.GetAnchors()[1]
	if a.GetAlgorithm() != "ed25519" || string(a.GetPublicKey()) != string(pub) || a.GetFingerprint() != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("anchor = %v", a)
	}

	msg := []byte("release manifest")
	sig := ed25519.Sign(priv, msg)
	v, err := e.anchors.Verify(bg, &keystorev1.VerifyAnchorRequest{Anchor: "release-2026", Message: msg, Signature: sig})
	mustOK(t, "Verify", err)
	if !v.GetValid() {
		t.Fatal("good signature: valid = false")
	}
	if r := e.audit.last(t); r.Op != "anchors.verify" || r.Key != "release-2026" || r.Result != "ok" || r.Detail != "" {
		t.Fatalf("record %+v", r)
	}
	v, err = e.anchors.Verify(bg, &keystorev1.VerifyAnchorRequest{Anchor: "a-first", Message: msg, Signature: sig})
	mustOK(t, "Verify with the wrong anchor", err)
	if v.GetValid() {
		t.Fatal("signature verifies under another anchor")
	}
	if r := e.audit.last(t); r.Detail != noteInvalid {
		t.Fatalf("record %+v, want detail %q", r, noteInvalid)
	}
	_, err = e.anchors.Verify(bg, &keystorev1.VerifyAnchorRequest{Anchor: "unknown", Message: msg, Signature: sig})
	wantCode(t, "unknown anchor", err, provider.ENOENT)
	_, err = e.anchors.Verify(bg, &keystorev1.VerifyAnchorRequest{Anchor: "../etc/passwd", Message: msg, Signature: sig})
	wantCode(t, "bad anchor name", err, provider.EINVAL)
	_, err = e.anchors.Verify(bg, &keystorev1.VerifyAnchorRequest{Anchor: "a-first", Message: make([]byte, provider.MaxSignMessage+1)})
	wantCode(t, "oversized message", err, provider.EMSGSIZE)
}

func TestLoadAnchorsRefuses(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file string
		setup      func(dir string)
		want       string
	}{
		{"ecdsa key", "ec.pem", func(dir string) { writePEM(t, filepath.Join(dir, "ec.pem"), &ecKey.PublicKey, 0o644) }, "only ed25519"},
		{"bad name", "Bad Name.pem", func(dir string) { writePEM(t, filepath.Join(dir, "Bad Name.pem"), edPub, 0o644) }, "file name"},
		{"group-writable", "w.pem", func(dir string) { writePEM(t, filepath.Join(dir, "w.pem"), edPub, 0o664) }, "writable"},
		{"not PEM", "junk.pem", func(dir string) {
			if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "no PEM block"},
		{"private key", "priv.pem", func(dir string) {
			b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
			if err := os.WriteFile(filepath.Join(dir, "priv.pem"), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "PUBLIC KEY"},
		{"symlink", "link.pem", func(dir string) {
			target := filepath.Join(t.TempDir(), "t.pem")
			writePEM(t, target, edPub, 0o644)
			if err := os.Symlink(target, filepath.Join(dir, "link.pem")); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
	}
	for _, c := range cases {
		dir := anchorDir(t)
		c.setup(dir)
		_, err := LoadAnchors(dir)
		if err == nil {
			t.Fatalf("%s: LoadAnchors succeeded", c.name)
		}
		if !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not name %s and say %q", c.name, err, c.file, c.want)
		}
	}
	dir := anchorDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAnchors(dir); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("world-writable anchor directory: %v", err)
	}
	if _, err := LoadAnchors(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing directory accepted")
	}
}

// An anchor file or directory owned by another user than the daemon's
// (or root) is refused whatever its mode: its owner could rewrite it.
func TestLoadAnchorsRefusesForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another uid (chown); run the tests as root")
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const other = 12345
	dir := anchorDir(t)
	file := filepath.Join(dir, "foreign.pem")
	writePEM(t, file, edPub, 0o644)
	if _, err := LoadAnchors(dir); err != nil {
		t.Fatalf("anchor owned by root: %v", err)
	}
	if err := os.Lchown(file, other, other); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAnchors(dir); err == nil || !strings.Contains(err.Error(), "foreign.pem") || !strings.Contains(err.Error(), "owned by uid 12345") {
		t.Fatalf("anchor file owned by uid %d: %v, want a refusal naming the file and its owner", other, err)
	}
	if err := os.Lchown(file, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(dir, other, other); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAnchors(dir); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
		t.Fatalf("anchor directory owned by uid %d: %v, want a refusal", other, err)
	}
}

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

func TestPubkeyFormats(t *testing.T) {
	s := startDaemon(t, clienttest.Options{}).Socket
	ok(t, s, nil, "create", "p/ed", "--alg", "ed25519")
	raw := ok(t, s, nil, "pubkey", "p/ed", "--format", "raw").stdout
	if len(raw) != ed25519.PublicKeySize {
		t.Fatalf("raw = %d bytes", len(raw))
	}

	pemOut := ok(t, s, nil, "pubkey", "p/ed").stdout // pem is the default
	block, rest := pem.Decode(pemOut)
	if block == nil || block.Type != "PUBLIC KEY" || len(rest) != 0 {
		t.Fatalf("pem output %q", pemOut)
	}
	pk, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil || !bytes.Equal(pk.(ed25519.PublicKey), raw) {
		t.Fatalf("ParsePKIXPublicKey = %v, %v", pk, err)
	}

	line := ok(t, s, nil, "pubkey", "p/ed@1", "--format", "ssh").stdout
	sk, comment, _, rest, err := ssh.ParseAuthorizedKey(line)
	if err != nil || len(rest) != 0 || comment != "app/p/ed@1" || sk.Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("ssh line %q: %v, comment %q", line, err, comment)
	}
	if !bytes.Equal(sk.(ssh.CryptoPublicKey).CryptoPublicKey().(ed25519.PublicKey), raw) {
		t.Error("ssh key differs from the raw key")
	}

	j := ok(t, s, nil, "pubkey", "p/ed", "--format", "jwk").stdout
	var k map[string]string
	if err := json.Unmarshal(j, &k); err != nil {
		t.Fatal(err)
	}
	x, err := base64.RawURLEncoding.DecodeString(k["x"])
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["kid"] != "app/p/ed@1" || err != nil || !bytes.Equal(x, raw) || len(k) != 4 {
		t.Errorf("jwk = %s", j)
	}

	for _, f := range pubkeyFormats {
		m := decode(t, ok(t, s, nil, "--json", "pubkey", "p/ed", "--format", f))
		if m["key"] != "app/p/ed" || m["version"] != 1.0 || m["algorithm"] != "ed25519" || m["format"] != f || m["public_key"] != base64.StdEncoding.EncodeToString(raw) {
			t.Errorf("--json --format %s = %v", f, m)
		}
		if f != "raw" && m[f] == nil {
			t.Errorf("--json --format %s lacks %q", f, f)
		}
	}

	fails(t, s, nil, exitUsage, "pubkey", "p/ed", "--format", "der")
	fails(t, s, nil, 22, "pubkey", "p/ed@x")
	fails(t, s, nil, 2, "pubkey", "p/ed@7") // ENOENT
	ok(t, s, nil, "create", "p/box")
	r := fails(t, s, nil, 1, "pubkey", "p/box")
	if !strings.Contains(r.stderr, "hint: only signing keys have a public key") {
		t.Errorf("pubkey of a decrypt key: %q", r.stderr)
	}

	// Ed448: pem and jwk, not ssh.
	ok(t, s, nil, "create", "p/ed448", "--alg", "ed448")
	raw448 := ok(t, s, nil, "pubkey", "p/ed448", "--format", "raw").stdout
	j = ok(t, s, nil, "pubkey", "p/ed448", "--format", "jwk").stdout
	if err := json.Unmarshal(j, &k); err != nil || k["crv"] != "Ed448" {
		t.Errorf("ed448 jwk = %s, %v", j, err)
	}
	checkSPKI(t, ok(t, s, nil, "pubkey", "p/ed448").stdout, asn1.ObjectIdentifier{1, 3, 101, 113}, raw448)
	fails(t, s, nil, 95, "pubkey", "p/ed448", "--format", "ssh")
}

// checkSPKI parses a PEM SubjectPublicKeyInfo and compares OID and key.
func checkSPKI(t *testing.T, pemOut []byte, oid asn1.ObjectIdentifier, raw []byte) {
	t.Helper()
	block, _ := pem.Decode(pemOut)
	if block == nil {
		t.Fatalf("no PEM in %q", pemOut)
	}
	var info spki
	rest, err := asn1.Unmarshal(block.Bytes, &info)
	if err != nil || len(rest) != 0 {
		t.Fatalf("SPKI: %v", err)
	}
	if !info.Algorithm.Algorithm.Equal(oid) || len(info.Algorithm.Parameters.FullBytes) != 0 {
		t.Errorf("SPKI algorithm %v (params %x), want %v without parameters", info.Algorithm.Algorithm, info.Algorithm.Parameters.FullBytes, oid)
	}
	if !bytes.Equal(info.PublicKey.RightAlign(), raw) || info.PublicKey.BitLength != 8*len(raw) {
		t.Errorf("SPKI key differs from the raw key")
	}
}

func TestSPKIEveryAlgorithm(t *testing.T) {
	for alg, info := range spkiOIDs {
		raw := make([]byte, info.size)
		if _, err := rand.Read(raw); err != nil {
			t.Fatal(err)
		}
		pub := client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: alg, Raw: raw}
		out, err := publicKeyPEM(pub)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		checkSPKI(t, out, info.oid, raw)
		pub.Raw = raw[1:]
		if _, err := publicKeyPEM(pub); !errors.Is(err, client.ErrIO) {
			t.Errorf("%s with a short key: %v, want ErrIO", alg, err)
		}
	}
	if _, err := publicKeyPEM(client.PublicKey{Algorithm: client.XChaCha20Poly1305, Raw: []byte{1}}); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("pem of an AEAD algorithm: %v, want ErrNotSupported", err)
	}
	if _, err := publicKeyJWK(client.PublicKey{Algorithm: client.MLDSA44, Raw: make([]byte, 1312)}); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("jwk of ML-DSA: %v, want ErrNotSupported", err)
	}
}

// OpenSSL 3.0 (Debian 12) reads the Ed25519 and Ed448 PEM; ML-DSA needs
// OpenSSL 3.5.
func TestPEMReadByOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: apt-get install openssl")
	}
	edPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[client.Algorithm][]byte{client.Ed25519: edPub, client.Ed448: ed448Public(t)}
	for alg, raw := range keys {
		out, err := publicKeyPEM(client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: alg, Raw: raw})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "pub.pem")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(openssl, "pkey", "-pubin", "-in", path, "-noout", "-text")
		text, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: openssl pkey -pubin: %v\n%s", alg, err, text)
			continue
		}
		want := map[client.Algorithm]string{client.Ed25519: "ED25519 Public-Key", client.Ed448: "ED448 Public-Key"}[alg]
		if !strings.Contains(string(text), want) {
			t.Errorf("%s: openssl says %q, want %q", alg, text, want)
		}
	}
}

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/client/keyfmt"
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
	kid, err := keyfmt.Thumbprint(client.PublicKey{Key: "app/p/ed", Version: 1, Algorithm: client.Ed25519, Raw: raw})
	if err != nil {
		t.Fatal(err)
	}
	x, err := base64.RawURLEncoding.DecodeString(k["x"])
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || k["kid"] != kid || err != nil || !bytes.Equal(x, raw) || len(k) != 6 {
		t.Errorf("jwk = %s, want kid %s", j, kid)
	}

	for _, f := range pubkeyFormats {
		if f == "jwks" || f == "hpke" {
			continue
		}
		m := decode(t, ok(t, s, nil, "--json", "pubkey", "p/ed", "--format", f))
		if m["key"] != "app/p/ed" || m["version"] != 1.0 || m["algorithm"] != "ed25519" || m["format"] != f || m["public_key"] != base64.StdEncoding.EncodeToString(raw) {
			t.Errorf("--json --format %s = %v", f, m)
		}
		if f != "raw" && m[f] == nil {
			t.Errorf("--json --format %s lacks %q", f, f)
		}
	}

	if r := fails(t, s, nil, 95, "pubkey", "p/ed", "--format", "hpke"); !strings.Contains(r.stderr, "not an HPKE") {
		t.Errorf("pubkey --format hpke of an ed25519 key: %q", r.stderr)
	}
	fails(t, s, nil, exitUsage, "pubkey", "p/ed", "--format", "der")
	fails(t, s, nil, exitUsage, "pubkey", "p/ed@1", "--format", "jwks")
	fails(t, s, nil, 22, "pubkey", "p/ed@x")
	fails(t, s, nil, 2, "pubkey", "p/ed@7") // ENOENT
	ok(t, s, nil, "create", "p/box")
	for _, f := range []string{"pem", "jwks"} {
		r := fails(t, s, nil, 1, "pubkey", "p/box", "--format", f)
		if !strings.Contains(r.stderr, "hint: only signing and asymmetric-decrypt keys have a public key") {
			t.Errorf("pubkey --format %s of a decrypt key: %q", f, r.stderr)
		}
	}

	// Ed448: pem and jwk, not ssh.
	ok(t, s, nil, "create", "p/ed448", "--alg", "ed448")
	j = ok(t, s, nil, "pubkey", "p/ed448", "--format", "jwk").stdout
	if err := json.Unmarshal(j, &k); err != nil || k["crv"] != "Ed448" {
		t.Errorf("ed448 jwk = %s, %v", j, err)
	}
	ok(t, s, nil, "pubkey", "p/ed448")
	fails(t, s, nil, 95, "pubkey", "p/ed448", "--format", "ssh")
	// ed25519ph: pem only.
	ok(t, s, nil, "create", "p/ph", "--alg", "ed25519ph")
	ok(t, s, nil, "pubkey", "p/ph")
	fails(t, s, nil, 95, "pubkey", "p/ph", "--format", "ssh")
	fails(t, s, nil, 95, "pubkey", "p/ph", "--format", "jwk")
}

// ECDSA and RSA keys in every format; jwks follows rotations.
func TestPubkeyECDSAAndRSA(t *testing.T) {
	s := startDaemon(t, clienttest.Options{}).Socket
	ok(t, s, nil, "create", "p/ec", "--alg", "ecdsa-p384-sha384")
	ok(t, s, nil, "create", "p/rsa", "--alg", "rsa-2048-pkcs1-sha256")
	ok(t, s, nil, "create", "p/pss", "--alg", "rsa-2048-pss-sha256")

	block, _ := pem.Decode(ok(t, s, nil, "pubkey", "p/ec").stdout)
	if block == nil {
		t.Fatal("no PEM")
	}
	pk, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil || pk.(*ecdsa.PublicKey).Curve.Params().Name != "P-384" {
		t.Fatalf("ecdsa PEM: %T, %v", pk, err)
	}
	for key, typ := range map[string]string{"p/ec": ssh.KeyAlgoECDSA384, "p/rsa": ssh.KeyAlgoRSA} {
		sk, comment, _, _, err := ssh.ParseAuthorizedKey(ok(t, s, nil, "pubkey", key, "--format", "ssh").stdout)
		if err != nil || sk.Type() != typ || comment != "app/"+key+"@1" {
			t.Errorf("%s ssh: %v, %v, %q", key, err, sk, comment)
		}
	}
	r := fails(t, s, nil, 95, "pubkey", "p/pss", "--format", "ssh")
	if !strings.Contains(r.stderr, "pkcs1") {
		t.Errorf("ssh of a PSS key: %q, want the hint to use a pkcs1 key", r.stderr)
	}
	for key, alg := range map[string]string{"p/ec": "ES384", "p/rsa": "RS256", "p/pss": "PS256"} {
		var k map[string]string
		if err := json.Unmarshal(ok(t, s, nil, "pubkey", key, "--format", "jwk").stdout, &k); err != nil || k["alg"] != alg || k["use"] != "sig" || k["kid"] == "" {
			t.Errorf("%s jwk = %v, %v; want alg %s", key, k, err, alg)
		}
	}

	ok(t, s, nil, "rotate", "p/ec")
	ok(t, s, nil, "rotate", "p/ec")
	var set keyfmt.JWKS
	if err := json.Unmarshal(ok(t, s, nil, "pubkey", "p/ec", "--format", "jwks").stdout, &set); err != nil || len(set.Keys) != 3 {
		t.Fatalf("jwks after two rotations: %d keys, %v; want 3", len(set.Keys), err)
	}
	for i, v := range []string{"p/ec@3", "p/ec@2", "p/ec@1"} {
		var k keyfmt.JWK
		if err := json.Unmarshal(ok(t, s, nil, "pubkey", v, "--format", "jwk").stdout, &k); err != nil || k != set.Keys[i] {
			t.Errorf("jwks key %d = %+v, want the jwk of %s %+v (%v)", i, set.Keys[i], v, k, err)
		}
	}
	ok(t, s, nil, "revoke", "p/ec@1")
	ok(t, s, nil, "set-policy", "p/ec", "--min-decryption-version", "3")
	if err := json.Unmarshal(ok(t, s, nil, "pubkey", "p/ec", "--format", "jwks").stdout, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks with version 1 revoked and min version 3: %d keys, %v; want 1", len(set.Keys), err)
	}
	m := decode(t, ok(t, s, nil, "--json", "pubkey", "p/ec", "--format", "jwks"))
	if m["key"] != "app/p/ec" || m["format"] != "jwks" || m["jwks"] == nil {
		t.Errorf("--json jwks = %v", m)
	}
	ok(t, s, nil, "revoke", "p/ec")
	fails(t, s, nil, 128, "pubkey", "p/ec", "--format", "jwks")
}

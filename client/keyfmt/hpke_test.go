package keyfmt_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
)

// hpkeKeys returns a fixed public key of every HPKE algorithm (derived
// from the fixed seed with the KEM's DeriveKeyPair).
func hpkeKeys(t testing.TB) map[client.Algorithm]client.PublicKey {
	t.Helper()
	keys := map[client.Algorithm]client.PublicKey{}
	for _, a := range []client.Algorithm{client.HPKEX25519, client.HPKEP256, client.HPKEMLKEM768X25519} {
		suite, _ := client.HPKESuiteOf(a)
		kem, err := hpke.NewKEM(suite.KEM)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := kem.DeriveKeyPair(seed)
		if err != nil {
			t.Fatal(err)
		}
		keys[a] = client.PublicKey{Key: "app/inbox/" + string(a)[:9], Version: 2, Algorithm: a, Raw: priv.PublicKey().Bytes(), Suite: suite}
	}
	return keys
}

// The DHKEM keys' PEM is the SubjectPublicKeyInfo crypto/x509 reads back
// as the same *ecdh.PublicKey (OpenSSL reads it too, when installed); the
// hybrid has none, and says to export it raw.
func TestHPKEPEM(t *testing.T) {
	openssl, _ := exec.LookPath("openssl")
	texts := map[client.Algorithm]string{client.HPKEX25519: "X25519 Public-Key", client.HPKEP256: "NIST CURVE: P-256"}
	for a, pub := range hpkeKeys(t) {
		out, err := keyfmt.PEM(pub)
		if a == client.HPKEMLKEM768X25519 {
			if !errors.Is(err, client.ErrNotSupported) || !strings.Contains(err.Error(), "raw") {
				t.Errorf("%s: PEM = %v, want ErrNotSupported saying to export it raw", a, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		block, rest := pem.Decode(out)
		if block == nil || block.Type != "PUBLIC KEY" || len(rest) != 0 {
			t.Fatalf("%s: PEM %q", a, out)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if ec, isEC := k.(*ecdsa.PublicKey); isEC { // crypto/x509 reads id-ecPublicKey as ECDSA
			k, err = ec.ECDH()
		}
		ek, ok := k.(*ecdh.PublicKey)
		if err != nil || !ok || !bytes.Equal(ek.Bytes(), pub.Raw) {
			t.Errorf("%s: ParsePKIXPublicKey = %T, %v; want the key", a, k, err)
		}
		if openssl == "" {
			t.Logf("%s: openssl not installed (apt-get install openssl): not checked by it", a)
			continue
		}
		path := filepath.Join(t.TempDir(), "k.pem")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		text, err := exec.Command(openssl, "pkey", "-pubin", "-in", path, "-noout", "-text").CombinedOutput()
		if err != nil || !strings.Contains(string(text), texts[a]) {
			t.Errorf("%s: openssl pkey -pubin: %v, %q; want %q", a, err, text, texts[a])
		}
	}
}

// The DHKEM keys' JWK is OKP X25519 (RFC 8037) or EC P-256 with use
// "enc" and no alg, its members decode to the key, its kid is the RFC
// 7638 thumbprint; the key set of an HPKE key holds it.
func TestHPKEJWK(t *testing.T) {
	for a, pub := range hpkeKeys(t) {
		j, err := keyfmt.NewJWK(pub)
		if a == client.HPKEMLKEM768X25519 {
			if !errors.Is(err, client.ErrNotSupported) {
				t.Errorf("%s: NewJWK = %v, want ErrNotSupported", a, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		m := jwkMembers(t, j)
		dec := func(s string) []byte {
			b, err := base64.RawURLEncoding.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		required := map[string]string{"kty": m["kty"], "crv": m["crv"], "x": m["x"]}
		if _, has := m["alg"]; has || m["use"] != "enc" {
			t.Errorf("%s: JWK %v: want use enc and no alg", a, m)
		}
		switch a {
		case client.HPKEX25519:
			if m["kty"] != "OKP" || m["crv"] != "X25519" || !bytes.Equal(dec(m["x"]), pub.Raw) {
				t.Errorf("%s: JWK %v", a, m)
			}
		case client.HPKEP256:
			required["y"] = m["y"]
			point := append(append([]byte{4}, dec(m["x"])...), dec(m["y"])...)
			if m["kty"] != "EC" || m["crv"] != "P-256" || !bytes.Equal(point, pub.Raw) {
				t.Errorf("%s: JWK %v", a, m)
			}
		}
		b, err := json.Marshal(required)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if kid := base64.RawURLEncoding.EncodeToString(sum[:]); m["kid"] != kid {
			t.Errorf("%s: kid %q, want the thumbprint %q of %s", a, m["kid"], kid, b)
		}
		info := client.KeyInfo{ID: pub.Key, Algorithm: a, Uses: []string{"asymmetric-decrypt"}, State: client.KeyActive, CurrentVersion: 2,
			Versions: []client.KeyVersion{{Version: 1, State: client.VersionRetired, PublicKey: pub.Raw}, {Version: 2, State: client.VersionPrimary, PublicKey: pub.Raw}}}
		set, err := keyfmt.NewJWKS(info)
		if err != nil || len(set.Keys) != 2 || set.Keys[0] != j {
			t.Errorf("%s: NewJWKS = %+v, %v", a, set, err)
		}
	}
}

// The hpke JSON form carries every HPKE key with its suite, as documented;
// other keys have none.
func TestHPKEKeyJSON(t *testing.T) {
	for a, pub := range hpkeKeys(t) {
		k, err := keyfmt.NewHPKEKey(pub)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(m["public_key"].(string))
		if err != nil || !bytes.Equal(raw, pub.Raw) || m["key"] != pub.Key || m["version"] != 2.0 || m["algorithm"] != string(a) ||
			m["kem_id"] != float64(pub.Suite.KEM) || m["kdf_id"] != float64(pub.Suite.KDF) || m["aead_id"] != float64(pub.Suite.AEAD) || len(m) != 7 {
			t.Errorf("%s: %s", a, b)
		}
	}
	if _, err := keyfmt.NewHPKEKey(testKeys(t)[client.Ed25519]); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("NewHPKEKey of an ed25519 key: %v, want ErrNotSupported", err)
	}
	bad := hpkeKeys(t)[client.HPKEP256]
	bad.Raw = bad.Raw[:64]
	if _, err := keyfmt.NewHPKEKey(bad); !errors.Is(err, client.ErrIO) {
		t.Errorf("NewHPKEKey of a short point: %v, want ErrIO", err)
	}
}

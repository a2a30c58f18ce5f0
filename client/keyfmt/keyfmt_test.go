package keyfmt_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"golang.org/x/crypto/ssh"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
)

// seed is the fixed seed of the test keys: deterministic, never secret.
var seed = bytes.Repeat([]byte{0x5a}, 32)

// rfc7638N is the RSA modulus of RFC 7638 section 3.1's example key.
const rfc7638N = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"

func rsaRaw(t testing.TB, n string) []byte {
	t.Helper()
	nb, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	return x509.MarshalPKCS1PublicKey(&rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537})
}

func ecRaw(t testing.TB, curve ecdh.Curve, size int) []byte {
	t.Helper()
	k, err := curve.NewPrivateKey(bytes.Repeat([]byte{0x5a}, size))
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

// testKeys returns a fixed public key of every signing algorithm.
func testKeys(t testing.TB) map[client.Algorithm]client.PublicKey {
	t.Helper()
	ed448pub := ed448.NewKeyFromSeed(bytes.Repeat([]byte{0x5a}, ed448.SeedSize)).Public().(ed448.PublicKey)
	mlpub, _ := mldsa44.NewKeyFromSeed((*[32]byte)(seed))
	n := rsaRaw(t, rfc7638N)
	raws := map[client.Algorithm][]byte{
		client.Ed25519:      ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey),
		client.Ed25519ph:    ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey),
		client.Ed448:        ed448pub,
		client.MLDSA44:      mlpub.Bytes(),
		client.ECDSAP256:    ecRaw(t, ecdh.P256(), 32),
		client.ECDSAP384:    ecRaw(t, ecdh.P384(), 48),
		client.RSA2048PSS:   n,
		client.RSA2048PKCS1: n,
	}
	keys := map[client.Algorithm]client.PublicKey{}
	for alg, raw := range raws {
		keys[alg] = client.PublicKey{Key: "app/p/" + string(alg), Version: 3, Algorithm: alg, Raw: raw}
	}
	return keys
}

// SPKI: crypto/x509 reads back the key it knows; Ed448 and ML-DSA carry
// their OIDs without parameters.
func TestPEM(t *testing.T) {
	oids := map[client.Algorithm]asn1.ObjectIdentifier{
		client.Ed448:   {1, 3, 101, 113},
		client.MLDSA44: {2, 16, 840, 1, 101, 3, 4, 3, 17},
	}
	for alg, pub := range testKeys(t) {
		out, err := keyfmt.PEM(pub)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		block, rest := pem.Decode(out)
		if block == nil || block.Type != "PUBLIC KEY" || len(rest) != 0 {
			t.Fatalf("%s: PEM %q", alg, out)
		}
		if oid, ok := oids[alg]; ok {
			var info struct {
				Algorithm struct {
					Algorithm  asn1.ObjectIdentifier
					Parameters asn1.RawValue `asn1:"optional"`
				}
				PublicKey asn1.BitString
			}
			if rest, err := asn1.Unmarshal(block.Bytes, &info); err != nil || len(rest) != 0 {
				t.Fatalf("%s: SPKI: %v", alg, err)
			}
			if !info.Algorithm.Algorithm.Equal(oid) || len(info.Algorithm.Parameters.FullBytes) != 0 || !bytes.Equal(info.PublicKey.RightAlign(), pub.Raw) {
				t.Errorf("%s: SPKI %v, want OID %v without parameters and the raw key", alg, info.Algorithm.Algorithm, oid)
			}
			continue
		}
		got, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatalf("%s: ParsePKIXPublicKey: %v", alg, err)
		}
		want, err := pub.CryptoPublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if !equal(want, got) {
			t.Errorf("%s: the PEM holds another key", alg)
		}
	}
	for _, bad := range []client.PublicKey{
		{Algorithm: client.ECDSAP256, Raw: make([]byte, 65)},    // not on the curve
		{Algorithm: client.Ed25519, Raw: make([]byte, 31)},      // short
		{Algorithm: client.RSA2048PSS, Raw: []byte{0x30, 0x00}}, // not an RSAPublicKey
	} {
		if _, err := keyfmt.PEM(bad); !errors.Is(err, client.ErrIO) {
			t.Errorf("PEM(bad %s key) = %v, want ErrIO", bad.Algorithm, err)
		}
	}
	if _, err := keyfmt.PEM(client.PublicKey{Algorithm: client.XChaCha20Poly1305, Raw: []byte{1}}); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("PEM of an AEAD algorithm = %v, want ErrNotSupported", err)
	}
}

// equal reports whether two public keys are the same, with the Equal
// method every standard and circl key type has.
func equal(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func TestAuthorizedKey(t *testing.T) {
	keys := testKeys(t)
	types := map[client.Algorithm]string{
		client.Ed25519:      ssh.KeyAlgoED25519,
		client.ECDSAP256:    ssh.KeyAlgoECDSA256,
		client.ECDSAP384:    ssh.KeyAlgoECDSA384,
		client.RSA2048PKCS1: ssh.KeyAlgoRSA,
	}
	for alg, pub := range keys {
		line, err := keyfmt.AuthorizedKey(pub)
		typ, ok := types[alg]
		if !ok {
			if !errors.Is(err, client.ErrNotSupported) {
				t.Errorf("%s: AuthorizedKey = %q, %v; want ErrNotSupported", alg, line, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		sk, comment, _, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil || len(rest) != 0 || comment != pub.Ref() || sk.Type() != typ || !bytes.HasSuffix(line, []byte("\n")) {
			t.Fatalf("%s: line %q: %v, type %s comment %q", alg, line, err, sk.Type(), comment)
		}
		want, err := pub.CryptoPublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if !equal(want, sk.(ssh.CryptoPublicKey).CryptoPublicKey()) {
			t.Errorf("%s: the ssh key differs", alg)
		}
	}
	_, err := keyfmt.AuthorizedKey(keys[client.RSA2048PSS])
	if err == nil || !strings.Contains(err.Error(), "pkcs1") {
		t.Errorf("AuthorizedKey(PSS) = %v, want a hint to use a pkcs1 key", err)
	}
}

// thumbprintVector is one entry of testdata/thumbprints.json.
type thumbprintVector struct {
	Source     string            `json:"source"`
	Algorithm  client.Algorithm  `json:"algorithm"`
	JWK        map[string]string `json:"jwk"`
	Thumbprint string            `json:"thumbprint"`
}

// The RFC 7638 and RFC 8037 thumbprint examples.
func TestThumbprintVectors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "thumbprints.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vectors []thumbprintVector
	if err := json.Unmarshal(b, &vectors); err != nil || len(vectors) == 0 {
		t.Fatalf("testdata/thumbprints.json: %d vectors, %v", len(vectors), err)
	}
	for _, v := range vectors {
		var raw []byte
		switch v.JWK["kty"] {
		case "RSA":
			raw = rsaRaw(t, v.JWK["n"])
		case "OKP":
			if raw, err = base64.RawURLEncoding.DecodeString(v.JWK["x"]); err != nil {
				t.Fatal(err)
			}
		}
		pub := client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: v.Algorithm, Raw: raw}
		got, err := keyfmt.Thumbprint(pub)
		if err != nil || got != v.Thumbprint {
			t.Errorf("%s: Thumbprint = %q, %v; want %q", v.Source, got, err, v.Thumbprint)
		}
		j, err := keyfmt.NewJWK(pub)
		if err != nil {
			t.Fatal(err)
		}
		m := jwkMembers(t, j)
		for name, want := range v.JWK {
			if m[name] != want {
				t.Errorf("%s: JWK %s = %q, want %q", v.Source, name, m[name], want)
			}
		}
	}
}

func jwkMembers(t *testing.T, j keyfmt.JWK) map[string]string {
	t.Helper()
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Every JWK decodes back to the key; its kid is the thumbprint computed
// independently (encoding/json sorts a map's keys, as RFC 7638 asks).
func TestJWK(t *testing.T) {
	want := map[client.Algorithm][3]string{ // kty, crv, alg
		client.Ed25519:      {"OKP", "Ed25519", "EdDSA"},
		client.Ed448:        {"OKP", "Ed448", "EdDSA"},
		client.ECDSAP256:    {"EC", "P-256", "ES256"},
		client.ECDSAP384:    {"EC", "P-384", "ES384"},
		client.RSA2048PSS:   {"RSA", "", "PS256"},
		client.RSA2048PKCS1: {"RSA", "", "RS256"},
	}
	for alg, pub := range testKeys(t) {
		j, err := keyfmt.NewJWK(pub)
		w, ok := want[alg]
		if !ok {
			if !errors.Is(err, client.ErrNotSupported) {
				t.Errorf("%s: NewJWK = %+v, %v; want ErrNotSupported", alg, j, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		m := jwkMembers(t, j)
		if m["kty"] != w[0] || m["crv"] != w[1] || m["alg"] != w[2] || m["use"] != "sig" {
			t.Errorf("%s: JWK %v, want kty %s crv %q alg %s use sig", alg, m, w[0], w[1], w[2])
		}
		required := map[string]string{"kty": m["kty"]}
		dec := func(name string) []byte {
			b, err := base64.RawURLEncoding.DecodeString(m[name])
			if err != nil || m[name] == "" {
				t.Fatalf("%s: member %s %q: %v", alg, name, m[name], err)
			}
			required[name] = m[name]
			return b
		}
		k, err := pub.CryptoPublicKey()
		if err != nil {
			t.Fatal(err)
		}
		switch k := k.(type) {
		case *ecdsa.PublicKey:
			required["crv"] = m["crv"]
			x, y := dec("x"), dec("y")
			size := (k.Curve.Params().BitSize + 7) / 8
			if len(x) != size || len(y) != size || !bytes.Equal(append(append([]byte{4}, x...), y...), pub.Raw) {
				t.Errorf("%s: x, y do not make the point", alg)
			}
		case *rsa.PublicKey:
			n, e := dec("n"), dec("e")
			if new(big.Int).SetBytes(n).Cmp(k.N) != 0 || new(big.Int).SetBytes(e).Int64() != int64(k.E) || n[0] == 0 || m["e"] != "AQAB" {
				t.Errorf("%s: n, e do not make the key", alg)
			}
		default:
			required["crv"] = m["crv"]
			if !bytes.Equal(dec("x"), pub.Raw) {
				t.Errorf("%s: x is not the raw key", alg)
			}
		}
		b, err := json.Marshal(required)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if kid := base64.RawURLEncoding.EncodeToString(sum[:]); m["kid"] != kid {
			t.Errorf("%s: kid %q, want the RFC 7638 thumbprint %q of %s", alg, m["kid"], kid, b)
		}
	}
}

func TestJWKS(t *testing.T) {
	keys := testKeys(t)
	// Three versions of one P-256 key: the raw keys differ per version.
	raw := func(i byte) []byte {
		k, err := ecdh.P256().NewPrivateKey(bytes.Repeat([]byte{i}, 32))
		if err != nil {
			t.Fatal(err)
		}
		return k.PublicKey().Bytes()
	}
	info := client.KeyInfo{
		ID: "app/jwt/issuer", Algorithm: client.ECDSAP256, Uses: []string{"sign"}, State: client.KeyActive, CurrentVersion: 4,
		Versions: []client.KeyVersion{
			{Version: 1, State: client.VersionRetired, PublicKey: raw(1)},
			{Version: 2, State: client.VersionRevoked, PublicKey: raw(2)},
			{Version: 3, State: client.VersionRetired, PublicKey: raw(3)},
			{Version: 4, State: client.VersionPrimary, PublicKey: raw(4)},
		},
	}
	kid := func(v uint32, r []byte) string {
		k, err := keyfmt.Thumbprint(client.PublicKey{Key: info.ID, Version: v, Algorithm: client.ECDSAP256, Raw: r})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	set, err := keyfmt.NewJWKS(info)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{kid(4, raw(4)), kid(3, raw(3)), kid(1, raw(1))}
	if len(set.Keys) != 3 || set.Keys[0].Kid != want[0] || set.Keys[1].Kid != want[1] || set.Keys[2].Kid != want[2] {
		t.Fatalf("JWKS kids %v, want versions 4, 3, 1: %v", set.Keys, want)
	}
	b, err := json.Marshal(set)
	if err != nil || !bytes.HasPrefix(b, []byte(`{"keys":[{"kty":"EC"`)) {
		t.Errorf("JWKS JSON %s, %v", b, err)
	}
	info.Policy.MinDecryptionVersion = 3
	if set, err = keyfmt.NewJWKS(info); err != nil || len(set.Keys) != 2 {
		t.Errorf("JWKS with min decryption version 3: %d keys, %v; want 2", len(set.Keys), err)
	}

	revoked := info
	revoked.State = client.KeyRevoked
	if _, err := keyfmt.NewJWKS(revoked); !errors.Is(err, client.ErrKeyRevoked) {
		t.Errorf("JWKS of a revoked key = %v, want ErrKeyRevoked", err)
	}
	box := client.KeyInfo{ID: "app/db/k", Algorithm: client.AES256GCM, Uses: []string{"decrypt"}, State: client.KeyActive}
	if _, err := keyfmt.NewJWKS(box); !errors.Is(err, client.ErrPermission) {
		t.Errorf("JWKS of a decrypt key = %v, want ErrPermission", err)
	}
	ml := client.KeyInfo{ID: "app/p/ml", Algorithm: client.MLDSA44, Uses: []string{"sign"}, State: client.KeyActive,
		Versions: []client.KeyVersion{{Version: 1, State: client.VersionPrimary, PublicKey: keys[client.MLDSA44].Raw}}}
	if _, err := keyfmt.NewJWKS(ml); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("JWKS of an ML-DSA key = %v, want ErrNotSupported", err)
	}
}

// OpenSSL 3.0 reads every PEM but ML-DSA's (OpenSSL 3.5); ssh-keygen reads
// every authorized_keys line.
func TestReadByOpenSSLAndSSHKeygen(t *testing.T) {
	openssl, errOpenSSL := exec.LookPath("openssl")
	sshKeygen, errKeygen := exec.LookPath("ssh-keygen")
	if errOpenSSL != nil && errKeygen != nil {
		t.Skip("neither openssl nor ssh-keygen is installed: apt-get install openssl openssh-client")
	}
	texts := map[client.Algorithm]string{
		client.Ed25519: "ED25519 Public-Key", client.Ed25519ph: "ED25519 Public-Key", client.Ed448: "ED448 Public-Key",
		client.ECDSAP256: "NIST CURVE: P-256", client.ECDSAP384: "NIST CURVE: P-384",
		client.RSA2048PSS: "Public-Key: (2048 bit)", client.RSA2048PKCS1: "Public-Key: (2048 bit)",
	}
	dir := t.TempDir()
	for alg, pub := range testKeys(t) {
		if want, ok := texts[alg]; ok && errOpenSSL == nil {
			out, err := keyfmt.PEM(pub)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, string(alg)+".pem")
			if err := os.WriteFile(path, out, 0o600); err != nil {
				t.Fatal(err)
			}
			text, err := exec.Command(openssl, "pkey", "-pubin", "-in", path, "-noout", "-text").CombinedOutput()
			if err != nil || !strings.Contains(string(text), want) {
				t.Errorf("%s: openssl pkey -pubin: %v, %q; want %q", alg, err, text, want)
			}
		}
		if line, err := keyfmt.AuthorizedKey(pub); err == nil && errKeygen == nil {
			path := filepath.Join(dir, string(alg)+".pub")
			if err := os.WriteFile(path, line, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(sshKeygen, "-l", "-f", path).CombinedOutput()
			if err != nil || !strings.Contains(string(out), pub.Ref()) {
				t.Errorf("%s: ssh-keygen -l: %v, %q", alg, err, out)
			}
		}
	}
}

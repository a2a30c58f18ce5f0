package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

// leaks reports whether out shows material in hex or base64.
func leaks(out string, material []byte) bool {
	return strings.Contains(strings.ToLower(out), hex.EncodeToString(material)) ||
		strings.Contains(out, base64.StdEncoding.EncodeToString(material)) || bytes.Contains([]byte(out), material)
}

// import of Go-made material in every PEM form and the raw forms: the
// keys are the material's (signatures verify against its public key, tags
// are crypto/hmac's), show says imported, the material is in no output
// and no file, and rotate needs --generate.
func TestImportCommand(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "web"})
	s := srv.Socket
	t.Chdir(t.TempDir())

	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	r := ctl(t, s, edPEM, "import", "sig/ed", "--alg", "ed25519", "--in", "-")
	if r.code != 0 {
		t.Fatalf("import ed25519: exit %d: %s", r.code, r.stderr)
	}
	if got := string(r.stdout); got != "imported web/sig/ed (ed25519, version 1, origin imported)\n" {
		t.Errorf("import output %q", got)
	}
	if leaks(string(r.stdout)+r.stderr, edPriv.Seed()) || leaks(string(r.stdout)+r.stderr, der) {
		t.Error("import printed the material")
	}
	sig := ok(t, s, []byte("msg"), "sign", "sig/ed").stdout
	if !ed25519.Verify(edPriv.Public().(ed25519.PublicKey), []byte("msg"), sig) {
		t.Error("the imported Ed25519 key's signature does not verify against the material's public key")
	}

	// A traditional EC PRIVATE KEY (after an EC PARAMETERS block, as
	// openssl ecparam -genkey writes) is converted to PKCS #8 here.
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecPriv)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	ok(t, s, nil, "import", "sig/ec", "--alg", "ecdsa-p256-sha256", "--in", writeTemp(t, ecPEM))
	sig = ok(t, s, []byte("msg"), "sign", "sig/ec").stdout
	digest := sha256.Sum256([]byte("msg"))
	if !ecdsa.VerifyASN1(&ecPriv.PublicKey, digest[:], sig) {
		t.Error("the imported ECDSA key's signature does not verify")
	}
	// An RSA PRIVATE KEY (PKCS #1), converted too.
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaPriv)})
	ok(t, s, rsaPEM, "import", "sig/rsa", "--alg", "rsa-2048-pkcs1-sha256")
	sig = ok(t, s, []byte("msg"), "sign", "sig/rsa").stdout
	if err := rsa.VerifyPKCS1v15(&rsaPriv.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("the imported RSA key's signature: %v", err)
	}
	// DER, raw and hex.
	ok(t, s, der, "import", "sig/ed-der", "--alg", "ed25519", "--format", "der")
	macKey := bytes.Repeat([]byte{0x42}, 32)
	ok(t, s, macKey, "import", "tokens/raw", "--alg", "hmac-sha256")
	ok(t, s, []byte(hex.EncodeToString(macKey[:16])+"\n  "+hex.EncodeToString(macKey[16:])+"\n"), "import", "tokens/hex", "--alg", "hmac-sha256", "--format", "hex")
	h := hmac.New(sha256.New, macKey)
	h.Write([]byte("msg")) // a hash's Write never fails
	for _, k := range []string{"tokens/raw", "tokens/hex"} {
		if tag := ok(t, s, []byte("msg"), "mac", k).stdout; !bytes.Equal(tag, h.Sum(nil)) {
			t.Errorf("%s: the imported HMAC key's tag is not crypto/hmac's", k)
		}
	}
	ok(t, s, bytes.Repeat([]byte{9}, 32), "import", "box/aes", "--alg", "aes-256-gcm")
	sealed := ok(t, s, []byte("data"), "seal", "box/aes").stdout
	if got := ok(t, s, sealed, "unseal", "box/aes").stdout; string(got) != "data" {
		t.Errorf("unseal with the imported AES key: %q", got)
	}
	if names := dirNames(t, "."); len(names) != 0 {
		t.Errorf("import wrote files: %v", names)
	}

	// show says so; rotate needs --generate, then the key is generated.
	if out := string(ok(t, s, nil, "show", "box/aes").stdout); !strings.Contains(out, "imported (new versions come from import") {
		t.Errorf("show of an imported key:\n%s", out)
	}
	ok(t, s, bytes.Repeat([]byte{10}, 32), "import", "box/aes", "--alg", "aes-256-gcm")
	r = fails(t, s, nil, 1, "rotate", "box/aes")
	if !strings.Contains(r.stderr, "rotate box/aes --generate") {
		t.Errorf("rotate of an imported key: %q, want the --generate hint", r.stderr)
	}
	if got := string(ok(t, s, nil, "rotate", "box/aes", "--generate").stdout); got != "rotated web/box/aes: version 3 is primary (generated; the key is a generated one from now on)\n" {
		t.Errorf("rotate --generate: %q", got)
	}
	m := decode(t, ok(t, s, nil, "--json", "show", "box/aes"))
	vs := m["versions"].([]any)
	if m["origin"] != "generated" || vs[0].(map[string]any)["origin"] != "imported" || vs[2].(map[string]any)["origin"] != "generated" {
		t.Errorf("show --json after rotate --generate: %v", m)
	}
	if out := string(ok(t, s, nil, "show", "box/aes").stdout); !strings.Contains(out, "imported") || !strings.Contains(out, "generated") {
		t.Errorf("show lists no origin per version:\n%s", out)
	}
	if sealed2 := ok(t, s, sealed, "unseal", "box/aes").stdout; string(sealed2) != "data" {
		t.Error("an imported version no longer unseals after rotate --generate")
	}
	fails(t, s, bytes.Repeat([]byte{11}, 32), 1, "import", "box/aes", "--alg", "aes-256-gcm") // now generated
}

// import refuses what it cannot use, each with its exit status and hint,
// and the daemon's EKEYEXPIRED exits 127.
func TestImportRefusals(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "web"})
	s := srv.Socket
	aes := bytes.Repeat([]byte{1}, 32)
	r := ctl(t, s, aes, "import", "box/probe", "--alg", "aes-256-gcm")
	for _, tt := range []struct {
		name  string
		in    []byte
		args  []string
		code  int
		hint  string
		calls bool // whether the daemon is asked
	}{
		{"raw with a newline", append(bytes.Clone(aes), '\n'), []string{"box/a", "--alg", "aes-256-gcm"}, 22, "no newline", true},
		{"raw for ed25519", aes, []string{"sig/a", "--alg", "ed25519", "--format", "raw"}, exitUsage, "use --format pem", false},
		{"pem for aes", aes, []string{"box/b", "--alg", "aes-256-gcm", "--format", "pem"}, exitUsage, "use --format raw", false},
		{"no private key", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), []string{"sig/b", "--alg", "ed25519"}, 22, "give a PEM private key", false},
		{"an encrypted key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), []string{"sig/c", "--alg", "ed25519"}, 95, "openssl pkey -in KEY.pem | keystorectl import", false},
		{"not hex", []byte("zz"), []string{"box/c", "--alg", "aes-256-gcm", "--format", "hex"}, 22, "", false},
		{"an Ed25519 key as ECDSA", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, ed25519.NewKeyFromSeed(aes))}), []string{"sig/d", "--alg", "ecdsa-p256-sha256"}, 22, "not a private key of --alg", true},
		{"ed448", aes, []string{"sig/e", "--alg", "ed448", "--format", "der"}, 95, "no import form", true},
		{"no --alg", aes, []string{"box/d"}, exitUsage, "", false},
		{"an unknown format", aes, []string{"box/e", "--alg", "aes-256-gcm", "--format", "base64"}, exitUsage, "", false},
	} {
		before := srv.Calls("/keystore.v1.Keys/GetImportParameters")
		r := fails(t, s, tt.in, tt.code, append([]string{"import"}, tt.args...)...)
		if tt.hint != "" && !strings.Contains(r.stderr, tt.hint) {
			t.Errorf("%s: stderr %q lacks %q", tt.name, r.stderr, tt.hint)
		}
		if asked := srv.Calls("/keystore.v1.Keys/GetImportParameters") != before; asked != tt.calls {
			t.Errorf("%s: the daemon asked: %v, want %v", tt.name, asked, tt.calls)
		}
		if leaks(string(r.stdout)+r.stderr, aes) {
			t.Errorf("%s: the material is in the output", tt.name)
		}
	}
	ok(t, s, nil, "create", "box/gen")
	fails(t, s, aes, 1, "import", "box/gen", "--alg", "aes-256-gcm")

	srv.SetFault(func(method string) error {
		if method == "/keystore.v1.Keys/Import" {
			return provider.Errorf(provider.EKEYEXPIRED, "import token expired")
		}
		return nil
	})
	r = fails(t, s, aes, 127, "import", "box/late", "--alg", "aes-256-gcm")
	if !strings.Contains(r.stderr, "(EKEYEXPIRED)") || !strings.Contains(r.stderr, "hint: the import parameters expired") {
		t.Errorf("an expired token: %q", r.stderr)
	}
}

func mustPKCS8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The interop: keys OpenSSL generated (Ed25519 and X25519 as
// PKCS #8, P-256 as a traditional EC key, RSA as PKCS #1) import; the
// signatures verify with OpenSSL against OpenSSL's own public key; the
// X25519 key's public key is OpenSSL's and it decrypts what is encrypted
// to it.
func TestImportOpenSSLKeys(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (apt-get install openssl): the Go-made keys of TestImportCommand cover the formats")
	}
	s := startDaemon(t, clienttest.Options{App: "web"}).Socket
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(openssl, args...).Output()
		if err != nil {
			t.Fatalf("openssl %v: %v", args, err)
		}
		return out
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	write := func(name string, b []byte) string {
		t.Helper()
		if err := os.WriteFile(path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path(name)
	}
	keys := []struct {
		key, alg string
		gen      []string
		digest   []string // openssl dgst flags for the verify; nil: pkeyutl -rawin
	}{
		{"sig/ossl-ed", "ed25519", []string{"genpkey", "-algorithm", "ed25519"}, nil},
		{"sig/ossl-ec", "ecdsa-p256-sha256", []string{"ecparam", "-name", "prime256v1", "-genkey"}, []string{"-sha256"}},
		{"sig/ossl-rsa", "rsa-2048-pkcs1-sha256", []string{"genrsa", "-traditional", "2048"}, []string{"-sha256"}},
	}
	msg := write("msg", []byte("release 1.0"))
	first := true
	for _, k := range keys {
		keyPEM := run(k.gen...)
		if k.alg == "ecdsa-p256-sha256" && !bytes.Contains(keyPEM, []byte("EC PRIVATE KEY")) || k.alg == "rsa-2048-pkcs1-sha256" && !bytes.Contains(keyPEM, []byte("RSA PRIVATE KEY")) {
			t.Errorf("%s: openssl did not write a traditional key: %.40q", k.alg, keyPEM)
		}
		priv := write(k.key[4:]+".pem", keyPEM)
		pub := write(k.key[4:]+".pub", run("pkey", "-in", priv, "-pubout"))
		r := ctl(t, s, keyPEM, "import", k.key, "--alg", k.alg, "--in", "-")
		if first {
			first = false
		}
		if r.code != 0 {
			t.Fatalf("import of openssl's %s: exit %d: %s", k.alg, r.code, r.stderr)
		}
		sig := write(k.key[4:]+".sig", ok(t, s, nil, "sign", k.key, "--in", msg).stdout)
		var out []byte
		var verr error
		if k.digest == nil {
			out, verr = exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msg, "-sigfile", sig).CombinedOutput()
		} else {
			out, verr = exec.Command(openssl, append(append([]string{"dgst"}, k.digest...), "-verify", pub, "-signature", sig, msg)...).CombinedOutput()
		}
		if verr != nil || !bytes.Contains(out, []byte("Verified")) {
			t.Errorf("%s: openssl's verify with its own public key: %v %s", k.alg, verr, out)
		}
	}
	x := run("genpkey", "-algorithm", "x25519")
	ok(t, s, x, "import", "inbox/ossl-x", "--alg", "hpke-x25519-sha256-chacha20poly1305")
	osslPub := run("pkey", "-in", write("x.pem", x), "-pubout", "-outform", "DER")
	if raw := ok(t, s, nil, "pubkey", "inbox/ossl-x", "--format", "raw").stdout; len(osslPub) < 32 || !bytes.Equal(raw, osslPub[len(osslPub)-32:]) {
		t.Errorf("the imported X25519 key's public key %x is not OpenSSL's %x", raw, osslPub)
	}
	sealed := ok(t, s, []byte("to openssl's key"), "hpke-encrypt", "inbox/ossl-x").stdout
	if got := ok(t, s, sealed, "hpke-decrypt", "inbox/ossl-x@1").stdout; string(got) != "to openssl's key" {
		t.Errorf("hpke-decrypt with the imported X25519 key: %q", got)
	}
}

// show prints the origin of the key and of every version, also for keys
// made before imports existed (generated).
func TestShowOrigin(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "web"}).Socket
	ok(t, s, nil, "create", "sig/k", "--alg", "ed25519")
	ok(t, s, nil, "rotate", "sig/k")
	out := string(ok(t, s, nil, "show", "sig/k").stdout)
	if !strings.Contains(out, "\norigin     generated\n") || strings.Count(out, "generated") != 3 {
		t.Errorf("show of a generated key:\n%s\nwant its origin and each version's", out)
	}
	m := decode(t, ok(t, s, nil, "--json", "show", "sig/k"))
	if m["origin"] != "generated" || m["versions"].([]any)[1].(map[string]any)["origin"] != "generated" {
		t.Errorf("show --json = %v", m)
	}
}

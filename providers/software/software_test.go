package software

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/internal/softkey"
)

// fastKDF keeps passphrase tests fast; production files use defaultKDF.
var fastKDF = &kdfParams{time: 1, memory: 64, threads: 1}

func testKEK() secret.Bytes {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(0xa0 + i)
	}
	return secret.Own(k)
}

func newTest(t testing.TB, o Config) provider.Provider {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func testRef(t testing.TB, name string, a provider.Algorithm) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID("app", "test", name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := alg.Default().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	return provider.KeyRef{ID: id, Version: 1, Algorithm: a, Use: s.Use, Provider: Name}
}

func wantCode(t testing.TB, what string, err error, want provider.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got nil error, want %s", what, want)
	}
	if got, ok := provider.CodeOf(err); !ok || got != want {
		t.Fatalf("%s: got error %q (code %v), want code %s", what, err, got, want)
	}
}

// signWorks generates a key with p, or checks that p can use g.
func signWith(t testing.TB, p provider.Provider, r provider.KeyRef, g provider.Generated) error {
	t.Helper()
	s, _ := alg.Default().Lookup(r.Algorithm)
	sig, err := p.Sign(context.Background(), r, g.Handle, []byte("m"))
	if err != nil {
		return err
	}
	if !s.Verify(g.PublicKey, []byte("m"), sig) {
		t.Fatal("signature does not verify")
	}
	return nil
}

func TestInfo(t *testing.T) {
	p := newTest(t, Config{KEK: testKEK()})
	info, err := p.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "software" || info.Version != "1" || !info.Secure || info.Deterministic {
		t.Errorf("Info: got %+v, want name software, version 1, secure, not deterministic", info)
	}
	want := alg.Default().Names()
	if fmt.Sprint(info.Algorithms) != fmt.Sprint(want) {
		t.Errorf("algorithms: got %v, want %v", info.Algorithms, want)
	}
	if err := info.Check(); err != nil {
		t.Errorf("Info.Check: %v", err)
	}
	// The KEK's fingerprint: its KEK ID in hex (docs/software-provider.md).
	id, err := softkey.KEKID(testKEK())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{hex.EncodeToString(id[:])}; !slices.Equal(info.KEKs, want) {
		t.Errorf("KEKs: got %q, want %q", info.KEKs, want)
	}
}

func TestKEKSources(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    Config
	}{
		{"none", Config{}},
		{"file and KEK", Config{KEKFile: filepath.Join(dir, "k"), KEK: testKEK()}},
		{"KEK and passphrase", Config{KEK: testKEK(), Passphrase: secret.New([]byte("pw")), ParamsFile: filepath.Join(dir, "p")}},
		{"file and params", Config{KEKFile: filepath.Join(dir, "k"), ParamsFile: filepath.Join(dir, "p")}},
		{"short KEK", Config{KEK: secret.New(make([]byte, 31))}},
		{"long KEK", Config{KEK: secret.New(make([]byte, 33))}},
		{"passphrase without file", Config{Passphrase: secret.New([]byte("pw"))}},
		{"file without passphrase", Config{ParamsFile: filepath.Join(dir, "p")}},
		{"passphrase too long", Config{Passphrase: secret.New(make([]byte, MaxPassphrase+1)), ParamsFile: filepath.Join(dir, "p"), kdf: fastKDF, Create: true}},
		{"bad cache size", Config{KEK: testKEK(), CacheSize: -1}},
	} {
		_, err := New(tc.o)
		wantCode(t, tc.name, err, provider.EINVAL)
	}
	if _, err := os.Stat(filepath.Join(dir, "k")); err == nil {
		t.Error("a refused configuration created a KEK file")
	}
}

// TestMissingKEKNotCreated: without Create, a missing KEK file or
// parameters file is ENOENT naming the path, and nothing is created (a
// KEK is made only for a state with no keys, never in place of a lost
// one); with Create it is made, and from then on loads without Create.
func TestMissingKEKNotCreated(t *testing.T) {
	dir := t.TempDir()
	kekPath := filepath.Join(dir, "kek")
	paramsPath := filepath.Join(dir, "kek.params")
	for _, tc := range []struct {
		name, path string
		o          Config
	}{
		{"KEK file", kekPath, Config{KEKFile: kekPath}},
		{"params file", paramsPath, Config{Passphrase: secret.New([]byte("pw")), ParamsFile: paramsPath, kdf: fastKDF}},
	} {
		_, err := New(tc.o)
		wantCode(t, tc.name, err, provider.ENOENT)
		if !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s: error %q does not name the missing path", tc.name, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s: New without Create left %d files in the directory", tc.name, len(entries))
		}
		o := tc.o
		o.Create = true
		p1 := newTest(t, o)
		r := testRef(t, "created", provider.Ed25519)
		g, err := p1.Generate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		p2 := newTest(t, tc.o) // the file exists now: no Create needed
		if err := signWith(t, p2, r, g); err != nil {
			t.Fatalf("%s: provider reloaded without Create cannot use a handle: %v", tc.name, err)
		}
		i1, _ := p1.Info(context.Background())
		i2, _ := p2.Info(context.Background())
		if !slices.Equal(i1.KEKs, i2.KEKs) || len(i1.KEKs) != 1 {
			t.Errorf("%s: KEKs %v then %v, want the same single fingerprint", tc.name, i1.KEKs, i2.KEKs)
		}
		if err := os.Remove(tc.path); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKEKFileCreatedPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	p1 := newTest(t, Config{KEKFile: path, Create: true})
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("KEK file not created: %v", err)
	}
	if got := fi.Mode(); got != 0o600 {
		t.Errorf("KEK file mode: got %v, want -rw-------", got)
	}
	if fi.Size() != 32 {
		t.Errorf("KEK file size: got %d, want 32", fi.Size())
	}
	before, _ := os.ReadFile(path)
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after creation, want 1 (no temporary file left)", len(entries))
	}

	// A second provider loads the same KEK: handles move between them.
	r := testRef(t, "k", provider.Ed25519)
	g, err := p1.Generate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	p2 := newTest(t, Config{KEKFile: path})
	if err := signWith(t, p2, r, g); err != nil {
		t.Fatalf("provider reloaded from the KEK file cannot use a handle: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("loading the KEK file changed it")
	}

	// A provider with another KEK file fails with the wrong-KEK error.
	p3 := newTest(t, Config{KEKFile: filepath.Join(t.TempDir(), "kek"), Create: true})
	err = signWith(t, p3, r, g)
	wantCode(t, "other KEK", err, provider.EIO)
	if !strings.Contains(err.Error(), "wrong KEK") {
		t.Errorf("error %q does not say wrong KEK", err)
	}
}

func TestKEKFileRefused(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, bytes.Repeat([]byte{1}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name string, n int, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{2}, n), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask may have narrowed it
			t.Fatal(err)
		}
		return p
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		code       provider.Code
		msg        string
	}{
		{"symlink", link, provider.EPERM, "is a symlink"},
		{"mode 0644", write("m644", 32, 0o644), provider.EPERM, "must not be accessible by group or others"},
		{"mode 0640", write("m640", 32, 0o640), provider.EPERM, "must not be accessible by group or others"},
		{"mode 0604", write("m604", 32, 0o604), provider.EPERM, "must not be accessible by group or others"},
		{"31 bytes", write("s31", 31, 0o600), provider.EIO, "exactly 32 raw bytes"},
		{"33 bytes", write("s33", 33, 0o600), provider.EIO, "more than the 32 expected"},
		{"empty", write("s0", 0, 0o600), provider.EIO, "exactly 32 raw bytes"},
		{"directory", sub, provider.EPERM, "not a regular file"},
		{"missing directory", filepath.Join(dir, "nodir", "kek"), provider.EIO, "cannot create"},
	} {
		var before []byte
		if fi, err := os.Lstat(tc.path); err == nil && fi.Mode().IsRegular() {
			before, _ = os.ReadFile(tc.path)
		}
		_, err := New(Config{KEKFile: tc.path, Create: true})
		wantCode(t, tc.name, err, tc.code)
		if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: error %q does not name the path and say %q", tc.name, err, tc.msg)
		}
		if before != nil {
			if after, _ := os.ReadFile(tc.path); !bytes.Equal(before, after) {
				t.Errorf("%s: refused KEK file was modified", tc.name)
			}
		}
	}
	if got, _ := os.ReadFile(good); !bytes.Equal(got, bytes.Repeat([]byte{1}, 32)) {
		t.Error("the symlink's target was modified")
	}
}

func TestKEKFileOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root; run as root to test the other-owner refusal")
	}
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{KEKFile: path})
	wantCode(t, "other owner", err, provider.EPERM)
	if !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("error %q does not name the owner", err)
	}
}

func TestPassphrase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	pw := secret.New([]byte("correct horse battery staple"))
	p1 := newTest(t, Config{Passphrase: pw, ParamsFile: path, kdf: fastKDF, Create: true})
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("params file not created: %v", err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("params file mode: got %v, want -rw-------", fi.Mode())
	}
	content, _ := os.ReadFile(path)
	for _, field := range []string{`"version": 1`, `"kdf": "argon2id"`, `"salt": "`, `"time": 1`, `"memory": 64`, `"threads": 1`, `"verifier": "`} {
		if !bytes.Contains(content, []byte(field)) {
			t.Errorf("params file lacks %s:\n%s", field, content)
		}
	}
	if bytes.Contains(content, pw.Reveal()) {
		t.Error("params file contains the passphrase")
	}

	r := testRef(t, "pw", provider.Ed25519)
	g, err := p1.Generate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	// Right passphrase: same KEK. The file's parameters are used, not the
	// Config' (nil kdf would mean the slow defaults).
	p2 := newTest(t, Config{Passphrase: secret.New([]byte("correct horse battery staple")), ParamsFile: path})
	if err := signWith(t, p2, r, g); err != nil {
		t.Fatalf("right passphrase cannot use the handle: %v", err)
	}
	// Wrong passphrase: EPERM at New, file untouched.
	_, err = New(Config{Passphrase: secret.New([]byte("wrong")), ParamsFile: path})
	wantCode(t, "wrong passphrase", err, provider.EPERM)
	if !strings.Contains(err.Error(), "wrong passphrase") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say wrong passphrase and name the file", err)
	}
	if strings.Contains(err.Error(), "wrong\"") || strings.Contains(err.Error(), "horse") {
		t.Errorf("error %q contains a passphrase", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
		t.Error("wrong passphrase modified the params file")
	}
}

func TestParamsFileRefused(t *testing.T) {
	dir := t.TempDir()
	pw := secret.New([]byte("pw"))
	valid := `{"version":1,"kdf":"argon2id","salt":"000102030405060708090a0b0c0d0e0f","time":1,"memory":64,"threads":1,"verifier":"` +
		strings.Repeat("00", 32) + `"}`
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		code          provider.Code
	}{
		{"valid but wrong verifier", valid, 0o600, provider.EPERM},
		{"mode 0644", valid, 0o644, provider.EPERM},
		{"not JSON", "hello", 0o600, provider.EIO},
		{"trailing data", valid + "{}", 0o600, provider.EIO},
		{"unknown field", strings.Replace(valid, `"version":1`, `"version":1,"x":2`, 1), 0o600, provider.EIO},
		{"version 2", strings.Replace(valid, `"version":1`, `"version":2`, 1), 0o600, provider.EIO},
		{"short salt", strings.Replace(valid, `"000102030405060708090a0b0c0d0e0f"`, `"00"`, 1), 0o600, provider.EIO},
		{"time 0", strings.Replace(valid, `"time":1`, `"time":0`, 1), 0o600, provider.EIO},
		{"threads 0", strings.Replace(valid, `"threads":1`, `"threads":0`, 1), 0o600, provider.EIO},
		{"memory huge", strings.Replace(valid, `"memory":64`, `"memory":4294967295`, 1), 0o600, provider.EIO},
		{"too big", valid + strings.Repeat(" ", maxParamsFile), 0o600, provider.EIO},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{Passphrase: pw, ParamsFile: path})
		wantCode(t, tc.name, err, tc.code)
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the file", tc.name, err)
		}
		if got, _ := os.ReadFile(path); string(got) != tc.content {
			t.Errorf("%s: refused params file was modified", tc.name)
		}
	}
}

func TestDefaultKDF(t *testing.T) {
	// The documented production parameters (docs/software-provider.md).
	if defaultKDF != (kdfParams{time: 3, memory: 64 * 1024, threads: 4}) {
		t.Errorf("default Argon2id parameters changed: %+v", defaultKDF)
	}
	if !defaultKDF.valid() {
		t.Error("default parameters are outside the accepted range")
	}
}

// TestRedaction prints the provider every way fmt can and checks that
// neither the KEK nor any key's private material appears.
func TestRedaction(t *testing.T) {
	kek := testKEK()
	p := newTest(t, Config{KEK: kek})
	secrets := [][]byte{kek.Reveal()}
	aead, err := chacha20poly1305.NewX(kek.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alg.Default().Names() {
		r := testRef(t, "red", a)
		g, err := p.Generate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if r.Use == provider.UseSign {
			if _, err := p.Sign(context.Background(), r, g.Handle, []byte("m")); err != nil {
				t.Fatal(err)
			}
		}
		// Unwrap independently, per docs/software-provider.md.
		refBin, _ := r.AppendBinary(nil)
		m, err := aead.Open(nil, g.Handle[12:36], g.Handle[36:], append([]byte("keystored/softkey/handle/v1"), refBin...))
		if err != nil {
			t.Fatalf("%s: independent unwrap: %v", a, err)
		}
		if bytes.Contains(g.Handle, m) {
			t.Fatalf("%s: handle holds the material in the clear", a)
		}
		secrets = append(secrets, m)
	}
	sp, ok := p.(*softProvider)
	if !ok {
		t.Fatalf("New returned %T", p)
	}
	var printed []string
	for _, v := range []any{p, sp, *sp, sp.Engine, *sp.Engine, struct{ P provider.Provider }{p}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
			printed = append(printed, fmt.Sprintf(verb, v))
		}
	}
	for _, out := range printed {
		for _, s := range secrets {
			if strings.Contains(out, string(s)) || strings.Contains(out, hex.EncodeToString(s[:8])) ||
				strings.Contains(out, strings.Trim(fmt.Sprint(s[:8]), "[]")) {
				t.Fatalf("printed provider leaks key material: %.200q", out)
			}
		}
	}
	if got := fmt.Sprintf("%+v", p); got != "softkey(software)" {
		t.Errorf("provider prints as %q, want softkey(software)", got)
	}
}

// A temporary copy of a KEK file left by a crash between createExclusive's
// link and its removal (a second name of the KEK) is removed when the KEK
// file is next read; another file is left alone.
func TestLeftoverKEKTempRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kek")
	newTest(t, Config{KEKFile: path, Create: true})
	kek, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(dir, ".kek.tmp-123")
	other := filepath.Join(dir, ".kek.next.tmp-9")
	for _, p := range []string{left, other} {
		if err := os.Link(path, p); err != nil {
			t.Fatal(err)
		}
	}
	newTest(t, Config{KEKFile: path})
	if _, err := os.Lstat(left); !os.IsNotExist(err) {
		t.Errorf("the leftover copy %s of the KEK is still there (%v)", left, err)
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("a temporary file of another name was removed: %v", err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != string(kek) {
		t.Errorf("the KEK file changed: %v", err)
	}
}

// TestSignsHedged: the secure provider signs ECDSA and RSA-PSS with fresh
// randomness: two signatures of one message differ (both verify), where
// the INSECURE test provider's repeat.
func TestSignsHedged(t *testing.T) {
	p, err := New(Config{KEK: secret.New(bytes.Repeat([]byte{1}, 32))})
	if err != nil {
		t.Fatal(err)
	}
	reg := alg.Default()
	for _, a := range []provider.Algorithm{provider.ECDSAP256, provider.ECDSAP384, provider.RSA2048PSS, provider.MLDSA44} {
		id, err := provider.NewKeyID("app", "hedged", string(a))
		if err != nil {
			t.Fatal(err)
		}
		ref := provider.KeyRef{ID: id, Version: 1, Algorithm: a, Use: provider.UseSign, Provider: Name}
		g, err := p.Generate(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		s1, err1 := p.Sign(context.Background(), ref, g.Handle, []byte("m"))
		s2, err2 := p.Sign(context.Background(), ref, g.Handle, []byte("m"))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		spec, err := reg.Lookup(a)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(s1, s2) || !spec.Verify(g.PublicKey, []byte("m"), s1) || !spec.Verify(g.PublicKey, []byte("m"), s2) {
			t.Fatalf("%s: two signatures of one message equal=%v; want two different valid ones", a, bytes.Equal(s1, s2))
		}
	}
}

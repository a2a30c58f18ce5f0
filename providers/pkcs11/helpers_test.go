package pkcs11

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// softhsmModule is where Debian's softhsm2 package installs the library.
const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

// The PINs of every throwaway token.
const (
	testPIN   = "test-user-pin-1234"
	testSOPIN = "test-so-pin-5678"
)

// testToken is a SoftHSM2 token in a temporary directory.
type testToken struct {
	dir   string
	conf  string
	label string
}

// needSoftHSM skips the test when SoftHSM2 is not installed.
func needSoftHSM(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Skip("SoftHSM2 not installed: apt-get install -y softhsm2")
	}
	if _, err := os.Stat(softhsmModule); err != nil {
		t.Skip("SoftHSM2 not installed (no " + softhsmModule + "): apt-get install -y softhsm2")
	}
}

// newToken makes a SoftHSM2 configuration in a temporary directory, points
// SOFTHSM2_CONF at it for the test, and initializes one token labelled
// label there. SoftHSM2 reads its configuration and token list at
// C_Initialize, so no provider of an earlier test may still be open.
func newToken(t testing.TB, label string) *testToken {
	t.Helper()
	needSoftHSM(t)
	dir := t.TempDir()
	tk := &testToken{dir: dir, conf: filepath.Join(dir, "softhsm2.conf"), label: label}
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := "directories.tokendir = " + filepath.Join(dir, "tokens") + "\n" +
		"objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(tk.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tk.conf)
	tk.initToken(t, label)
	return tk
}

// initToken initializes one more token in tk's directory.
func (tk *testToken) initToken(t testing.TB, label string) {
	t.Helper()
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", testSOPIN, "--pin", testPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tk.conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
}

// config returns a Config for tk's token.
func (tk *testToken) config() Config {
	return Config{Module: softhsmModule, TokenLabel: tk.label, PIN: secret.New([]byte(testPIN))}
}

// open returns a provider of tk's token, closed when the test ends.
func (tk *testToken) open(t testing.TB, edit ...func(*Config)) Provider {
	t.Helper()
	cfg := tk.config()
	for _, e := range edit {
		e(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// direct is the test's own access to the token, through the same loaded
// module as the providers (a PKCS#11 library has one state per process).
type direct struct {
	ctx  *p11.Ctx
	slot uint
	sh   p11.SessionHandle
}

// openDirect opens a logged-in session of its own on tk's token.
func (tk *testToken) openDirect(t testing.TB) *direct {
	t.Helper()
	m, err := openModule(softhsmModule)
	if err != nil {
		t.Fatalf("openModule: %v", err)
	}
	t.Cleanup(func() {
		if err := m.release(); err != nil {
			t.Errorf("release: %v", err)
		}
	})
	tok, err := findToken(m.ctx, tk.label, "")
	if err != nil {
		t.Fatalf("findToken: %v", err)
	}
	d := &direct{ctx: m.ctx, slot: tok.slot}
	d.sh = d.session(t)
	return d
}

// session opens a logged-in session, closed when the test ends.
func (d *direct) session(t testing.TB) p11.SessionHandle {
	t.Helper()
	sh, err := d.ctx.OpenSession(d.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	t.Cleanup(func() {
		if err := d.ctx.CloseSession(sh); err != nil {
			if rv, _ := rvOf(err); rv != p11.CKR_SESSION_HANDLE_INVALID && rv != p11.CKR_CRYPTOKI_NOT_INITIALIZED {
				t.Errorf("CloseSession: %v", err)
			}
		}
	})
	if err := d.ctx.Login(sh, p11.CKU_USER, testPIN); err != nil {
		if rv, _ := rvOf(err); rv != p11.CKR_USER_ALREADY_LOGGED_IN {
			t.Fatalf("Login: %v", err)
		}
	}
	return sh
}

// objects returns every object with ref's CKA_ID and class (anyClass for
// all).
func (d *direct) objects(t testing.TB, ref provider.KeyRef, class uint) []p11.ObjectHandle {
	t.Helper()
	id, err := idOf(ref)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := findObjects(d.ctx, d.sh, idTemplate(id, class), 16)
	if err != nil {
		t.Fatalf("FindObjects: %v", err)
	}
	return objs
}

// mustRef builds a KeyRef of the default provider name.
func mustRef(t testing.TB, name string, version provider.Version, a provider.Algorithm) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID("test", "pkcs11", name)
	if err != nil {
		t.Fatal(err)
	}
	use := provider.UseSign
	if s, err := alg.Default().Lookup(a); err == nil {
		use = s.Use
	}
	return provider.KeyRef{ID: id, Version: version, Algorithm: a, Use: use, Provider: DefaultName}
}

// generate makes ref's key with p or fails the test.
func generate(t testing.TB, p provider.Provider, ref provider.KeyRef) provider.Generated {
	t.Helper()
	g, err := p.Generate(context.Background(), ref)
	if err != nil {
		t.Fatalf("Generate(%s): %v", ref, err)
	}
	return g
}

// wantCode fails the test unless err carries code.
func wantCode(t testing.TB, what string, err error, code provider.Code) {
	t.Helper()
	got, ok := provider.CodeOf(err)
	if err == nil || !ok || got != code {
		t.Errorf("%s: got error %v, want code %v", what, err, code)
	}
}

// rvIs reports whether err carries the PKCS#11 return value rv.
func rvIs(err error, rv uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == rv
}

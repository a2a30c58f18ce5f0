package pkcs11

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/testbin"
	"github.com/nexus-os/keystored/plugin"
)

// pluginPkg is the plugin binary's package.
const pluginPkg = "github.com/nexus-os/keystored/cmd/keystore-plugin-pkcs11"

// The plugin binary is built once per test run (internal/testbin: in a
// directory that passes the plugin's StrictModes checks, which TestMain
// removes).
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

var pluginSum struct {
	once sync.Once
	sum  string
	err  error
}

// pluginBinary returns the path and SHA-256 of the plugin binary, building
// it on first use.
func pluginBinary(t testing.TB) (string, string) {
	t.Helper()
	needSoftHSM(t)
	path := testbin.Build(t, pluginPkg)
	pluginSum.once.Do(func() {
		b, err := os.ReadFile(path)
		if err != nil {
			pluginSum.err = err
			return
		}
		sum := sha256.Sum256(b)
		pluginSum.sum = hex.EncodeToString(sum[:])
	})
	if pluginSum.err != nil {
		t.Fatal(pluginSum.err)
	}
	return path, pluginSum.sum
}

// privDir returns a short path for plugin.Config.PrivateDir (Launch
// creates it), removed when t ends.
func privDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	})
	return filepath.Join(d, "plugins")
}

// pinFile writes the test PIN to a new file of the given mode.
func pinFile(t testing.TB, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(testPIN+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// logBuffer collects the plugin's log lines; a failed test prints them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// launch starts the plugin binary for tk's token and returns its client,
// closed when the test ends.
func (tk *testToken) launch(t testing.TB, extraArgs ...string) *plugin.Client {
	t.Helper()
	path, sum := pluginBinary(t)
	logs := &logBuffer{}
	args := append([]string{"--module", softhsmModule, "--token-label", tk.label, "--pin-file", pinFile(t, 0o600)}, extraArgs...)
	c, err := plugin.Launch(t.Context(), plugin.Config{
		Path:       path,
		SHA256:     sum,
		PrivateDir: privDir(t),
		Args:       args,
		Env:        []string{"SOFTHSM2_CONF=" + tk.conf},
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatalf("plugin.Launch: %v\nplugin log:\n%s", err, logs)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the plugin: %v", err)
		}
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs)
		}
	})
	return c
}

// TestPluginConformance runs the provider suite through the plugin
// binary.
func TestPluginConformance(t *testing.T) {
	tk := newToken(t, "plugin-conformance")
	args := suiteArgs(t)
	conformance.Run(t, func(t *testing.T) provider.Provider { return tk.launch(t, args...) }, conformance.WithImport(provider.Ed25519))
}

// TestPluginConformanceKeystore runs the keystore-level suite through the
// plugin binary.
func TestPluginConformanceKeystore(t *testing.T) {
	tk := newToken(t, "plugin-keystore")
	args := suiteArgs(t)
	conformance.RunKeystore(t, func(t *testing.T) provider.Provider { return tk.launch(t, args...) }, conformance.WithImport(provider.Ed25519))
}

// TestPluginSharesToken: keys made through the plugin live in the token:
// the in-process provider uses them, and the other way round.
func TestPluginSharesToken(t *testing.T) {
	tk := newToken(t, "plugin-shared")
	c := tk.launch(t)
	ref := mustRef(t, "ed", 1, provider.Ed25519)
	g := generate(t, c, ref)
	p := tk.open(t)
	sig, err := p.Sign(t.Context(), ref, g.Handle, []byte("in process"))
	if err != nil || !ed25519.Verify(g.PublicKey, []byte("in process"), sig) {
		t.Fatalf("in-process Sign with the plugin's key: %v", err)
	}
	ref2 := mustRef(t, "ed2", 1, provider.Ed25519)
	g2 := generate(t, p, ref2)
	sig, err = c.Sign(t.Context(), ref2, g2.Handle, []byte("plugin"))
	if err != nil || !ed25519.Verify(g2.PublicKey, []byte("plugin"), sig) {
		t.Fatalf("plugin Sign with the in-process key: %v", err)
	}
}

// TestPluginRefuses: the binary refuses a PIN argument, a PIN file others
// can read, a missing module, and a missing PIN, with a message saying so
// and without echoing the PIN.
func TestPluginRefuses(t *testing.T) {
	tk := newToken(t, "plugin-refuses")
	path, _ := pluginBinary(t)
	good := pinFile(t, 0o600)
	base := []string{"--module", softhsmModule, "--token-label", tk.label}
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"--pin", append(base, "--pin", testPIN), nil, "--pin is refused"},
		{"--pin=", append(base, "--pin="+testPIN), nil, "--pin is refused"},
		{"-pin", append([]string{"-pin", testPIN}, base...), nil, "--pin is refused"},
		{"PIN file 0644", append(base, "--pin-file", pinFile(t, 0o644)), nil, "must not be accessible by group or others"},
		{"PIN file symlink", append(base, "--pin-file", symlinkTo(t, good)), nil, "symlink"},
		{"missing module", []string{"--module", "/nonexistent/libpkcs11.so", "--token-label", tk.label, "--pin-file", good}, nil, "no such file"},
		{"relative module", []string{"--module", "libsofthsm2.so", "--token-label", tk.label, "--pin-file", good}, nil, "absolute path"},
		{"no PIN", base, nil, "no PIN"},
		{"PIN twice", append(base, "--pin-file", good), []string{pinEnv + "=" + testPIN}, "both --pin-file and $" + pinEnv},
		{"no label", []string{"--module", softhsmModule, "--pin-file", good}, nil, "--token-label LABEL is required"},
		{"empty algorithm", append(base, "--pin-file", good, "--algorithms", "ed25519,,hmac-sha256"), nil, "has an empty name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(path, c.args...)
			cmd.Env = append([]string{"SOFTHSM2_CONF=" + tk.conf}, c.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Stdout = io.Discard
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("got %v, want a non-zero exit", err)
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), c.want)
			}
			if strings.Contains(stderr.String(), testPIN) {
				t.Errorf("stderr %q contains the PIN", stderr.String())
			}
		})
	}
}

const pinEnv = "KEYSTORE_PKCS11_PIN"

// TestPluginPINFromEnv: the PIN may come from the plugin's environment.
func TestPluginPINFromEnv(t *testing.T) {
	tk := newToken(t, "plugin-env")
	path, sum := pluginBinary(t)
	c, err := plugin.Launch(t.Context(), plugin.Config{
		Path:       path,
		SHA256:     sum,
		PrivateDir: privDir(t),
		Args:       []string{"--module", softhsmModule, "--token-label", tk.label, "--name", "hsm-a"},
		Env:        []string{"SOFTHSM2_CONF=" + tk.conf, pinEnv + "=" + testPIN},
	})
	if err != nil {
		t.Fatalf("plugin.Launch: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	info, err := c.Info(t.Context())
	if err != nil || info.Name != "hsm-a" || !info.Supports(provider.Ed25519) {
		t.Fatalf("Info = %+v, %v; want name hsm-a with ed25519", info, err)
	}
}

// symlinkTo returns a new symlink to target.
func symlinkTo(t testing.TB, target string) string {
	t.Helper()
	l := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(target, l); err != nil {
		t.Fatal(err)
	}
	return l
}

package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// copyFile copies src to dst with mode 0700.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLaunchRefuses: bad configurations and binaries are refused before
// anything runs, with the documented codes.
func TestLaunchRefuses(t *testing.T) {
	t.Parallel()
	_, _, mb := binaries(t)
	sum := sha256File(t, mb)
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(mb, link); err != nil {
		t.Fatal(err)
	}
	zero := strings.Repeat("0", 64)
	cases := []struct {
		name string
		cfg  Config
		code provider.Code
		want []string
	}{
		{"relative path", Config{Path: "misbehave", SHA256: sum}, provider.EINVAL, []string{"not absolute"}},
		{"no path", Config{SHA256: sum}, provider.EINVAL, []string{"no plugin path"}},
		{"no checksum", Config{Path: mb}, provider.EINVAL, []string{"no SHA-256"}},
		{"short checksum", Config{Path: mb, SHA256: sum[:63]}, provider.EINVAL, []string{"64 hex digits"}},
		{"checksum not hex", Config{Path: mb, SHA256: strings.Repeat("zz", 32)}, provider.EINVAL, []string{"not hex"}},
		{"checksum mismatch", Config{Path: mb, SHA256: zero}, provider.EPERM, []string{"mismatch", zero, sum}},
		{"symbolic link", Config{Path: link, SHA256: sum}, provider.EPERM, []string{"symbolic link"}},
		{"directory", Config{Path: dir, SHA256: sum}, provider.EINVAL, []string{"not a regular file"}},
		{"missing", Config{Path: filepath.Join(dir, "nope"), SHA256: sum}, provider.ENOENT, nil},
		{"reserved env", Config{Path: mb, SHA256: sum, Env: []string{"PLUGIN_CLIENT_CERT=x"}}, provider.EINVAL, []string{"reserved"}},
		{"cookie env", Config{Path: mb, SHA256: sum, Env: []string{Handshake.MagicCookieKey + "=x"}}, provider.EINVAL, []string{"reserved"}},
		{"env without =", Config{Path: mb, SHA256: sum, Env: []string{"NAME"}}, provider.EINVAL, []string{"NAME=value"}},
		{"negative timeout", Config{Path: mb, SHA256: sum, CallTimeout: -1}, provider.EINVAL, nil},
		{"huge MaxReply", Config{Path: mb, SHA256: sum, MaxReply: 1 << 30}, provider.EINVAL, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Launch(t.Context(), tc.cfg)
			if c != nil {
				_ = c.Close()
				t.Fatal("Launch succeeded")
			}
			checkCode(t, err, tc.code)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// Upper-case hex is the same pin.
	c := launch(t, mb, Config{SHA256: strings.ToUpper(sum), Args: []string{"serve"}})
	if info, _ := c.Info(t.Context()); info.Name != "misbehave" {
		t.Errorf("Info().Name = %q", info.Name)
	}
}

// TestLaunchFailures: a plugin that exits at once, or that serves without
// mutual TLS, does not get a client; the private directory is removed.
func TestLaunchFailures(t *testing.T) {
	t.Parallel()
	_, _, mb := binaries(t)
	for _, mode := range []string{"exit", "notls"} {
		t.Run(mode, func(t *testing.T) {
			logs := &syncBuffer{}
			c, err := Launch(t.Context(), Config{Path: mb, SHA256: sha256File(t, mb), Args: []string{mode}, Logger: testLogger(logs)})
			if c != nil {
				_ = c.Close()
				t.Fatal("Launch succeeded")
			}
			checkCode(t, err, provider.EUNAVAILABLE)
			if mode == "exit" && !strings.Contains(string(logs.Bytes()), "exiting at once") {
				t.Errorf("the plugin's stderr is not in the host log:\n%s", logs.Bytes())
			}
		})
	}
}

// TestLaunchEnvironment: the plugin sees exactly Config.Env (not a
// variable set in the host), and runs in a private 0700 directory.
func TestLaunchEnvironment(t *testing.T) {
	t.Setenv("KEYSTORE_TEST_HOST_CANARY", "host-secret")
	t.Setenv("KEYSTORE_TEST_VISIBLE", "from-the-host")
	c := misbehavePlugin(t, "serve", Config{Env: []string{"KEYSTORE_TEST_VISIBLE=yes"}})
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := "canary=absent;visible=yes;cwd=0700"; info.Version != want {
		t.Errorf("plugin reports %q, want %q", info.Version, want)
	}
}

// TestLaunchExecutesVerifiedCopy: replacing the binary at Config.Path
// after Launch changes nothing, restarts included: the client executes
// its verified private copy.
func TestLaunchExecutesVerifiedCopy(t *testing.T) {
	t.Parallel()
	sw, _, mb := binaries(t)
	path := filepath.Join(t.TempDir(), "plugin")
	copyFile(t, mb, path)
	c := launch(t, path, Config{Args: []string{"serve"}, RestartBackoff: 1})
	copyFile(t, sw, path) // another binary at the same path
	killPlugin(t, c)
	ref := signRef(t, "misbehave")
	for i := 0; i < 2; i++ { // the first call may meet the dead connection
		if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err == nil {
			break
		} else if i == 1 {
			t.Fatalf("sign after restart: %v", err)
		}
	}
	fi, err := os.Stat(c.bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o500 {
		t.Errorf("private copy has mode %04o, want 0500", fi.Mode().Perm())
	}
	for _, d := range []string{c.root, filepath.Dir(c.bin), c.work} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("private directory %s: %v, %v", d, fi.Mode(), err)
		}
	}
}

// TestLaunchSwapRace swaps the file at Config.Path between the pinned
// binary and another one while launches run: every launch either runs the
// pinned binary or is refused with EPERM; the other binary never runs.
func TestLaunchSwapRace(t *testing.T) {
	t.Parallel()
	sw, _, mb := binaries(t)
	dir := t.TempDir()
	good, evil, path := filepath.Join(dir, "good"), filepath.Join(dir, "evil"), filepath.Join(dir, "plugin")
	copyFile(t, mb, good)
	copyFile(t, sw, evil)
	copyFile(t, mb, path)
	sum := sha256File(t, mb)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tmp := filepath.Join(dir, "tmp")
		for i := 0; !stop.Load(); i++ {
			src := good
			if i%2 == 1 {
				src = evil
			}
			// Replace atomically: link a fresh name, rename over.
			_ = os.Remove(tmp)
			if err := os.Link(src, tmp); err != nil {
				t.Error(err)
				return
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	const launches = 8
	var ran, refused int
	for i := 0; i < launches; i++ {
		// The evil binary would fail to start with these arguments
		// (EUNAVAILABLE), so only EPERM or success are acceptable.
		c, err := Launch(t.Context(), Config{Path: path, SHA256: sum, Args: []string{"serve"}})
		switch {
		case err == nil:
			info, _ := c.Info(t.Context())
			if info.Name != "misbehave" {
				t.Errorf("launch %d ran %q", i, info.Name)
			}
			ran++
			_ = c.Close()
		case errors.Is(err, provider.ErrPermission):
			refused++
		default:
			t.Errorf("launch %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d launches ran the pinned binary, %d were refused", ran, refused)
}

// TestServeRefusesWithoutMutualTLS runs a plugin binary with the cookie
// but without the daemon's client certificate: it refuses to serve.
func TestServeRefusesWithoutMutualTLS(t *testing.T) {
	t.Parallel()
	sw, _, _ := binaries(t)
	cmd := exec.Command(sw, "--kek-file", filepath.Join(t.TempDir(), "kek"))
	cmd.Env = []string{Handshake.MagicCookieKey + "=" + Handshake.MagicCookieValue}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("plugin without mutual TLS: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "refusing to serve without automatic mutual TLS") {
		t.Errorf("output does not say why:\n%s", out)
	}
}

// TestSHA256Pin: the pin is compared on the copy's bytes.
func TestSHA256Pin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	if err := os.WriteFile(src, []byte("#!/bin/sh\nexit 0\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("#!/bin/sh\nexit 0\n"))
	if err := copyVerified(src, sum[:], filepath.Join(dir, "copy")); err != nil {
		t.Fatalf("copyVerified with the right pin: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "copy"))
	if err != nil || string(got) != "#!/bin/sh\nexit 0\n" {
		t.Errorf("copy = %q, %v", got, err)
	}
	other := sha256.Sum256([]byte("other"))
	err = copyVerified(src, other[:], filepath.Join(dir, "copy2"))
	checkCode(t, err, provider.EPERM)
	if !strings.Contains(err.Error(), hex.EncodeToString(sum[:])) || !strings.Contains(err.Error(), hex.EncodeToString(other[:])) {
		t.Errorf("mismatch error %q does not name both sums", err)
	}
}

// TestRunnerAcceptsOnlyPrivateSocket: the daemon dials only a Unix socket
// inside the plugin's private directory.
func TestRunnerAcceptsOnlyPrivateSocket(t *testing.T) {
	r := newProcRunner("/bin/plugin", nil, nil, "/work", "/tmp/root")
	if _, _, err := r.PluginToHost("unix", "/tmp/root/plugin-dir1/plugin2"); err != nil {
		t.Errorf("socket in the private directory refused: %v", err)
	}
	for _, a := range [][2]string{
		{"tcp", "127.0.0.1:1234"},
		{"unix", "/tmp/other/plugin"},
		{"unix", "/tmp/root/../other/plugin"},
		{"unix", "/tmp/rootx/plugin"},
		{"unix", "relative/plugin"},
	} {
		if _, _, err := r.PluginToHost(a[0], a[1]); err == nil {
			t.Errorf("PluginToHost(%s, %s) accepted", a[0], a[1])
		}
	}
}

package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/testbin"
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
	dir := testbin.NewDir(t)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(mb, link); err != nil {
		t.Fatal(err)
	}
	priv := privDir(t)
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
		{"reserved restart env", Config{Path: mb, SHA256: sum, RestartEnv: []string{"PLUGIN_CLIENT_CERT=x"}}, provider.EINVAL, []string{"reserved"}},
		{"env without =", Config{Path: mb, SHA256: sum, Env: []string{"NAME"}}, provider.EINVAL, []string{"NAME=value"}},
		{"negative timeout", Config{Path: mb, SHA256: sum, CallTimeout: -1}, provider.EINVAL, nil},
		{"huge MaxReply", Config{Path: mb, SHA256: sum, MaxReply: 1 << 30}, provider.EINVAL, nil},
		{"no private directory", Config{Path: mb, SHA256: sum, PrivateDir: "-"}, provider.EINVAL, []string{"no private directory"}},
		{"relative private directory", Config{Path: mb, SHA256: sum, PrivateDir: "state/plugins"}, provider.EINVAL, []string{"not an absolute path"}},
		{"private directory too long", Config{Path: mb, SHA256: sum, PrivateDir: "/" + strings.Repeat("p", MaxPrivateDir)}, provider.EINVAL, []string{"at most 69"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.cfg.PrivateDir {
			case "":
				tc.cfg.PrivateDir = priv
			case "-":
				tc.cfg.PrivateDir = ""
			}
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
			c, err := Launch(t.Context(), Config{Path: mb, SHA256: sha256File(t, mb), PrivateDir: privDir(t), Args: []string{mode}, Logger: testLogger(logs)})
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
// its verified private copy, kept in Config.PrivateDir.
func TestLaunchExecutesVerifiedCopy(t *testing.T) {
	t.Parallel()
	sw, _, mb := binaries(t)
	path := filepath.Join(testbin.NewDir(t), "plugin")
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
	bin := filepath.Join(c.dir.path, binDirName, "plugin")
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o500 {
		t.Errorf("private copy has mode %04o, want 0500", fi.Mode().Perm())
	}
	for _, d := range []string{c.dir.path, filepath.Dir(bin), c.work} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("private directory %s: %v, %v", d, fi.Mode(), err)
		}
	}
}

// TestPrivateDirNotInTMPDIR: the copy, the working directory and the
// socket are in Config.PrivateDir; nothing of the plugin's is made in
// $TMPDIR, restarts included (issue 9: the private directory was made in
// $TMPDIR, which another user could replace where it is writable by
// others).
func TestPrivateDirNotInTMPDIR(t *testing.T) {
	binaries(t) // built before TMPDIR changes: the go command uses it
	priv := privDir(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	c := misbehavePlugin(t, "serve", Config{PrivateDir: priv, RestartBackoff: 1})
	killPlugin(t, c)
	ref := signRef(t, "misbehave")
	for i := 0; i < 2; i++ {
		if _, err := c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err == nil {
			break
		} else if i == 1 {
			t.Fatalf("sign after restart: %v", err)
		}
	}
	names := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	if got := names(tmp); len(got) != 0 {
		t.Errorf("$TMPDIR holds %v after a launch and a restart; want nothing", got)
	}
	got := strings.Join(names(priv), " ")
	if !strings.Contains(got, binDirName) || !strings.Contains(got, workDirName) || !strings.Contains(got, "plugin-dir") {
		t.Errorf("private directory holds %q; want bin, work and the socket's plugin-dir", got)
	}
}

// TestPrivateDirChecks: stale entries of an earlier run are removed at
// Launch; a private directory that is a symbolic link, not 0700 or not
// the daemon's is refused, unchanged; one changed while the client runs
// stops the restarts.
func TestPrivateDirChecks(t *testing.T) {
	t.Parallel()
	_, _, mb := binaries(t)
	sum := sha256File(t, mb)
	t.Run("stale entries removed", func(t *testing.T) {
		priv := privDir(t)
		for _, d := range []string{priv, filepath.Join(priv, "bin"), filepath.Join(priv, "plugin-dir123")} {
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"bin/misbehave", "plugin-dir123/plugin456", "junk"} {
			if err := os.WriteFile(filepath.Join(priv, f), []byte("stale"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		logs := &syncBuffer{}
		c := launch(t, mb, Config{PrivateDir: priv, Args: []string{"serve"}, Logger: testLogger(logs)})
		if _, err := os.Stat(filepath.Join(priv, "junk")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale file kept: %v", err)
		}
		if _, err := os.Stat(filepath.Join(priv, "plugin-dir123")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale socket directory kept: %v", err)
		}
		if got := sha256File(t, filepath.Join(priv, "bin", "misbehave")); got != sum {
			t.Errorf("the copy is not the pinned binary: %s", got)
		}
		if !strings.Contains(string(logs.Bytes()), "removed what an earlier run left") {
			t.Errorf("the removal is not logged:\n%s", logs.Bytes())
		}
		if info, _ := c.Info(t.Context()); info.Name != "misbehave" {
			t.Errorf("Info().Name = %q", info.Name)
		}
	})
	refused := func(t *testing.T, priv string, want string) {
		t.Helper()
		c, err := Launch(t.Context(), Config{Path: mb, SHA256: sum, PrivateDir: priv, Args: []string{"serve"}})
		if c != nil {
			_ = c.Close()
			t.Fatal("Launch succeeded")
		}
		checkCode(t, err, provider.EPERM)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Run("mode 0755", func(t *testing.T) {
		priv := privDir(t)
		if err := os.Mkdir(priv, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(priv, 0o755); err != nil {
			t.Fatal(err)
		}
		refused(t, priv, "has mode 0755; it must be 0700")
		if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("refused directory changed: %v %v", fi.Mode(), err)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		priv := privDir(t)
		real := priv + "-real"
		if err := os.Mkdir(real, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, priv); err != nil {
			t.Fatal(err)
		}
		refused(t, priv, "symbolic link")
	})
	t.Run("another owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to chown a directory to another uid (run the tests as root)")
		}
		priv := privDir(t)
		if err := os.Mkdir(priv, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(priv, 54321, 54321); err != nil {
			t.Fatal(err)
		}
		refused(t, priv, "owned by uid 54321")
	})
	t.Run("changed while running", func(t *testing.T) {
		c := launch(t, mb, Config{Args: []string{"serve"}, RestartBackoff: 1, MaxRestarts: 100})
		if err := os.Chmod(c.dir.path, 0o755); err != nil {
			t.Fatal(err)
		}
		killPlugin(t, c)
		ref := signRef(t, "misbehave")
		// The first call may meet the dead connection; the next restarts.
		var err error
		for i := 0; i < 3; i++ {
			if _, err = c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err != nil && strings.Contains(err.Error(), "must be 0700") {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), "must be 0700") {
			t.Errorf("restart from a 0755 private directory: %v, want a refusal", err)
		}
		if err := os.Chmod(c.dir.path, 0o700); err != nil { // so that Close can empty it
			t.Fatal(err)
		}
	})
}

// TestRestartExecutesWhatWasHashed is the attack of issue 9 (item 5): the
// private copy is replaced while the plugin runs, by a script that leaves
// a marker when it runs; the plugin is killed. Every restart hashes the
// copy again and executes the descriptor it hashed: the replacement is
// refused and never runs.
func TestRestartExecutesWhatWasHashed(t *testing.T) {
	t.Parallel()
	c := misbehavePlugin(t, "serve", Config{RestartBackoff: 1, MaxRestarts: 100})
	marker := filepath.Join(t.TempDir(), "marker")
	bin := filepath.Join(c.dir.path, binDirName, c.name)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho ran > "+marker+"\nexit 1\n"), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o500); err != nil {
		t.Fatal(err)
	}
	killPlugin(t, c)
	ref := signRef(t, "misbehave")
	var err error
	for i := 0; i < 3; i++ {
		if _, err = c.Sign(t.Context(), ref, provider.Handle("h"), []byte("fine")); err == nil {
			t.Fatal("a call succeeded after the copy was replaced")
		}
	}
	if !strings.Contains(err.Error(), "changed since it was verified") {
		t.Errorf("restart error %q does not say the copy changed", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replaced copy ran (marker: %v)", err)
	}
}

// TestLaunchStrictModes runs the attacks of issue 9 (item 6) through
// Launch: a world-writable binary, one under a group-writable or a
// sticky world-writable directory (t.TempDir(), below /tmp), one under a
// symlinked directory, one owned by another user. Each is refused (EPERM)
// before anything runs.
func TestLaunchStrictModes(t *testing.T) {
	t.Parallel()
	_, _, mb := binaries(t)
	sum := sha256File(t, mb)
	safe := testbin.NewDir(t)
	put := func(dir, name string, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		copyFile(t, mb, p)
		if err := os.Chmod(p, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sub := func(name string, perm os.FileMode) string {
		d := filepath.Join(safe, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, perm); err != nil {
			t.Fatal(err)
		}
		return d
	}
	real := sub("real", 0o755)
	put(real, "plugin", 0o755)
	if err := os.Symlink(real, filepath.Join(safe, "link")); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ path, want string }{
		"world-writable binary":           {put(safe, "ww", 0o777), "the file is writable by group or others"},
		"group-writable directory":        {put(sub("gw", 0o775), "plugin", 0o755), "is writable by group or others (mode 0775)"},
		"sticky world-writable directory": {put(sub("sticky", os.ModeSticky|0o777), "plugin", 0o755), "the sticky bit does not make it safe"},
		"symlinked directory":             {filepath.Join(safe, "link", "plugin"), "is a symbolic link"},
	}
	if tmp := t.TempDir(); !strings.HasPrefix(tmp, safe) {
		cases["in t.TempDir()"] = struct{ path, want string }{put(tmp, "plugin", 0o700), "writable by group or others"}
	}
	if os.Geteuid() == 0 {
		other := put(safe, "other", 0o755)
		if err := os.Chown(other, 54321, 54321); err != nil {
			t.Fatal(err)
		}
		cases["owned by another user"] = struct{ path, want string }{other, "owned by uid 54321"}
	} else {
		t.Log("not root: the other-owner case needs root to chown; skipped")
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := Launch(t.Context(), Config{Path: tc.path, SHA256: sum, PrivateDir: privDir(t), Args: []string{"serve"}})
			if c != nil {
				_ = c.Close()
				t.Fatal("Launch accepted it")
			}
			checkCode(t, err, provider.EPERM)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// The same binary in a safe place starts.
	launch(t, put(real, "good", 0o755), Config{Args: []string{"serve"}})
}

// TestStderrAtInfoWhileStarting: the testseed plugin without --insecure
// refuses to start and says why on stderr in plain text; that line
// reaches an Info-level log (issue 9, item 13: it was logged at Debug
// while the daemon said "see its log lines above").
func TestStderrAtInfoWhileStarting(t *testing.T) {
	t.Parallel()
	_, ts, _ := binaries(t)
	var logs syncBuffer
	l := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := Launch(t.Context(), Config{Path: ts, SHA256: sha256File(t, ts), PrivateDir: privDir(t), Args: []string{"--seed", "000102030405060708090a0b0c0d0e0f"}, Logger: l})
	if c != nil {
		_ = c.Close()
		t.Fatal("the testseed plugin started without --insecure")
	}
	checkCode(t, err, provider.EUNAVAILABLE)
	var found bool
	for _, line := range strings.Split(string(logs.Bytes()), "\n") {
		if strings.Contains(line, "refusing to start: this provider is INSECURE") {
			found = true
			if !strings.Contains(line, `"level":"INFO"`) {
				t.Errorf("the plugin's reason is logged below Info: %s", line)
			}
		}
	}
	if !found {
		t.Errorf("the plugin's reason for refusing is not in an Info-level log:\n%s", logs.Bytes())
	}
}

// TestLaunchSwapRace swaps the file at Config.Path between the pinned
// binary and another one while launches run: every launch either runs the
// pinned binary or is refused with EPERM; the other binary never runs.
func TestLaunchSwapRace(t *testing.T) {
	t.Parallel()
	sw, _, mb := binaries(t)
	dir := testbin.NewDir(t)
	priv := privDir(t)
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
		c, err := Launch(t.Context(), Config{Path: path, SHA256: sum, PrivateDir: priv, Args: []string{"serve"}})
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
	cmd.Env = append([]string{Handshake.MagicCookieKey + "=" + Handshake.MagicCookieValue}, newStateEnv...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("plugin without mutual TLS: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "refusing to serve without automatic mutual TLS") {
		t.Errorf("output does not say why:\n%s", out)
	}
}

// TestSHA256Pin: the pin is compared on the bytes copied, and again on
// the copy each time it is opened to be executed.
func TestSHA256Pin(t *testing.T) {
	t.Parallel()
	body := []byte("#!/bin/sh\nexit 0\n")
	src := filepath.Join(testbin.NewDir(t), "bin")
	if err := os.WriteFile(src, body, 0o700); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	other := sha256.Sum256([]byte("other"))
	for _, pin := range [][]byte{sum[:], other[:]} {
		d, err := openPrivateDir(privDir(t))
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		if _, err := d.mkdir(binDirName); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		err = d.copyIn(f, "p", pin)
		f.Close()
		if &pin[0] == &other[0] {
			checkCode(t, err, provider.EPERM)
			if !strings.Contains(err.Error(), hex.EncodeToString(sum[:])) || !strings.Contains(err.Error(), hex.EncodeToString(other[:])) {
				t.Errorf("mismatch error %q does not name both sums", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("copyIn with the right pin: %v", err)
		}
		exe, err := d.openCopy("p", pin)
		if err != nil {
			t.Fatalf("openCopy: %v", err)
		}
		exe.Close()
		if _, err := d.openCopy("p", other[:]); err == nil || !strings.Contains(err.Error(), "changed since it was verified") {
			t.Errorf("openCopy with another pin: %v", err)
		}
	}
}

// TestRunnerAcceptsOnlyPrivateSocket: the daemon dials only a Unix socket
// inside the plugin's private directory.
func TestRunnerAcceptsOnlyPrivateSocket(t *testing.T) {
	r := newProcRunner("plugin", nil, nil, nil, "/work", "/tmp/root")
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

// TestServeDisablesCoreDumps: plugin.Serve turns core dumps off in the
// plugin process (RLIMIT_CORE 0/0), although the process that launched it
// allows them; cmd/keystored's TestNoCoreDumps also checks the dumpable
// flag of a plugin under the real daemon.
func TestServeDisablesCoreDumps(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &old); err != nil {
		t.Fatal(err)
	}
	raised := syscall.Rlimit{Cur: min(old.Max, 1<<30), Max: old.Max}
	if os.Geteuid() == 0 {
		raised = syscall.Rlimit{Cur: 1 << 30, Max: max(old.Max, 1<<30)}
	}
	if raised.Cur == 0 {
		t.Skip("RLIMIT_CORE's hard limit is 0 and the test is not root: a plugin that left it alone would pass")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &raised); err != nil {
		t.Fatal(err)
	}
	c := misbehavePlugin(t, "serve", Config{})
	// Launched: the test process may allow dumps again for itself only.
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &old); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(c.pid()) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	var soft, hard string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(strings.TrimPrefix(line, "Max core file size")); len(f) >= 2 && strings.HasPrefix(line, "Max core file size") {
			soft, hard = f[0], f[1]
		}
	}
	if soft != "0" || hard != "0" {
		t.Errorf("the plugin's core limit is %q/%q, want 0/0", soft, hard)
	}
}

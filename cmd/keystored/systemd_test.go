package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// unitDir holds the systemd units keystored ships.
const unitDir = "../../dist/systemd"

// installedBinary is the daemon's path in the shipped service unit.
const installedBinary = "/usr/local/bin/keystored"

var unitFiles = []string{"keystored.service", "keystored.socket"}

// TestSystemdUnitsVerify: systemd-analyze verify finds nothing to say
// about the shipped units (any output fails the test). The service's
// ExecStart names the installed path; the test runs verify on copies
// that name a keystored binary built from this tree instead, since
// verify checks that the command exists.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian package systemd; .ci/run installs it): the units are not verified")
	}
	bin := daemontest.Build(t)
	dir := t.TempDir()
	var paths []string
	for _, name := range unitFiles {
		b, err := os.ReadFile(filepath.Join(unitDir, name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if name == "keystored.service" {
			if !strings.Contains(text, "ExecStart="+installedBinary+" ") {
				t.Fatalf("%s: ExecStart does not name %s", name, installedBinary)
			}
			text = strings.ReplaceAll(text, installedBinary, bin)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, paths...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=info", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(unitFiles, " "), err, out)
	}
}

// TestSystemdUnitsVerifyCatchesErrors: the check above can fail: a unit
// with a misspelt setting makes systemd-analyze verify speak.
func TestSystemdUnitsVerifyCatchesErrors(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian package systemd; .ci/run installs it)")
	}
	p := filepath.Join(t.TempDir(), "broken.service")
	unit := "[Service]\nType=notify\nExecStart=" + daemontest.Build(t) + "\nRuntimeDirectoryy=keystored\n"
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(analyze, "verify", p).CombinedOutput() // the output is what is checked
	if !strings.Contains(string(out), "RuntimeDirectoryy") {
		t.Errorf("systemd-analyze verify said nothing about an unknown setting:\n%s", out)
	}
}

// TestDocsEmbedUnits: docs/operations.md shows each unit exactly as
// dist/systemd ships it.
func TestDocsEmbedUnits(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(string(doc))
	for _, name := range unitFiles {
		b, err := os.ReadFile(filepath.Join(unitDir, name))
		if err != nil {
			t.Fatal(err)
		}
		want := string(b)
		first, _, _ := strings.Cut(want, "\n")
		found := false
		for _, blk := range blocks {
			if strings.HasPrefix(blk, first+"\n") {
				found = true
				if blk != want {
					t.Errorf("docs/operations.md's %s differs from %s/%s:\n--- docs\n%s--- file\n%s", name, unitDir, name, blk, want)
				}
			}
		}
		if !found {
			t.Errorf("docs/operations.md has no block starting with %q (%s)", first, name)
		}
	}
}

// fencedBlocks returns the bodies of the ``` blocks of a Markdown text.
func fencedBlocks(doc string) []string {
	var out []string
	var cur *strings.Builder
	sc := bufio.NewScanner(strings.NewReader(doc))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &strings.Builder{}
		case cur != nil && line == "```":
			out = append(out, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return out
}

// TestConfigDirLayout reproduces the unit's users and directories: the
// daemon runs as a user of its own whose primary group owns the config
// directory and file (root:keystored 0750 and 0640, as docs/operations.md
// installs them): it starts. With the layout systemd's
// ConfigurationDirectory= made (root:root 0750, what the unit used to
// have), the same daemon fails with "permission denied".
func TestConfigDirLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon under another uid and chown the config; run the tests as root")
	}
	const uid, gid = 4251, 4252 // the daemon's user and group (keystored:keystored)
	base := publicDir(t)
	home := filepath.Join(base, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	etc := func(name string, dirGID int) string {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 0, dirGID); err != nil {
			t.Fatal(err)
		}
		p := writeFile(t, dir, "keystored.toml", "unmapped = \"uid\"\n", 0o640)
		if err := os.Chown(p, 0, dirGID); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cred := &syscall.Credential{Uid: uid, Gid: gid}
	good := etc("etc-keystored", gid)
	d := daemontest.Start(t, daemontest.Options{Dir: home, State: filepath.Join(home, "state"), Socket: filepath.Join(home, "run", "k.sock"),
		Args: []string{"--config", good}, Credential: cred})
	d.Stop()

	old := etc("etc-root", 0)
	r := daemontest.Run(t, daemontest.Options{Dir: home, State: filepath.Join(home, "state"), Socket: filepath.Join(home, "run", "k.sock"),
		Args: []string{"--config", old}, Credential: cred})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "permission denied") {
		t.Errorf("config in a root:root 0750 directory: exit %d, want 1 with \"permission denied\":\n%s", r.ExitCode, r.Stderr)
	}
}

// TestSdNotify: under a service manager (NOTIFY_SOCKET) the daemon says
// READY=1 once it serves, RELOADING=1 and READY=1 around a SIGHUP reload,
// and STOPPING=1 when it stops.
func TestSdNotify(t *testing.T) {
	dir, err := os.MkdirTemp("", "ntf") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	path := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	next := func(want string) {
		t.Helper()
		if err := nc.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		lines := strings.Split(strings.TrimSpace(string(buf[:n])), "\n")
		if lines[0] != want {
			t.Fatalf("notification %q, want %s first", buf[:n], want)
		}
		if want == "RELOADING=1" && (len(lines) != 2 || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=")) {
			t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", buf[:n])
		}
	}
	d := daemontest.Start(t, daemontest.Options{Env: []string{"NOTIFY_SOCKET=" + path}})
	next("READY=1")
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	next("RELOADING=1")
	next("READY=1")
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
	if code, err := d.Wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("exit %d (%v), want 0", code, err)
	}
}

// TestListenerFromFiles: an inherited descriptor is served only if it is
// one listening Unix stream socket; closing the listener leaves the
// socket file (the service manager's) where it is.
func TestListenerFromFiles(t *testing.T) {
	dir := shortDir(t)
	good := func(name string) *os.File {
		t.Helper()
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, name), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return f
	}
	l, err := listenerFromFiles([]*os.File{good("ok.sock")})
	if err != nil {
		t.Fatalf("a listening Unix socket refused: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "ok.sock")); err != nil {
		t.Errorf("closing the inherited listener removed the socket: %v", err)
	}

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcpFile, err := tcp.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	gram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "g.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer gram.Close()
	gramFile, err := gram.File()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	idle := os.NewFile(uintptr(fd), "idle")
	regular, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	abstract, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@keystored-test-" + strconv.Itoa(os.Getpid()), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer abstract.Close()
	abstractFile, err := abstract.File()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		files []*os.File
		want  string
	}{
		{"tcp", []*os.File{tcpFile}, "not AF_UNIX"},
		{"datagram", []*os.File{gramFile}, "not SOCK_STREAM"},
		{"not listening", []*os.File{idle}, "not listening"},
		{"regular file", []*os.File{regular}, "not a socket"},
		{"abstract", []*os.File{abstractFile}, "abstract or unnamed"},
		{"two sockets", []*os.File{good("a.sock"), good("b.sock")}, "passed 2 file descriptors"},
	} {
		l, err := listenerFromFiles(c.files)
		if err == nil {
			l.Close()
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.name, err, c.want)
		}
	}
}

// shortDir returns a new directory with a short path (for sockets).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// activateEnv switches the test binary into a stand-in for the service
// manager's last step (see activateMain): with the listening socket as fd
// 3, it sets LISTEN_PID to its own pid and LISTEN_FDS=1 and executes the
// daemon in its place, so that the daemon's pid is LISTEN_PID, as
// systemd does it.
const activateEnv = "KEYSTORED_TEST_ACTIVATE"

// activateMain execs $KEYSTORED_TEST_ACTIVATE with the test binary's
// arguments; it returns only on failure.
func activateMain() int {
	bin := os.Getenv(activateEnv)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, activateEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, "LISTEN_PID="+strconv.Itoa(os.Getpid()), "LISTEN_FDS=1", "LISTEN_FDNAMES=keystored.socket")
	err := unix.Exec(bin, append([]string{bin}, os.Args[1:]...), env)
	fmt.Fprintln(os.Stderr, "exec", bin, err)
	return 3
}

// activated is a daemon started with an inherited socket.
type activated struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startActivated(t *testing.T, cmd *exec.Cmd) *activated {
	t.Helper()
	a := &activated{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Error(err)
			}
			<-a.done
		}
		if t.Failed() {
			t.Logf("--- stdout\n%s--- stderr\n%s", a.stdout, a.stderr)
		}
	})
	return a
}

// wait waits for the process to exit and returns its exit code.
func (a *activated) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-a.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatal("the daemon did not exit within 60 s")
		return -1
	}
}

// useActivated checks that a daemon serving on the inherited socket at
// sock (mode 0640 and group gid, set by the "service manager") answers,
// leaves the socket's mode and group alone, and after SIGTERM exits 0
// leaving the socket in place.
func useActivated(t *testing.T, a *activated, sock string, gid int) {
	t.Helper()
	conn := daemontest.Dial(t, sock)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	keys := keystorev1.NewKeysClient(conn)
	if _, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("Create over the inherited socket: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o640 || int(st.Gid) != gid {
		t.Errorf("inherited socket is mode %04o group %d, want 0640 group %d (the service manager's)", st.Mode&0o7777, st.Gid, gid)
	}
	if !strings.Contains(a.stderr.String(), "serving on the socket the service manager passed") {
		t.Errorf("no log line about the inherited socket:\n%s", a.stderr)
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("the daemon removed the inherited socket: %v", err)
	}
}

// TestSocketActivation: a daemon started with a listening Unix socket
// (LISTEN_FDS) serves on it without creating, chmodding or removing it;
// one started with a TCP socket refuses to start. systemd-socket-activate
// drives the first subtest (skipped without it); the others pass the
// socket as fd 3 through the test binary, which sets LISTEN_PID to its
// pid and executes the daemon in its place.
func TestSocketActivation(t *testing.T) {
	const gid = 4253 // the socket's group, as SocketGroup= sets it
	bin := daemontest.Build(t)
	t.Run("systemd-socket-activate", func(t *testing.T) {
		ssa, err := exec.LookPath("systemd-socket-activate")
		if err != nil {
			t.Skip("systemd-socket-activate not found (Debian package systemd; .ci/run installs it); the fd-passing subtest covers activation")
		}
		dir := shortDir(t)
		sock := filepath.Join(dir, "ks.sock")
		cmd := exec.Command(ssa, "-l", sock, bin, "--state", filepath.Join(dir, "state"), "--socket", sock)
		a := startActivated(t, cmd)
		// systemd-socket-activate binds the socket, then waits for a
		// connection before it executes the daemon.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Lstat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("systemd-socket-activate did not create %s", sock)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := os.Chmod(sock, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(sock, -1, gid); err != nil {
			t.Fatal(err)
		}
		useActivated(t, a, sock, gid)
	})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, f *os.File, sock string, dir string) *activated {
		cmd := exec.Command(exe, "--state", filepath.Join(dir, "state"), "--socket", sock)
		cmd.Env = append(os.Environ(), activateEnv+"="+bin)
		cmd.ExtraFiles = []*os.File{f}
		a := startActivated(t, cmd)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return a
	}
	t.Run("fd", func(t *testing.T) {
		dir := shortDir(t)
		sock := filepath.Join(dir, "ks.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sock, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(sock, -1, gid); err != nil {
			t.Fatal(err)
		}
		useActivated(t, run(t, f, sock, dir), sock, gid)
	})
	t.Run("tcp refused", func(t *testing.T) {
		dir := shortDir(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		a := run(t, f, filepath.Join(dir, "ks.sock"), dir)
		if code := a.wait(t); code != 1 || !strings.Contains(a.stderr.String(), "not AF_UNIX") {
			t.Errorf("daemon given a TCP socket: exit %d, want 1 saying \"not AF_UNIX\":\n%s", code, a.stderr)
		}
	})
}

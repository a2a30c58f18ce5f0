// Package daemontest builds and runs the real keystored binary for
// end-to-end tests: a real process, a real Unix socket, real signals.
//
//	func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		d := daemontest.Start(t, daemontest.Options{})
//		conn := d.Dial(t)
//		keys := keystorev1.NewKeysClient(conn)
//		...
//		d.Stop() // SIGTERM; fails the test unless keystored exits 0
//	}
//
// Build compiles ./cmd/keystored once per test binary (the go command's
// build cache makes later test binaries fast). Start waits until the
// socket accepts connections; a daemon still running when the test ends is
// killed. Main removes the built binary when the tests are done.
package daemontest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nexus-os/keystored/internal/testbin"
)

// Package is the import path of the daemon Build compiles.
const Package = "github.com/nexus-os/keystored/cmd/keystored"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Build returns the path of a keystored binary built from this module,
// building it on the first call of the test binary. The binary and its
// directory are readable and executable by every user, so tests may run it
// (or copies of the test binary beside it) under other uids.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "daemontest-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "keystored")
		cmd := exec.Command(goTool(), "build", "-o", bin, Package)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build %s: %v\n%s", Package, err, out)
			return
		}
		buildBin = bin
	})
	if buildErr != nil {
		t.Fatalf("daemontest: %v", buildErr)
	}
	return buildBin
}

// BuildDir returns the directory Build puts binaries in (mode 0755), after
// building the daemon. It is below $TMPDIR: a provider plugin binary there
// is refused by the daemon's StrictModes checks; build plugins with
// testbin.Build.
func BuildDir(t testing.TB) string {
	t.Helper()
	Build(t)
	return buildDir
}

// Main runs the tests and then removes what Build and testbin made. Use
// it from TestMain: os.Exit(daemontest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	testbin.Cleanup()
	if buildDir != "" {
		if err := os.RemoveAll(buildDir); err != nil {
			fmt.Fprintf(os.Stderr, "daemontest: removing %s: %v\n", buildDir, err)
		}
	}
	return code
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// Options configure Start and Run.
type Options struct {
	// Dir is the daemon's working directory (default: a new t.TempDir()).
	Dir string
	// State is the --state directory (default: Dir/state).
	State string
	// Socket is the --socket path (default: a short path in a new
	// temporary directory; Unix socket paths are limited to 107 bytes).
	Socket string
	// NoDefaults passes neither --state nor --socket: the daemon uses its
	// own defaults (keystore-state and keystore-state/keystored.sock, or
	// $KEYSTORE_SOCKET) relative to Dir.
	NoDefaults bool
	// Args are more flags (--config, ...). An INSECURE provider needs two:
	// --insecure-test-seed HEX --i-understand-this-is-insecure (InsecureSeed
	// returns them).
	Args []string
	// Env adds "NAME=value" entries to the daemon's environment (which is
	// the test's, without KEYSTORE_SOCKET).
	Env []string
	// Credential runs the daemon as another user (the test must be root).
	Credential *syscall.Credential
	// StartTimeout bounds the wait for the socket (default 60 s).
	StartTimeout time.Duration
}

// InsecureSeed returns the flags that run keystored on the INSECURE
// deterministic test provider with seed (hex): --insecure-test-seed and
// its required acknowledgement, --i-understand-this-is-insecure.
func InsecureSeed(seedHex string) []string {
	return []string{"--insecure-test-seed", seedHex, "--i-understand-this-is-insecure"}
}

// Daemon is a running keystored process.
type Daemon struct {
	// Socket is the socket's path, absolute.
	Socket string
	// State is the state directory, absolute (empty with NoDefaults
	// unless it could be derived: Dir/keystore-state).
	State string
	// Dir is the daemon's working directory.
	Dir string

	t      testing.TB
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // from cmd.Wait, set before done is closed
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// prepare builds the command line of o.
func prepare(t testing.TB, o *Options) (*Daemon, *exec.Cmd) {
	t.Helper()
	bin := Build(t)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	d := &Daemon{t: t, Dir: o.Dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	var args []string
	if o.NoDefaults {
		d.State = filepath.Join(o.Dir, "keystore-state")
		d.Socket = filepath.Join(d.State, "keystored.sock")
		for _, kv := range o.Env {
			if v, ok := strings.CutPrefix(kv, "KEYSTORE_SOCKET="); ok {
				d.Socket = v
				if !filepath.IsAbs(v) {
					d.Socket = filepath.Join(o.Dir, v)
				}
			}
		}
	} else {
		if o.State == "" {
			o.State = filepath.Join(o.Dir, "state")
		}
		if o.Socket == "" {
			sd, err := os.MkdirTemp("", "kd")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := os.RemoveAll(sd); err != nil {
					t.Errorf("daemontest: %v", err)
				}
			})
			o.Socket = filepath.Join(sd, "run", "keystored.sock")
		}
		d.State, d.Socket = abs(o.Dir, o.State), abs(o.Dir, o.Socket)
		args = append(args, "--state", o.State, "--socket", o.Socket)
	}
	args = append(args, o.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = o.Dir
	cmd.Stdout, cmd.Stderr = d.stdout, d.stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYSTORE_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, o.Env...)
	if o.Credential != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.Credential}
	}
	return d, cmd
}

func abs(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// ReadyLine is what keystored prints on stdout once it serves.
const ReadyLine = "keystored: listening on "

// Start starts keystored and waits until it has printed ReadyLine and its
// socket accepts connections.
// The test fails (with the daemon's output) if the daemon exits first or
// the socket does not come up in time.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	d, cmd := prepare(t, &o)
	if err := cmd.Start(); err != nil {
		t.Fatalf("daemontest: starting keystored: %v", err)
	}
	d.cmd = cmd
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if !d.exited() {
			d.Kill()
		}
		if t.Failed() {
			t.Logf("keystored output:\n%s", d.Logs())
		}
	})
	timeout := o.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		if d.exited() {
			t.Fatalf("daemontest: keystored exited before serving (%v):\n%s", d.err, d.Logs())
		}
		if strings.Contains(d.stdout.String(), ReadyLine) {
			if c, err := net.Dial("unix", d.Socket); err == nil {
				if cerr := c.Close(); cerr != nil {
					t.Fatalf("daemontest: %v", cerr)
				}
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemontest: socket %s not up after %v:\n%s", d.Socket, timeout, d.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Result is how a daemon run by Run ended.
type Result struct {
	ExitCode int
	Stdout   string
	Stderr   string
}

// Run runs keystored expecting it to exit by itself (a refused start, or
// --version), within timeout (default 60 s), and returns how it ended.
func Run(t testing.TB, o Options) Result {
	t.Helper()
	d, cmd := prepare(t, &o)
	if err := cmd.Start(); err != nil {
		t.Fatalf("daemontest: starting keystored: %v", err)
	}
	d.cmd = cmd
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	timeout := o.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.Kill()
		t.Fatalf("daemontest: keystored did not exit within %v:\n%s", timeout, d.Logs())
	}
	return Result{ExitCode: exitCode(d.err), Stdout: d.stdout.String(), Stderr: d.stderr.String()}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func (d *Daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the daemon.
func (d *Daemon) Signal(sig os.Signal) error { return d.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the daemon to exit and returns its exit
// code (-1 if it was killed by a signal or did not exit in time).
func (d *Daemon) Wait(timeout time.Duration) (int, error) {
	select {
	case <-d.done:
		return exitCode(d.err), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("keystored (pid %d) did not exit within %v", d.cmd.Process.Pid, timeout)
	}
}

// Stop sends SIGTERM and waits (up to 30 s) for the daemon to exit; the
// test fails unless it exits with status 0.
func (d *Daemon) Stop() {
	d.t.Helper()
	if d.exited() {
		d.t.Errorf("daemontest: keystored had already exited (%v)", d.err)
		return
	}
	if err := d.Signal(syscall.SIGTERM); err != nil {
		d.t.Errorf("daemontest: SIGTERM: %v", err)
	}
	code, err := d.Wait(30 * time.Second)
	if err != nil {
		d.Kill()
		d.t.Errorf("daemontest: %v", err)
		return
	}
	if code != 0 {
		d.t.Errorf("daemontest: keystored exited with status %d after SIGTERM, want 0:\n%s", code, d.Logs())
	}
}

// Kill kills the daemon (SIGKILL) and waits for it.
func (d *Daemon) Kill() {
	if d.exited() {
		return
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		d.t.Errorf("daemontest: kill: %v", err)
	}
	<-d.done
}

// Pid returns the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stdout returns what the daemon printed on stdout so far.
func (d *Daemon) Stdout() string { return d.stdout.String() }

// Stderr returns what the daemon printed on stderr (its logs) so far.
func (d *Daemon) Stderr() string { return d.stderr.String() }

// WaitStderr waits (up to 10 s, or until the daemon exits) for its stderr
// to contain substr and reports whether it does. The daemon's stderr is
// copied by a goroutine of its own, so a line written before the ready
// line on stdout may not be in Stderr yet when Start returns.
func (d *Daemon) WaitStderr(substr string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.Stderr(), substr) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-d.done:
			return strings.Contains(d.Stderr(), substr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// Logs returns stdout and stderr so far.
func (d *Daemon) Logs() string {
	return "--- stdout\n" + d.stdout.String() + "--- stderr\n" + d.stderr.String()
}

// Target returns the gRPC target of the socket ("unix:///abs/path").
func (d *Daemon) Target() string { return "unix://" + d.Socket }

// Dial returns a gRPC client connection to the daemon (closed when the
// test ends).
func (d *Daemon) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	return Dial(t, d.Socket)
}

// Dial returns a gRPC client connection to the keystored socket at path
// (closed when the test ends).
func Dial(t testing.TB, path string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
	if err != nil {
		t.Fatalf("daemontest: dial %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("daemontest: closing the connection: %v", err)
		}
	})
	return conn
}

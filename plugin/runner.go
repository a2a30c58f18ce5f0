package plugin

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin/runner"
)

// procRunner is the go-plugin runner.Runner of one plugin process: it
// executes the verified private copy of the binary from a descriptor that
// was hashed just before (never by path), with exactly the environment it
// is given, /dev/null as stdin and a private working directory. It never
// logs its arguments (they may hold secrets such as a test seed).
type procRunner struct {
	name string                   // the binary's base name: argv[0] and Name()
	exe  func() (*os.File, error) // opens, checks and hashes the private copy
	args []string                 // without argv[0]
	env  []string
	dir  string
	// sockRoot is the directory the plugin's Unix socket must be in.
	sockRoot string

	mu     sync.Mutex
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser
	pid    int
	exited chan struct{} // closed when Wait returns
}

var _ runner.Runner = (*procRunner)(nil)

func newProcRunner(name string, exe func() (*os.File, error), args, env []string, dir, sockRoot string) *procRunner {
	return &procRunner{name: name, exe: exe, args: args, env: env, dir: dir, sockRoot: sockRoot, exited: make(chan struct{})}
}

// etxtbsyRetries bounds the retries of an exec that fails with ETXTBSY:
// a fork elsewhere in the process can briefly hold a write descriptor of
// the freshly written copy (golang.org/issue/22315).
const etxtbsyRetries = 50

// exeFD is the descriptor number the verified binary has in the child
// (ExtraFiles[0]); the child executes execDir + "3", its own descriptor
// (fexecve's way, as glibc implements it), so the kernel runs exactly
// the file that was hashed.
const exeFD = 3

// Start implements runner.Runner: it opens and hashes the private copy
// (refusing to start if it changed) and executes that descriptor.
func (r *procRunner) Start(ctx context.Context) error {
	exe, err := r.exe()
	if err != nil {
		return err
	}
	// The child has its own copy of the descriptor (inherited, without
	// close-on-exec, so that it can execute it); ours is not needed after
	// the start.
	defer exe.Close()
	for attempt := 0; ; attempt++ {
		cmd := &exec.Cmd{
			Path:        execDir + strconv.Itoa(exeFD),
			Args:        append([]string{r.name}, r.args...),
			Env:         r.env,
			Dir:         r.dir,
			ExtraFiles:  []*os.File{exe},
			SysProcAttr: sysProcAttr(),
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			_ = stdout.Close()
			return err
		}
		err = cmd.Start()
		if err == nil {
			r.mu.Lock()
			r.cmd, r.stdout, r.stderr, r.pid = cmd, stdout, stderr, cmd.Process.Pid
			r.mu.Unlock()
			return nil
		}
		_ = stdout.Close()
		_ = stderr.Close()
		if !errors.Is(err, syscall.ETXTBSY) || attempt >= etxtbsyRetries {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Diagnose implements runner.Runner.
func (r *procRunner) Diagnose(context.Context) string {
	return "the plugin did not complete the go-plugin handshake: check that it calls plugin.Serve, " +
		"that it is built for this machine, and its log lines above"
}

// Stdout implements runner.Runner.
func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }

// Stderr implements runner.Runner.
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }

// Name implements runner.Runner: the binary's base name.
func (r *procRunner) Name() string { return r.name }

// Wait implements runner.Runner.
func (r *procRunner) Wait(context.Context) error {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil {
		return errors.New("plugin process was not started")
	}
	err := cmd.Wait()
	close(r.exited)
	return err
}

// Kill implements runner.Runner.
func (r *procRunner) Kill(context.Context) error {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// ID implements runner.Runner: the process ID.
func (r *procRunner) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

// processID returns the process ID, 0 before Start.
func (r *procRunner) processID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

// done reports whether the process has exited (and been waited for).
func (r *procRunner) done() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// PluginToHost implements runner.AddrTranslator. The plugin runs on this
// host, so addresses need no translation, but the daemon dials only a Unix
// socket inside the private directory it gave the plugin
// (PLUGIN_UNIX_SOCKET_DIR): never a TCP port, never a socket elsewhere.
func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	if network != "unix" {
		return "", "", errors.New("the plugin offered a " + strconv.Quote(network) +
			" address; keystored accepts only a Unix socket in the plugin's private directory")
	}
	if clean := filepath.Clean(addr); r.sockRoot == "" || !strings.HasPrefix(clean, r.sockRoot+string(filepath.Separator)) {
		return "", "", errors.New("the plugin's socket " + strconv.Quote(addr) + " is outside its private directory")
	}
	return network, addr, nil
}

// HostToPlugin implements runner.AddrTranslator.
func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

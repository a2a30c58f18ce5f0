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
// executes the verified private copy of the binary with exactly the
// environment it is given, /dev/null as stdin and a private working
// directory. It never logs its arguments (they may hold secrets such as a
// test seed).
type procRunner struct {
	path string   // the private copy
	args []string // without argv[0]
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

func newProcRunner(path string, args, env []string, dir, sockRoot string) *procRunner {
	return &procRunner{path: path, args: args, env: env, dir: dir, sockRoot: sockRoot, exited: make(chan struct{})}
}

// etxtbsyRetries bounds the retries of an exec that fails with ETXTBSY:
// a fork elsewhere in the process can briefly hold a write descriptor of
// the freshly written copy (golang.org/issue/22315).
const etxtbsyRetries = 50

// Start implements runner.Runner.
func (r *procRunner) Start(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		cmd := &exec.Cmd{
			Path:        r.path,
			Args:        append([]string{filepath.Base(r.path)}, r.args...),
			Env:         r.env,
			Dir:         r.dir,
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
func (r *procRunner) Name() string { return filepath.Base(r.path) }

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

package tpmcounter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// swtpm is a software TPM 2.0 (Debian's swtpm) run by a test: its state
// in a directory that outlives restarts, its data channel on a Unix
// socket speaking raw TPM commands, its control channel on another.
type swtpm struct {
	t     *testing.T
	state string // the TPM's state directory
	sock  string // data channel
	ctrl  string // control channel
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
}

// Bounds on the swtpm process: startup and shutdown (a busy CI machine
// is slow; these are ceilings, not expectations).
const (
	swtpmStart = 20 * time.Second
	swtpmStop  = 10 * time.Second
)

// newSwtpm starts a swtpm on a fresh state directory, or skips t, saying
// why, when the swtpm binary is absent (CI installs it: .ci/run). It is
// killed when t ends.
func newSwtpm(t *testing.T) *swtpm {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skipf("swtpm not installed (%v): the TPM counter tests need a software TPM (apt-get install swtpm swtpm-tools)", err)
	}
	// Socket paths are limited to 108 bytes: a short directory of our
	// own rather than t.TempDir, whose path grows with the test's name.
	dir, err := os.MkdirTemp("", "tpmc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	s := &swtpm{t: t, state: filepath.Join(dir, "state"), sock: filepath.Join(dir, "tpm.sock"), ctrl: filepath.Join(dir, "ctrl.sock")}
	if err := os.Mkdir(s.state, 0o700); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.kill)
	return s
}

// start runs swtpm on s.state and waits until its data socket answers.
func (s *swtpm) start() {
	s.t.Helper()
	for _, p := range []string{s.sock, s.ctrl} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.t.Fatal(err)
		}
	}
	s.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.state,
		"--server", "type=unixio,path="+s.sock,
		"--ctrl", "type=unixio,path="+s.ctrl,
		"--flags", "not-need-init,startup-clear")
	out := &lockedBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting swtpm: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		// Its exit status is not the test's concern: a swtpm that
		// dies early shows as a socket that never answers, with its
		// output in the failure message.
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.NewTimer(swtpmStart)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", s.sock); err == nil {
			if err := c.Close(); err != nil {
				s.t.Fatal(err)
			}
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("swtpm exited at start: %s", out.String())
		case <-deadline.C:
			s.kill()
			s.t.Fatalf("swtpm did not listen on %s within %v: %s", s.sock, swtpmStart, out.String())
		case <-tick.C:
		}
	}
}

// stop shuts swtpm down through its control channel (CMD_SHUTDOWN, as a
// host's power-off would: state saved) and waits for it to exit.
func (s *swtpm) stop() {
	s.t.Helper()
	c, err := net.DialTimeout("unix", s.ctrl, swtpmStop)
	if err != nil {
		s.t.Fatalf("swtpm control channel: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(swtpmStop)); err != nil {
		s.t.Fatal(err)
	}
	const cmdShutdown = 3 // swtpm's control protocol (swtpm_ioctl -s)
	if err := binary.Write(c, binary.BigEndian, uint32(cmdShutdown)); err != nil {
		s.t.Fatalf("swtpm shutdown: %v", err)
	}
	var res uint32
	if err := binary.Read(c, binary.BigEndian, &res); err != nil && !errors.Is(err, io.EOF) {
		s.t.Fatalf("swtpm shutdown: %v", err)
	} else if err == nil && res != 0 {
		s.t.Fatalf("swtpm shutdown: result 0x%x", res)
	}
	s.wait()
}

// kill kills swtpm (SIGKILL: a crash, nothing saved at exit) and waits.
func (s *swtpm) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	// An error means it has exited already: wait sees that.
	_ = s.cmd.Process.Kill()
	s.wait()
}

func (s *swtpm) wait() {
	select {
	case <-s.done:
	case <-time.After(swtpmStop):
		// Kill's error: exited meanwhile, which done will show.
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("swtpm did not exit within %v; killed", swtpmStop)
	}
}

// restart stops swtpm and starts it again on the same state: a reboot.
func (s *swtpm) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// reset starts swtpm on an empty state directory: a new (or wiped) TPM.
func (s *swtpm) reset() {
	s.t.Helper()
	s.stop()
	if err := os.RemoveAll(s.state); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Mkdir(s.state, 0o700); err != nil {
		s.t.Fatal(err)
	}
	s.start()
}

// open opens a Counter on s with o (o.Path set to s's socket), closed
// when t ends.
func (s *swtpm) open(o Options) (*Counter, error) {
	s.t.Helper()
	o.Path = s.sock
	c, err := Open(testContext(s.t), o)
	if err != nil {
		return nil, err
	}
	s.t.Cleanup(func() {
		if err := c.Close(); err != nil {
			s.t.Errorf("close: %v", err)
		}
	})
	return c, nil
}

// testContext is bounded by the test's deadline, or a minute.
func testContext(t *testing.T) context.Context {
	d, ok := t.Deadline()
	if !ok {
		d = time.Now().Add(time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// lockedBuffer collects a process's output (its first 64 KiB) for
// failure messages; exec writes to it from its own goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p[:min(len(p), 64<<10-len(b.b))]...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

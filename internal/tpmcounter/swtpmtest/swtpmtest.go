// Package swtpmtest runs a software TPM 2.0 (Debian's swtpm) for tests:
// its state in a directory that outlives restarts, its data channel on a
// Unix socket speaking raw TPM 2.0 commands (what internal/tpmcounter and
// keystored's [counter] type = "tpm" take as their device), its control
// channel on another. Only tests import it (internal/layering checks).
package swtpmtest

import (
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

// Bounds on the swtpm process: startup and shutdown (a busy CI machine
// is slow; these are ceilings, not expectations).
const (
	StartTimeout = 20 * time.Second
	StopTimeout  = 10 * time.Second
)

// TPM is one swtpm run by a test. Its methods are for the test's own
// goroutine (they call t.Fatal).
type TPM struct {
	t     testing.TB
	state string // the TPM's state directory
	sock  string // data channel
	ctrl  string // control channel
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	out   *lockedBuffer // the current process's output
}

// Start starts a swtpm on a fresh state directory, or skips t, saying
// why, when the swtpm binary is absent (CI installs it: .ci/run). It is
// killed, and its directory removed, when t ends.
func Start(t testing.TB) *TPM {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("KEYSTORED_REQUIRE_INTEROP") != "" {
			t.Fatalf("KEYSTORED_REQUIRE_INTEROP is set (.ci/run), but swtpm is not installed: %v", err)
		}
		t.Skipf("swtpm not installed (%v): this test needs a software TPM (apt-get install swtpm swtpm-tools)", err)
	}
	// Socket paths are limited to 108 bytes: a short directory of our
	// own rather than t.TempDir, whose path grows with the test's name.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	s := &TPM{t: t, state: filepath.Join(dir, "state"), sock: filepath.Join(dir, "tpm.sock"), ctrl: filepath.Join(dir, "ctrl.sock")}
	if err := os.Mkdir(s.state, 0o700); err != nil {
		t.Fatal(err)
	}
	// Registered before the start, so that it runs before the directory
	// is removed (cleanups run last-registered first).
	t.Cleanup(s.Kill)
	s.Start()
	return s
}

// Sock is the path of the TPM's data socket (stable across restarts).
func (s *TPM) Sock() string { return s.sock }

// Output is what the current (or last) swtpm process printed, for
// failure messages.
func (s *TPM) Output() string {
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Start runs swtpm on the TPM's state directory and waits until its data
// socket answers. The TPM must not be running.
func (s *TPM) Start() {
	s.t.Helper()
	if s.running() {
		s.t.Fatal("swtpmtest: Start of a running swtpm")
	}
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
	s.out = &lockedBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
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
	deadline := time.NewTimer(StartTimeout)
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
			s.t.Fatalf("swtpm exited at start: %s", s.out.String())
		case <-deadline.C:
			s.Kill()
			s.t.Fatalf("swtpm did not listen on %s within %v: %s", s.sock, StartTimeout, s.out.String())
		case <-tick.C:
		}
	}
}

// running reports whether a swtpm process is up.
func (s *TPM) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop shuts swtpm down through its control channel (CMD_SHUTDOWN, as a
// host's power-off would: state saved) and waits for it to exit.
func (s *TPM) Stop() {
	s.t.Helper()
	c, err := net.DialTimeout("unix", s.ctrl, StopTimeout)
	if err != nil {
		s.t.Fatalf("swtpm control channel: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(StopTimeout)); err != nil {
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

// Kill kills swtpm (SIGKILL: a crash, nothing saved at exit) and waits.
// It does nothing when swtpm is not running.
func (s *TPM) Kill() {
	if !s.running() {
		return
	}
	// An error means it has exited already: wait sees that.
	_ = s.cmd.Process.Kill()
	s.wait()
}

func (s *TPM) wait() {
	select {
	case <-s.done:
	case <-time.After(StopTimeout):
		// Kill's error: exited meanwhile, which done will show.
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("swtpm did not exit within %v; killed", StopTimeout)
	}
}

// Restart stops swtpm and starts it again on the same state: a reboot.
func (s *TPM) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Reset stops swtpm and starts it on an empty state directory: a new (or
// wiped) TPM on the same socket.
func (s *TPM) Reset() {
	s.t.Helper()
	s.Stop()
	if err := os.RemoveAll(s.state); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Mkdir(s.state, 0o700); err != nil {
		s.t.Fatal(err)
	}
	s.Start()
}

// Clear sends TPM2_Clear to the running swtpm (with the lockout
// hierarchy's empty password, as tpm2_clear or the firmware's "Clear TPM"
// does): every owner NV index is deleted, while the TPM remembers the
// largest counter value it had (a counter defined again starts above it
// at its first increment).
func (s *TPM) Clear() {
	s.t.Helper()
	c, err := net.DialTimeout("unix", s.sock, StopTimeout)
	if err != nil {
		s.t.Fatalf("swtpm data channel: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(StopTimeout)); err != nil {
		s.t.Fatal(err)
	}
	cmd := binary.BigEndian.AppendUint16(nil, 0x8002) // TPM_ST_SESSIONS
	cmd = binary.BigEndian.AppendUint32(cmd, 27)      // command size
	cmd = binary.BigEndian.AppendUint32(cmd, 0x126)   // TPM_CC_Clear
	cmd = binary.BigEndian.AppendUint32(cmd, 0x4000000a)
	cmd = binary.BigEndian.AppendUint32(cmd, 9)          // authorization area size
	cmd = binary.BigEndian.AppendUint32(cmd, 0x40000009) // TPM_RS_PW
	cmd = append(cmd, 0, 0, 0, 0, 0)                     // empty nonce, attributes, empty password
	if _, err := c.Write(cmd); err != nil {
		s.t.Fatalf("TPM2_Clear: %v", err)
	}
	rsp := make([]byte, 10)
	if _, err := io.ReadFull(c, rsp); err != nil {
		s.t.Fatalf("TPM2_Clear: %v", err)
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		s.t.Fatalf("TPM2_Clear: response code 0x%x", rc)
	}
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

package sshagent_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/sshagent"
)

// shortDir returns a new directory with a short path (a Unix socket path
// is limited to 107 bytes; t.TempDir() holds the test's name), removed
// when the test ends.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chmod(d, 0o700); err != nil {
			t.Error(err)
		}
		if err := os.RemoveAll(d); err != nil {
			t.Error(err)
		}
	})
	return d
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func gone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after Close (%v)", path, err)
	}
}

func TestListenModes(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		dir := filepath.Join(shortDir(t), "agent")
		sock := filepath.Join(dir, "s")
		s, err := sshagent.Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		if m := mode(t, dir); m != os.ModeDir|0o700 {
			t.Errorf("directory mode %v, want drwx------", m)
		}
		if m := mode(t, sock); m != os.ModeSocket|0o600 {
			t.Errorf("socket mode %v, want Srw-------", m)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		gone(t, sock)
		gone(t, dir) // it made the directory, so it removes it
	})
	t.Run("existing directory", func(t *testing.T) {
		dir := shortDir(t)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "s")
		s, err := sshagent.Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		if m := mode(t, sock); m != os.ModeSocket|0o600 {
			t.Errorf("socket mode %v, want Srw-------", m)
		}
		if m := mode(t, dir); m != os.ModeDir|0o755 {
			t.Errorf("existing directory changed to %v, want it left at drwxr-xr-x", m)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		gone(t, sock)
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("Close removed a directory it did not make: %v", err)
		}
	})
	t.Run("temporary", func(t *testing.T) {
		s, err := sshagent.ListenTemp()
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(s.Path)
		if !strings.HasPrefix(filepath.Base(dir), "keystore-ssh-") || filepath.Dir(dir) != filepath.Clean(os.TempDir()) {
			t.Errorf("ListenTemp socket %s, want $TMPDIR/keystore-ssh-*/agent.sock", s.Path)
		}
		if m := mode(t, dir); m != os.ModeDir|0o700 {
			t.Errorf("directory mode %v, want drwx------", m)
		}
		if m := mode(t, s.Path); m != os.ModeSocket|0o600 {
			t.Errorf("socket mode %v, want Srw-------", m)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		gone(t, s.Path)
		gone(t, dir)
	})
	t.Run("stale socket", func(t *testing.T) {
		sock := filepath.Join(shortDir(t), "s")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := sshagent.Listen(sock)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestListenRefuses(t *testing.T) {
	link := func(t *testing.T) string {
		base := shortDir(t)
		real := filepath.Join(base, "real")
		if err := os.Mkdir(real, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, filepath.Join(base, "link")); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(base, "link", "s")
	}
	withMode := func(m os.FileMode) func(t *testing.T) string {
		return func(t *testing.T) string {
			d := shortDir(t)
			if err := os.Chmod(d, m); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "s")
		}
	}
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
		code provider.Code
		msg  string
	}{
		{"group-writable directory", withMode(0o770), provider.EPERM, "writable by group or others (mode 0770)"},
		{"world-writable directory", withMode(0o777), provider.EPERM, "writable by group or others (mode 0777)"},
		{"sticky world-writable directory", withMode(os.ModeSticky | 0o777), provider.EPERM, "writable by group or others (mode 1777)"},
		{"symlinked directory", link, provider.EPERM, "symbolic link"},
		{"directory is a file", func(t *testing.T) string {
			f := filepath.Join(shortDir(t), "f")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(f, "s")
		}, provider.EPERM, "not a directory"},
		{"a file at the path", func(t *testing.T) string {
			f := filepath.Join(shortDir(t), "s")
			if err := os.WriteFile(f, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		}, provider.EALREADY, "is not a socket"},
		{"a live socket at the path", func(t *testing.T) string {
			s, err := sshagent.ListenTemp()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			})
			return s.Path
		}, provider.EALREADY, "another agent is answering"},
		{"a path too long", func(t *testing.T) string {
			return filepath.Join(shortDir(t), strings.Repeat("x", 120))
		}, provider.EINVAL, "at most 107"},
		{"parent missing", func(t *testing.T) string {
			return filepath.Join(shortDir(t), "a", "b", "s")
		}, provider.EIO, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			dir := filepath.Dir(path)
			before, _ := os.Lstat(dir) // nil when the directory is missing
			s, err := sshagent.Listen(path)
			if err == nil {
				if cerr := s.Close(); cerr != nil {
					t.Error(cerr)
				}
				t.Fatalf("Listen(%s) succeeded", path)
			}
			if code, _ := provider.CodeOf(err); code != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Listen: %v (%v), want %v mentioning %q", err, code, tc.code, tc.msg)
			}
			if before != nil {
				after, err := os.Lstat(dir)
				if err != nil || after.Mode() != before.Mode() {
					t.Errorf("Listen changed %s: %v -> %v (%v)", dir, before.Mode(), after.Mode(), err)
				}
			}
		})
	}
	t.Run("directory of another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a directory to another uid")
		}
		d := shortDir(t)
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := sshagent.Listen(filepath.Join(d, "s"))
		if !errors.Is(err, provider.ErrPermission) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("Listen in a directory of uid 65534: %v, want EPERM naming the owner", err)
		}
	})
}

// roundTrip sends one raw request on conn and returns the reply's body,
// or the read error.
func roundTrip(conn net.Conn, req []byte) ([]byte, error) {
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(req)))
	if _, err := conn.Write(append(msg, req...)); err != nil {
		return nil, err
	}
	var n [4]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(n[:]))
	_, err := io.ReadFull(conn, body)
	return body, err
}

const (
	opFailure            = 5
	opRequestIdentities  = 11
	opIdentitiesAnswer   = 12
	opSignRequest        = 13
	maxMessageTestConfig = 4096
)

func TestMessageSizeLimit(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	sock := serve(t, f.agent, sshagent.ServeConfig{MaxMessage: maxMessageTestConfig})
	pub := f.sshKey(t, "ssh/login").Marshal()
	// A sign request of exactly MaxMessage bytes is read and answered.
	signReq := func(total int) []byte {
		head := ssh.Marshal(struct {
			Blob []byte
			Data []byte
		}{pub, nil})
		data := make([]byte, total-1-len(head)-4) // opcode, blob, data, flags
		return append([]byte{opSignRequest}, ssh.Marshal(struct {
			Blob  []byte
			Data  []byte
			Flags uint32
		}{pub, data, 0})...)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := signReq(maxMessageTestConfig)
	if len(req) != maxMessageTestConfig {
		t.Fatalf("test bug: request of %d bytes", len(req))
	}
	reply, err := roundTrip(conn, req)
	if err != nil || len(reply) == 0 || reply[0] != 14 { // SSH_AGENT_SIGN_RESPONSE
		t.Fatalf("sign request of MaxMessage bytes: reply %x, %v; want a signature", reply, err)
	}
	// One byte more: the connection is closed before the body is read.
	if _, err := conn.Write(binary.BigEndian.AppendUint32(nil, maxMessageTestConfig+1)); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after a request of MaxMessage+1 bytes: read %d, %v; want EOF (connection closed)", n, err)
	}
	// A 4 GiB declaration with the default limit: closed too, nothing
	// allocated for it (agent.ServeAgent alone would read up to 16 MiB).
	c2, err := net.Dial("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := c2.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c2.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after a 4 GiB declaration: read %d, %v; want EOF", n, err)
	}
	// Other connections are unaffected.
	if got := comments(t, dialAgent(t, sock)); len(got) != 3 {
		t.Errorf("List on a new connection: %q", got)
	}
}

// Requests on one connection are answered in order, one by one, even
// when a client sends several at once (pipelining).
func TestPipelinedRequestsInOrder(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	conn, err := net.Dial("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var batch []byte
	const n = 20
	for i := range n {
		req := []byte{opRequestIdentities}
		if i%2 == 1 {
			req = []byte{99} // unknown opcode: SSH_AGENT_FAILURE
		}
		batch = binary.BigEndian.AppendUint32(batch, uint32(len(req)))
		batch = append(batch, req...)
	}
	if _, err := conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var hdr [4]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(conn, body); err != nil {
			t.Fatal(err)
		}
		want := byte(opIdentitiesAnswer)
		if i%2 == 1 {
			want = opFailure
		}
		if body[0] != want {
			t.Fatalf("reply %d: type %d, want %d", i, body[0], want)
		}
	}
}

func TestMaxConnections(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	var logMu sync.Mutex
	var logs []string
	sock := serve(t, f.agent, sshagent.ServeConfig{MaxConnections: 2, Logf: func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		logs = append(logs, format)
	}})
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := roundTrip(c, []byte{opRequestIdentities}); err != nil { // served: it holds a slot
			t.Fatal(err)
		}
		open = append(open, c)
	}
	third, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if _, err := roundTrip(third, []byte{opRequestIdentities}); err == nil {
		t.Fatal("a third connection was served with MaxConnections 2")
	}
	logMu.Lock()
	refused := strings.Contains(strings.Join(logs, "\n"), "the limit")
	logMu.Unlock()
	if !refused {
		t.Errorf("no log line for the refused connection: %q", logs)
	}
	// A slot frees when a client leaves; the server notices it soon.
	if err := open[0].Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		_, err = roundTrip(c, []byte{opRequestIdentities})
		if cerr := c.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one of two closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Serve returns when its context ends, closing open connections; Close
// then removes the socket.
func TestServeStops(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	s, err := sshagent.ListenTemp()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sshagent.Serve(ctx, s, f.agent, sshagent.ServeConfig{}) }()
	conn, err := net.Dial("unix", s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ag := agent.NewClient(conn)
	if _, err := ag.List(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := ag.List(); err == nil {
		t.Error("an open connection was still served after Serve returned")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	gone(t, s.Path)
	gone(t, filepath.Dir(s.Path))
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// agentRun is keystorectl ssh-agent running in-process.
type agentRun struct {
	stdout, stderr *lockedBuffer
	cancel         context.CancelFunc
	done           chan int
}

// startAgent runs keystorectl with args against srv until stop (or the
// test's end) cancels its context.
func startAgent(t *testing.T, srv *clienttest.Server, args ...string) *agentRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &agentRun{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		r.done <- runCtx(ctx, args, bytes.NewReader(nil), r.stdout, r.stderr, func(k string) string {
			if k == SocketEnv {
				return srv.Socket
			}
			return ""
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("keystorectl ssh-agent did not stop")
		}
	})
	return r
}

// ready waits for the agent's first stdout line (or its exit).
func (r *agentRun) ready(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out := r.stdout.String(); strings.Contains(out, "\n") {
			return out
		}
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("keystorectl ssh-agent exited %d before serving:\n%s", code, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("keystorectl ssh-agent printed nothing in 30 s; stderr:\n%s", r.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop cancels the agent's context and returns its exit status.
func (r *agentRun) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("keystorectl ssh-agent did not stop in 30 s")
		return -1
	}
}

func agentClient(t *testing.T, sock string) agent.ExtendedAgent {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Error(err)
		}
	})
	return agent.NewClient(conn)
}

func TestSSHAgentCommand(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "web"})
	ok(t, srv.Socket, nil, "create", "ssh/login", "--alg", "ed25519")
	ok(t, srv.Socket, nil, "create", "deploy/prod", "--alg", "ed25519")
	dir := filepath.Join(shortTempDir(t), "agent")
	sock := filepath.Join(dir, "s")
	r := startAgent(t, srv, "ssh-agent", "-a", sock, "--purpose", "ssh")
	out := r.ready(t)
	want := "SSH_AUTH_SOCK=" + sock + "; export SSH_AUTH_SOCK;\nSSH_AGENT_PID="
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "; export SSH_AGENT_PID;\necho Agent pid ") {
		t.Fatalf("stdout %q, want the lines of ssh-agent starting %q", out, want)
	}
	if !strings.Contains(r.stderr.String(), "offering web/ssh/login@1\n") {
		t.Errorf("stderr %q does not name the offered key", r.stderr.String())
	}
	ag := agentClient(t, sock)
	keys, err := ag.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Comment != "web/ssh/login@1" {
		t.Fatalf("List: %v, want web/ssh/login@1 only", keys)
	}
	pubLine := ok(t, srv.Socket, nil, "pubkey", "ssh/login", "--format", "ssh").stdout
	if want := ssh.MarshalAuthorizedKey(keys[0]); !bytes.HasPrefix(pubLine, bytes.TrimSuffix(want, []byte("\n"))) {
		t.Errorf("agent key %q is not pubkey --format ssh %q", want, pubLine)
	}
	sig, err := ag.Sign(keys[0], []byte("challenge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := keys[0].Verify([]byte("challenge"), sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d after its context ended, want 0; stderr:\n%s", code, r.stderr.String())
	}
	for _, p := range []string{sock, dir} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	if !strings.Contains(r.stderr.String(), "stopped; removed "+sock) {
		t.Errorf("stderr %q does not say it stopped", r.stderr.String())
	}
}

func TestSSHAgentCommandJSON(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "web"})
	ok(t, srv.Socket, nil, "create", "ssh/login", "--alg", "ed25519")
	ok(t, srv.Socket, nil, "create", "ssh/big", "--alg", "ed448")
	r := startAgent(t, srv, "--json", "ssh-agent")
	var got sshAgentJSON
	if err := json.Unmarshal([]byte(r.ready(t)), &got); err != nil {
		t.Fatalf("stdout %q: %v", r.stdout.String(), err)
	}
	if got.PID != os.Getpid() || len(got.Keys) != 1 || got.Keys[0] != "web/ssh/login@1" || !strings.HasPrefix(filepath.Base(filepath.Dir(got.Socket)), "keystore-ssh-") {
		t.Errorf("JSON %+v: want this pid, keys [web/ssh/login@1] (no ed448), a socket in a keystore-ssh-* directory", got)
	}
	fi, err := os.Stat(filepath.Dir(got.Socket))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v, %v; want mode 0700", fi, err)
	}
	pub, err := ssh.NewPublicKey(ed25519.PublicKey(mustPub(t, srv, "ssh/login")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agentClient(t, got.Socket).Sign(pub, []byte("x")); err != nil {
		t.Errorf("Sign: %v", err)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, r.stderr.String())
	}
	if strings.Count(r.stdout.String(), "\n") != 1 {
		t.Errorf("stdout %q: want exactly one JSON line", r.stdout.String())
	}
	if _, err := os.Lstat(filepath.Dir(got.Socket)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket directory was left behind (%v)", err)
	}
}

// An operator's agent offers the operator's own app's keys by default
// (its listing holds every app's), another app's with --app.
func TestSSHAgentOperatorOwnApp(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "ops", Operator: true})
	ok(t, srv.Socket, nil, "create", "ssh/mine", "--alg", "ed25519")
	ok(t, srv.Socket, nil, "create", "web/ssh/theirs", "--alg", "ed25519")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "ops/ssh/mine@1"},
		{[]string{"--app", "web"}, "web/ssh/theirs@1"},
	} {
		r := startAgent(t, srv, append([]string{"--json", "ssh-agent"}, tc.args...)...)
		var got sshAgentJSON
		if err := json.Unmarshal([]byte(r.ready(t)), &got); err != nil {
			t.Fatalf("stdout %q: %v", r.stdout.String(), err)
		}
		if len(got.Keys) != 1 || got.Keys[0] != tc.want {
			t.Errorf("ssh-agent %q offers %v, want [%s]", tc.args, got.Keys, tc.want)
		}
		if code := r.stop(t); code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, r.stderr.String())
		}
	}
}

func mustPub(t *testing.T, srv *clienttest.Server, key string) []byte {
	t.Helper()
	c, err := client.Dial(t.Context(), srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pub, err := c.PublicKey(t.Context(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	return pub.Raw
}

// Mistakes fail at start, with the usual exit status and hint, and leave
// no socket.
func TestSSHAgentCommandErrors(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "web"})
	ok(t, srv.Socket, nil, "create", "db/rows")
	ok(t, srv.Socket, nil, "create", "sig/big", "--alg", "ed448")
	ok(t, srv.Socket, nil, "create", "ssh/login", "--alg", "ed25519")
	open := shortTempDir(t)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		exit int
		want string
	}{
		{[]string{"ssh-agent", "extra"}, exitUsage, "takes no arguments"},
		{[]string{"ssh-agent", "--key", "ssh/login", "--purpose", "ssh"}, exitUsage, "cannot be combined"},
		{[]string{"ssh-agent", "--key", "ssh/login", "--app", "web"}, exitUsage, "cannot be combined"},
		{[]string{"ssh-agent", "--max-connections", "0"}, exitUsage, "at least 1"},
		{[]string{"ssh-agent", "--key", "ssh/nope"}, 2, "(ENOENT)"},
		{[]string{"ssh-agent", "--key", "db/rows"}, 1, "not a signing key"},
		{[]string{"ssh-agent", "--key", "sig/big"}, 95, "OpenSSH has no key type for ed448"},
		{[]string{"ssh-agent", "--app", "other"}, 1, "(EPERM)"},
		{[]string{"ssh-agent", "-a", filepath.Join(open, "s")}, 1, "writable by group or others"},
		{[]string{"--socket", filepath.Join(open, "none.sock"), "ssh-agent"}, exitUnavailable, "(EUNAVAILABLE)"},
	} {
		r := fails(t, srv.Socket, nil, tc.exit, tc.args...)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("keystorectl %s: stderr %q, want %q", strings.Join(tc.args, " "), r.stderr, tc.want)
		}
		if len(r.stdout) != 0 {
			t.Errorf("keystorectl %s: stdout %q, want nothing", strings.Join(tc.args, " "), r.stdout)
		}
	}
	if entries, err := os.ReadDir(open); err != nil || len(entries) != 0 {
		t.Errorf("the refused directory holds %v (%v)", entries, err)
	}
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Error(err)
		}
	})
	return d
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/keystore-ssh-123/agent.sock": "/tmp/keystore-ssh-123/agent.sock",
		"/home/me/my agent/s":              "'/home/me/my agent/s'",
		"/tmp/it's":                        `'/tmp/it'\''s'`,
		"/tmp/$(reboot)":                   "'/tmp/$(reboot)'",
		"/tmp/a;b":                         "'/tmp/a;b'",
		"":                                 "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

package sshagent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/testbin"
)

// toolTimeout bounds every outside program a test runs.
const toolTimeout = 60 * time.Second

// need returns the paths of the tools, or skips the test naming the
// missing one and its Debian package.
func need(t *testing.T, tools ...string) map[string]string {
	t.Helper()
	pkgs := map[string]string{"ssh": "openssh-client", "ssh-add": "openssh-client", "ssh-keygen": "openssh-client", "sshd": "openssh-server", "git": "git"}
	out := map[string]string{}
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil && tool == "sshd" {
			p, err = "/usr/sbin/sshd", nil
			if _, serr := os.Stat(p); serr != nil {
				err = serr
			}
		}
		if err != nil {
			t.Skipf("%s not installed (apt-get install %s): %v", tool, pkgs[tool], err)
		}
		out[tool] = p
	}
	return out
}

// shortDir returns a new directory of mode perm with a short path (Unix
// socket paths are limited to 107 bytes), removed when the test ends.
func shortDir(t *testing.T, perm os.FileMode) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, perm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	})
	return d
}

// toolEnv is the environment of the outside tools: this process's,
// without any agent or keystored socket of the user, with a HOME of the
// test's and git configured by the test alone.
func toolEnv(t *testing.T, sock string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "SSH_AUTH_SOCK", "SSH_AGENT_PID", "KEYSTORE_SOCKET", "HOME", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY":
			continue
		}
		if strings.HasPrefix(name, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "SSH_AUTH_SOCK="+sock, "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
}

// ran is how a tool ended.
type ran struct {
	code           int
	stdout, stderr string
}

func (r ran) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs a tool within toolTimeout; setup may adjust the command.
func run(t *testing.T, env []string, stdin []byte, setup func(*exec.Cmd), name string, args ...string) ran {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if setup != nil {
		setup(cmd)
	}
	err := cmd.Run()
	r := ran{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: did not finish in %v\n%s", name, strings.Join(args, " "), toolTimeout, r)
	}
	return r
}

// runOK runs a tool and fails the test unless it exits 0.
func runOK(t *testing.T, env []string, stdin []byte, name string, args ...string) ran {
	t.Helper()
	r := run(t, env, stdin, nil, name, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
	}
	return r
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes it.
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

// agentProc is a running `keystorectl ssh-agent`.
type agentProc struct {
	cmd    *exec.Cmd
	sock   string
	pid    int
	stdout string // the lines it printed at start
	stderr *lockedBuffer
	done   chan struct{}
	err    error // from Wait, set before done is closed
}

// startAgent runs keystorectl ssh-agent args against d and waits until it
// has printed its socket. A process still running at the test's end is
// killed.
func startAgent(t *testing.T, d *daemontest.Daemon, args ...string) *agentProc {
	t.Helper()
	bin := testbin.Build(t, "github.com/nexus-os/keystored/cmd/keystorectl")
	cmd := exec.Command(bin, append([]string{"ssh-agent"}, args...)...)
	cmd.Env = append(toolEnv(t, ""), "KEYSTORE_SOCKET="+d.Socket)
	p := &agentProc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 3)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		p.err = cmd.Wait() // after stdout is drained, as StdoutPipe requires
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("killing the agent: %v", err)
			}
			<-p.done
		}
		if t.Failed() {
			t.Logf("keystorectl ssh-agent stderr:\n%s", p.stderr.String())
		}
	})
	timer := time.NewTimer(toolTimeout)
	defer timer.Stop()
	var got []string
	for len(got) < 3 {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.done
				t.Fatalf("keystorectl ssh-agent exited (%v) after printing %q:\n%s", p.err, got, p.stderr.String())
			}
			got = append(got, line)
		case <-timer.C:
			t.Fatalf("keystorectl ssh-agent printed %q in %v:\n%s", got, toolTimeout, p.stderr.String())
		}
	}
	p.stdout = strings.Join(got, "\n") + "\n"
	sock, ok := strings.CutPrefix(got[0], "SSH_AUTH_SOCK=")
	sock, ok2 := strings.CutSuffix(sock, "; export SSH_AUTH_SOCK;")
	pid, perr := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(got[1], "SSH_AGENT_PID="), "; export SSH_AGENT_PID;"))
	if !ok || !ok2 || perr != nil || pid != cmd.Process.Pid || got[2] != "echo Agent pid "+strconv.Itoa(pid)+";" {
		t.Fatalf("keystorectl ssh-agent printed %q, want the three lines of ssh-agent", got)
	}
	p.sock, p.pid = sock, pid
	return p
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and checks that the agent exits 0 and removes its
// socket (and dir, when it made it).
func (p *agentProc) stop(t *testing.T, sig syscall.Signal, dir string) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(toolTimeout):
		t.Fatalf("keystorectl ssh-agent did not exit within %v of %v", toolTimeout, sig)
	}
	if p.err != nil {
		t.Errorf("keystorectl ssh-agent after %v: %v, want exit 0\n%s", sig, p.err, p.stderr.String())
	}
	for _, path := range []string{p.sock, dir} {
		if _, err := os.Lstat(path); path != "" && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after %v (%v)", path, sig, err)
		}
	}
}

// sshLine is the authorized_keys form of a key's current version:
// "ssh-ed25519 AAAA... KEY@N".
func sshLine(t *testing.T, c *client.Client, key string) string {
	t.Helper()
	pub, err := c.PublicKey(context.Background(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ssh.NewPublicKey(ed25519.PublicKey(pub.Raw))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(sk)), "\n") + " " + pub.Ref()
}

func writeFile(t *testing.T, path, data string, perm os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenSSH(t *testing.T) {
	tools := need(t, "ssh-add", "ssh-keygen")
	d := daemontest.Start(t, daemontest.Options{})
	c, err := client.Dial(context.Background(), d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, k := range []struct {
		name string
		alg  client.Algorithm
	}{
		{"ssh/login", client.Ed25519}, {"ssh/git", client.Ed25519}, {"ssh/big", client.Ed448},
		{"deploy/prod", client.Ed25519}, {"ssh/rows", client.XChaCha20Poly1305},
	} {
		if _, err := c.Create(context.Background(), k.name, client.CreateOptions{Algorithm: k.alg}); err != nil {
			t.Fatal(err)
		}
	}
	login, git := sshLine(t, c, "ssh/login"), sshLine(t, c, "ssh/git")
	app, _, _ := strings.Cut(strings.Fields(login)[2], "/")

	top := shortDir(t, 0o755) // others may search it: the other-uid test
	agentDir := filepath.Join(top, "agent")
	p := startAgent(t, d, "-a", filepath.Join(agentDir, "agent.sock"), "--purpose", "ssh")
	env := toolEnv(t, p.sock)
	work := shortDir(t, 0o700)
	loginPub := writeFile(t, filepath.Join(work, "login.pub"), login+"\n", 0o600)
	gitPub := writeFile(t, filepath.Join(work, "git.pub"), git+"\n", 0o600)

	t.Run("socket modes", func(t *testing.T) {
		for path, want := range map[string]os.FileMode{agentDir: os.ModeDir | 0o700, p.sock: os.ModeSocket | 0o600} {
			fi, err := os.Lstat(path)
			if err != nil || fi.Mode() != want {
				t.Errorf("%s: %v (%v), want %v", path, fi.Mode(), err, want)
			}
		}
	})

	t.Run("ssh-add -L", func(t *testing.T) {
		got := strings.Split(strings.TrimSpace(runOK(t, env, nil, tools["ssh-add"], "-L").stdout), "\n")
		slices.Sort(got)
		want := []string{git, login}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("ssh-add -L:\n%s\nwant the ed25519 keys of purpose ssh, as keystorectl pubkey --format ssh prints them:\n%s",
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if l := runOK(t, env, nil, tools["ssh-add"], "-l").stdout; strings.Count(l, "(ED25519)") != 2 {
			t.Errorf("ssh-add -l:\n%s", l)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		extra := filepath.Join(work, "extra")
		runOK(t, env, nil, tools["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", "smuggled", "-f", extra)
		for _, args := range [][]string{{extra}, {"-t", "60", extra}, {"-d", loginPub}, {"-D"}} {
			if r := run(t, env, nil, nil, tools["ssh-add"], args...); r.code == 0 {
				t.Errorf("ssh-add %s succeeded: %s", strings.Join(args, " "), r)
			}
		}
		if got := strings.Count(runOK(t, env, nil, tools["ssh-add"], "-L").stdout, "\n"); got != 2 {
			t.Errorf("ssh-add -L lists %d keys after the refused changes, want 2", got)
		}
	})

	t.Run("lock", func(t *testing.T) {
		askpass := func(pass string) func(*exec.Cmd) {
			script := writeFile(t, filepath.Join(work, "askpass-"+strconv.Itoa(len(pass))), "#!/bin/sh\necho '"+pass+"'\n", 0o700)
			return func(cmd *exec.Cmd) {
				cmd.Env = append(cmd.Env, "SSH_ASKPASS="+script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none")
			}
		}
		right, wrong := askpass("correct horse"), askpass("wrong")
		if r := run(t, env, nil, right, tools["ssh-add"], "-x"); r.code != 0 {
			t.Fatalf("ssh-add -x: %s", r)
		}
		if r := run(t, env, nil, nil, tools["ssh-add"], "-L"); r.code == 0 || strings.Contains(r.stdout, "ssh-ed25519") {
			t.Errorf("ssh-add -L while locked: %s; want no identities", r)
		}
		msg := writeFile(t, filepath.Join(work, "locked-msg"), "signed while locked?", 0o600)
		if r := run(t, env, nil, nil, tools["ssh-keygen"], "-Y", "sign", "-f", loginPub, "-n", "file", msg); r.code == 0 {
			t.Errorf("ssh-keygen -Y sign while locked succeeded: %s", r)
		}
		if r := run(t, env, nil, wrong, tools["ssh-add"], "-X"); r.code == 0 {
			t.Errorf("ssh-add -X with the wrong passphrase succeeded: %s", r)
		}
		if r := run(t, env, nil, right, tools["ssh-add"], "-X"); r.code != 0 {
			t.Fatalf("ssh-add -X: %s", r)
		}
		if got := strings.Count(runOK(t, env, nil, tools["ssh-add"], "-L").stdout, "\n"); got != 2 {
			t.Errorf("ssh-add -L after unlock lists %d keys, want 2", got)
		}
	})

	t.Run("ssh-keygen -Y sign and verify", func(t *testing.T) {
		msg := writeFile(t, filepath.Join(work, "msg"), "release v1.0\n", 0o600)
		runOK(t, env, nil, tools["ssh-keygen"], "-Y", "sign", "-f", loginPub, "-n", "file", msg)
		sig, err := os.ReadFile(msg + ".sig")
		if err != nil || !bytes.HasPrefix(sig, []byte("-----BEGIN SSH SIGNATURE-----")) {
			t.Fatalf("signature file: %q, %v", sig, err)
		}
		allowed := writeFile(t, filepath.Join(work, "allowed_signers"), "release@example.com namespaces=\"file\" "+login+"\n", 0o600)
		r := runOK(t, env, []byte("release v1.0\n"), tools["ssh-keygen"], "-Y", "verify", "-f", allowed, "-I", "release@example.com", "-n", "file", "-s", msg+".sig")
		if !strings.Contains(r.stdout, `Good "file" signature for release@example.com with ED25519 key`) {
			t.Errorf("ssh-keygen -Y verify: %s", r)
		}
		if r := run(t, env, []byte("release v1.1\n"), nil, tools["ssh-keygen"], "-Y", "verify", "-f", allowed, "-I", "release@example.com", "-n", "file", "-s", msg+".sig"); r.code == 0 {
			t.Errorf("ssh-keygen -Y verify accepted another message: %s", r)
		}
	})

	t.Run("git commit -S", func(t *testing.T) {
		gitBin := need(t, "git")["git"]
		repo := filepath.Join(work, "repo")
		allowed := writeFile(t, filepath.Join(work, "git_allowed_signers"), "dev@example.com namespaces=\"git\" "+git+"\n", 0o600)
		cfg := []string{"-c", "user.name=Dev", "-c", "user.email=dev@example.com", "-c", "gpg.format=ssh",
			"-c", "user.signingkey=" + gitPub, "-c", "gpg.ssh.allowedSignersFile=" + allowed, "-c", "init.defaultBranch=main"}
		runOK(t, env, nil, gitBin, append(cfg, "init", "-q", repo)...)
		runOK(t, env, nil, gitBin, append(cfg, "-C", repo, "commit", "-q", "--allow-empty", "-S", "-m", "signed by keystored")...)
		obj := runOK(t, env, nil, gitBin, append(cfg, "-C", repo, "cat-file", "commit", "HEAD")...).stdout
		if !strings.Contains(obj, "gpgsig -----BEGIN SSH SIGNATURE-----") {
			t.Fatalf("the commit holds no SSH signature:\n%s", obj)
		}
		r := runOK(t, env, nil, gitBin, append(cfg, "-C", repo, "verify-commit", "HEAD")...)
		if !strings.Contains(r.stderr, `Good "git" signature for dev@example.com with ED25519 key`) {
			t.Errorf("git verify-commit: %s", r)
		}
		// A signer list without the key: verify-commit refuses.
		other := writeFile(t, filepath.Join(work, "other_signers"), "dev@example.com namespaces=\"git\" "+login+"\n", 0o600)
		if r := run(t, env, nil, nil, gitBin, append(cfg, "-c", "gpg.ssh.allowedSignersFile="+other, "-C", repo, "verify-commit", "HEAD")...); r.code == 0 {
			t.Errorf("git verify-commit accepted a key outside the allowed signers: %s", r)
		}
	})

	t.Run("signatures are the agent's, audited as the user", func(t *testing.T) {
		records := auditRecords(t, d, app+"/ssh/login")
		n := 0
		for _, r := range records {
			if r.Op == "keys.sign" && r.Result == "ok" {
				n++
				if r.Caller.PID != p.pid || r.Caller.UID != uint32(os.Getuid()) || r.Caller.App != app {
					t.Errorf("sign record by %+v, want pid %d (the agent), uid %d, app %s", r.Caller, p.pid, os.Getuid(), app)
				}
			}
		}
		if n == 0 {
			t.Errorf("no successful keys.sign record of %s/ssh/login among %d", app, len(records))
		}
	})

	t.Run("sshd login, then revoked", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: sshd's privilege separation (CI runs as root)")
		}
		bins := need(t, "ssh", "sshd")
		sshdLogin(t, c, bins, env, login, work)
	})

	t.Run("another uid", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to run ssh-add as another uid")
		}
		const nobody = 65534
		asNobody := func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			cmd.Dir = "/"
		}
		// The socket's modes stop it: 0600 in a 0700 directory.
		r := run(t, env, nil, asNobody, tools["ssh-add"], "-L")
		if r.code == 0 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("ssh-add -L as uid %d: %s; want a refused connection", nobody, r)
		}
		// With the modes opened (a mistake), the agent's peer check
		// stops it: no key listed, a log line naming the uid.
		for path, mode := range map[string]os.FileMode{agentDir: 0o755, p.sock: 0o666} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
		r = run(t, env, nil, asNobody, tools["ssh-add"], "-L")
		for path, mode := range map[string]os.FileMode{agentDir: 0o700, p.sock: 0o600} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
		if r.code == 0 || strings.Contains(r.stdout, "ssh-ed25519") {
			t.Errorf("ssh-add -L as uid %d through opened modes: %s; want no key", nobody, r)
		}
		if want := fmt.Sprintf("refused a connection from uid %d", nobody); !strings.Contains(p.stderr.String(), want) {
			t.Errorf("agent stderr has no %q:\n%s", want, p.stderr.String())
		}
		// The owner is still served.
		runOK(t, env, nil, tools["ssh-add"], "-L")
	})

	p.stop(t, syscall.SIGTERM, agentDir)
	if _, err := os.Stat(top); err != nil {
		t.Errorf("the agent removed %s, which it did not make: %v", top, err)
	}
}

// The default socket is a new directory below $TMPDIR; SIGINT (Ctrl-C)
// and SIGHUP (a closed terminal) stop the agent and remove both.
func TestDefaultSocketAndSignals(t *testing.T) {
	tools := need(t, "ssh-add")
	d := daemontest.Start(t, daemontest.Options{})
	c, err := client.Dial(context.Background(), d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Create(context.Background(), "ssh/one", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startAgent(t, d, "--key", "ssh/one")
			dir := filepath.Dir(p.sock)
			if !strings.HasPrefix(filepath.Base(dir), "keystore-ssh-") || filepath.Base(p.sock) != "agent.sock" {
				t.Errorf("socket %s, want $TMPDIR/keystore-ssh-*/agent.sock", p.sock)
			}
			if got := runOK(t, toolEnv(t, p.sock), nil, tools["ssh-add"], "-L").stdout; got != sshLine(t, c, "ssh/one")+"\n" {
				t.Errorf("ssh-add -L: %q", got)
			}
			p.stop(t, sig, dir)
		})
	}
}

// auditRecord is the part of an audit line the test reads.
type auditRecord struct {
	Op     string `json:"op"`
	Key    string `json:"key"`
	Result string `json:"result"`
	Caller struct {
		UID uint32 `json:"uid"`
		PID int    `json:"pid"`
		App string `json:"app"`
	} `json:"caller"`
}

// auditRecords returns the records of key in d's audit log.
func auditRecords(t *testing.T, d *daemontest.Daemon, key string) []auditRecord {
	t.Helper()
	f, err := os.Open(filepath.Join(d.State, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r.Key == key {
			out = append(out, r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sshdLogin runs a test sshd on a loopback port (its own config, host key
// and authorized_keys in work) and logs in as the current user with the
// agent, running true; then revokes ssh/login and checks the login fails.
func sshdLogin(t *testing.T, c *client.Client, bins map[string]string, env []string, login, work string) {
	t.Helper()
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		// sshd's privilege separation directory (the Debian package's
		// tmpfiles.d makes it at boot; a container has none).
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.Remove("/run/sshd"); err != nil {
				t.Errorf("removing /run/sshd: %v", err)
			}
		})
	}
	dir := filepath.Join(work, "sshd")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	runOK(t, env, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test sshd", "-f", hostKey)
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorized := writeFile(t, filepath.Join(dir, "authorized_keys"), login+"\n", 0o600)
	cfg := writeFile(t, filepath.Join(dir, "sshd_config"), strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authorized,
		"StrictModes no",
		"UsePAM no",
		"PubkeyAuthentication yes",
		"AuthenticationMethods publickey",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"PidFile none",
		"LogLevel VERBOSE",
		"",
	}, "\n"), 0o600)
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*toolTimeout)
	defer cancel()
	sshd := exec.CommandContext(ctx, bins["sshd"], "-D", "-e", "-f", cfg, "-p", strconv.Itoa(port))
	sshd.Env = env
	logs := &lockedBuffer{}
	sshd.Stdout, sshd.Stderr = logs, logs
	if err := sshd.Start(); err != nil {
		t.Fatal(err)
	}
	sshdDone := make(chan error, 1)
	go func() { sshdDone <- sshd.Wait() }()
	defer func() {
		if err := sshd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("stopping sshd: %v", err)
		}
		select {
		case <-sshdDone:
		case <-time.After(toolTimeout):
			t.Errorf("sshd did not stop within %v", toolTimeout)
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	}()
	ready := fmt.Sprintf("Server listening on 127.0.0.1 port %d", port)
	deadline := time.Now().Add(toolTimeout)
	for !strings.Contains(logs.String(), ready) {
		select {
		case err := <-sshdDone:
			sshdDone <- err
			t.Fatalf("sshd exited (%v) before listening:\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd not listening after %v:\n%s", toolTimeout, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	knownHosts := writeFile(t, filepath.Join(dir, "known_hosts"), fmt.Sprintf("[127.0.0.1]:%d %s", port, hostPub), 0o600)
	sshAs := func() ran {
		return run(t, env, nil, nil, bins["ssh"], "-F", "/dev/null", "-p", strconv.Itoa(port),
			"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts,
			"-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentityFile=none", "-o", "PreferredAuthentications=publickey",
			"-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=4",
			currentUser(t)+"@127.0.0.1", "true")
	}
	if r := sshAs(); r.code != 0 {
		t.Fatalf("ssh with the agent's key: %s", r)
	}
	if !strings.Contains(logs.String(), "Accepted publickey for "+currentUser(t)) {
		t.Errorf("sshd did not log the publickey login:\n%s", logs.String())
	}
	if _, err := c.Revoke(context.Background(), "ssh/login"); err != nil {
		t.Fatal(err)
	}
	r := sshAs()
	if r.code == 0 || !strings.Contains(r.stderr, "Permission denied (publickey)") {
		t.Errorf("ssh after the key was revoked: %s; want Permission denied (publickey)", r)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// currentUser is the login name of this process's uid.
func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.LookupId(strconv.Itoa(os.Getuid()))
	if err != nil {
		t.Skipf("uid %d has no user name for sshd to log in as: %v", os.Getuid(), err)
	}
	return u.Username
}

// TestOpenSSHECDSA: ECDSA P-256 and P-384 keys are offered as
// ecdsa-sha2-nistp256 / nistp384, listed by ssh-add -L exactly as
// keystorectl pubkey --format ssh prints them, and ssh-keygen -Y signs
// with them through the agent and verifies the result; an RSA key is not
// offered (it signs SHA-256 only, OpenSSH asks for rsa-sha2-512).
func TestOpenSSHECDSA(t *testing.T) {
	tools := need(t, "ssh-add", "ssh-keygen")
	d := daemontest.Start(t, daemontest.Options{})
	c, err := client.Dial(context.Background(), d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	lines := map[string]string{}
	for _, k := range []struct {
		name string
		alg  client.Algorithm
	}{{"ssh/ec256", client.ECDSAP256}, {"ssh/ec384", client.ECDSAP384}, {"ssh/rsa", client.RSA2048PKCS1}} {
		if _, err := c.Create(context.Background(), k.name, client.CreateOptions{Algorithm: k.alg}); err != nil {
			t.Fatal(err)
		}
		pub, err := c.PublicKey(context.Background(), k.name, 0)
		if err != nil {
			t.Fatal(err)
		}
		line, err := keyfmt.AuthorizedKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		lines[k.name] = strings.TrimSuffix(string(line), "\n")
	}
	p := startAgent(t, d, "-a", filepath.Join(shortDir(t, 0o700), "agent.sock"), "--purpose", "ssh")
	env := toolEnv(t, p.sock)
	got := strings.Split(strings.TrimSpace(runOK(t, env, nil, tools["ssh-add"], "-L").stdout), "\n")
	slices.Sort(got)
	want := []string{lines["ssh/ec256"], lines["ssh/ec384"]}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("ssh-add -L:\n%s\nwant the two ECDSA keys as keystorectl prints them:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	work := shortDir(t, 0o700)
	for _, k := range []struct{ name, label string }{{"ssh/ec256", "ECDSA"}, {"ssh/ec384", "ECDSA"}} {
		pubFile := writeFile(t, filepath.Join(work, strings.ReplaceAll(k.name, "/", "_")+".pub"), lines[k.name]+"\n", 0o600)
		msg := writeFile(t, filepath.Join(work, strings.ReplaceAll(k.name, "/", "_")+".msg"), "release v1.0\n", 0o600)
		runOK(t, env, nil, tools["ssh-keygen"], "-Y", "sign", "-f", pubFile, "-n", "file", msg)
		allowed := writeFile(t, filepath.Join(work, strings.ReplaceAll(k.name, "/", "_")+".allowed"), "release@example.com namespaces=\"file\" "+lines[k.name]+"\n", 0o600)
		r := runOK(t, env, []byte("release v1.0\n"), tools["ssh-keygen"], "-Y", "verify", "-f", allowed, "-I", "release@example.com", "-n", "file", "-s", msg+".sig")
		if !strings.Contains(r.stdout, `Good "file" signature for release@example.com with `+k.label+` key`) {
			t.Errorf("%s: ssh-keygen -Y verify: %s", k.name, r)
		}
		if r := run(t, env, []byte("release v1.1\n"), nil, tools["ssh-keygen"], "-Y", "verify", "-f", allowed, "-I", "release@example.com", "-n", "file", "-s", msg+".sig"); r.code == 0 {
			t.Errorf("%s: ssh-keygen -Y verify accepted another message: %s", k.name, r)
		}
	}
}

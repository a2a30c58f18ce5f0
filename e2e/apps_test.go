package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/e2e/internal/probe"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// The uid and group of the second app of twoApps.
const (
	bobUID  = 4311
	appsGID = 4312 // the socket group, bob's primary group
)

// twoApps is a daemon serving two apps: this process (uid 0) is app
// "alice", uid bobUID app "bob"; nobody is an operator. Bob's calls are
// made by a copy of this test binary run as a probe under his uid (raw
// keystore.v1 calls, so that a test can hand him alice's import token), or
// by keystorectl under his uid.
type twoApps struct {
	d     *daemontest.Daemon
	probe string // the probe binary, executable by bob
}

// startTwoApps starts the daemon of twoApps, or skips without root (the
// other app is another uid: SysProcAttr.Credential).
func startTwoApps(t *testing.T) *twoApps {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the other app is another uid (SysProcAttr.Credential); run the tests as root")
	}
	base, err := os.MkdirTemp("", "ks2apps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(base); err != nil {
			t.Error(err)
		}
	})
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "keystored.toml")
	body := "unmapped = \"deny\"\noperators = []\nsocket_group = \"4312\"\n[apps]\n0 = \"alice\"\n4311 = \"bob\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, daemontest.Options{Socket: filepath.Join(base, "run", "ks.sock"), Args: []string{"--config", cfg}})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "probe")
	copyExecutable(t, exe, bin)
	keystorectl(t) // built into a directory bob may read
	return &twoApps{d: d, probe: bin}
}

// asBob sets up cmd to run as bob.
func asBob(cmd *exec.Cmd) {
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: bobUID, Gid: appsGID, Groups: []uint32{appsGID}}}
}

// bob makes calls as bob and returns their results.
func (a *twoApps) bob(t *testing.T, calls ...probe.Call) []probe.Result {
	t.Helper()
	in, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(a.probe)
	asBob(cmd)
	cmd.Env = []string{probe.EnvSocket + "=" + a.d.Socket}
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("probe as uid %d: %v\n%s", bobUID, err, stderr.String())
	}
	var results []probe.Result
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil || len(results) != len(calls) {
		t.Fatalf("probe as uid %d: %d results for %d calls, %v\n%s", bobUID, len(results), len(calls), err, stderr.String())
	}
	return results
}

// ctlBob runs keystorectl as bob and checks its exit status and, for a
// failure, that its error line names reason.
func (a *twoApps) ctlBob(t *testing.T, stdin []byte, want int, reason string, args ...string) result {
	t.Helper()
	r := ctlAs(t, a.d, asBob, stdin, args...)
	if r.code != want {
		t.Fatalf("bob: keystorectl %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, want, r.stderr)
	}
	if want != 0 && !strings.Contains(r.stderr, "("+reason+")") {
		t.Errorf("bob: keystorectl %s: stderr %q, want reason %s", strings.Join(args, " "), r.stderr, reason)
	}
	return r
}

// copyExecutable copies src to dst, mode 0755.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := in.Close(); err != nil {
			t.Error(err)
		}
	}()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
}

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/internal/daemontest"
)

// keystorectl processes under two other uids each use only their own app's
// keys: the other app's key is EPERM (exit 1), for signing and for reading.
// (cmd/keystored's TestIdentityRealUIDs covers the API in depth; this is
// the CLI's view.)
func TestIdentityCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run keystorectl under other uids (SysProcAttr.Credential); run the tests as root")
	}
	const gid = 4243 // the socket group, the clients' primary group
	base, err := os.MkdirTemp("", "ksid")
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
	if err := os.WriteFile(cfg, []byte("unmapped = \"deny\"\noperators = [0]\nsocket_group = \"4243\"\n[apps]\n1001 = \"alice\"\n1002 = \"bob\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, daemontest.Options{Socket: filepath.Join(base, "run", "ks.sock"), Args: []string{"--config", cfg}})
	keystorectl(t)

	as := func(uid uint32, stdin string, want int, args ...string) result {
		t.Helper()
		r := ctlAs(t, d, func(cmd *exec.Cmd) {
			cmd.Dir = "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		}, []byte(stdin), args...)
		if r.code != want {
			t.Fatalf("uid %d: keystorectl %s: exit %d, want %d\n%s", uid, strings.Join(args, " "), r.code, want, r.stderr)
		}
		return r
	}
	if r := as(1001, "", 0, "create", "sig/a", "--alg", "ed25519"); string(r.stdout) != "created alice/sig/a (ed25519, version 1)\n" {
		t.Errorf("alice create: %q", r.stdout)
	}
	as(1002, "", 0, "create", "sig/b", "--alg", "ed25519")
	as(1001, "m", 0, "sign", "sig/a")
	as(1001, "m", 0, "sign", "alice/sig/a")

	r := as(1002, "m", 1, "sign", "alice/sig/a")
	if !strings.Contains(r.stderr, "(EPERM)\nhint: this key belongs to another app") {
		t.Errorf("bob signing alice's key: stderr %q", r.stderr)
	}
	as(1002, "", 1, "show", "alice/sig/a")
	as(1002, "", 1, "pubkey", "alice/sig/a")
	as(1001, "", 1, "revoke", "bob/sig/b")
	// "Not yours" and "does not exist" look the same to an app.
	as(1002, "", 1, "show", "alice/sig/none")
	if r := as(1002, "", 0, "list"); strings.Contains(string(r.stdout), "alice") || !strings.Contains(string(r.stdout), "bob/sig/b") {
		t.Errorf("bob's list:\n%s", r.stdout)
	}
	// An unmapped uid is refused everything.
	as(1003, "", 1, "list")
	// The operator sees both.
	if r := ctlOK(t, d, nil, "list"); !strings.Contains(string(r.stdout), "alice/sig/a") || !strings.Contains(string(r.stdout), "bob/sig/b") {
		t.Errorf("operator list:\n%s", r.stdout)
	}
}

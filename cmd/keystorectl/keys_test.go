package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
)

func TestKeyCommands(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "web"}).Socket

	r := ok(t, s, nil, "create", "signing/release", "--alg", "ed25519")
	if got, want := string(r.stdout), "created web/signing/release (ed25519, version 1)\n"; got != want {
		t.Errorf("create: %q, want %q", got, want)
	}
	r = ok(t, s, nil, "--json", "create", "db/secrets")
	m := decode(t, r)
	if m["id"] != "web/db/secrets" || m["algorithm"] != "xchacha20-poly1305" || m["state"] != "active" || m["current_version"] != 1.0 || m["insecure"] != false {
		t.Errorf("create --json = %v", m)
	}
	if uses, _ := m["uses"].([]any); len(uses) != 1 || uses[0] != "decrypt" {
		t.Errorf("create --json uses = %v", m["uses"])
	}
	vs, _ := m["versions"].([]any)
	if len(vs) != 1 || vs[0].(map[string]any)["state"] != "primary" {
		t.Errorf("create --json versions = %v", m["versions"])
	}
	if p, _ := m["policy"].(map[string]any); p["min_decryption_version"] != 0.0 || p["rotation_period_seconds"] != 0.0 {
		t.Errorf("create --json policy = %v", m["policy"])
	}
	fails(t, s, nil, 114, "create", "signing/release", "--alg", "ed25519")
	r = fails(t, s, nil, 95, "create", "p/k", "--alg", "rsa")
	if !strings.Contains(r.stderr, "hint: rsa is not an algorithm keystored knows; algorithms: ed25519,") {
		t.Errorf("create --alg rsa: stderr %q lacks the hint", r.stderr)
	}
	fails(t, s, nil, 22, "create", "Bad/Name")
	fails(t, s, nil, 1, "create", "other/p/k")
	fails(t, s, nil, exitUsage, "create")
	fails(t, s, nil, exitUsage, "create", "--rotation-period", "-1s", "p/x")

	r = ok(t, s, nil, "list")
	for _, want := range []string{"KEY", "web/db/secrets", "web/signing/release", "ed25519", "active"} {
		if !strings.Contains(string(r.stdout), want) {
			t.Errorf("list output lacks %q:\n%s", want, r.stdout)
		}
	}
	m = decode(t, ok(t, s, nil, "list", "--json"))
	if keys, _ := m["keys"].([]any); len(keys) != 2 {
		t.Errorf("list --json keys = %v", m["keys"])
	}
	if u, ok := m["unreadable"].([]any); !ok || len(u) != 0 {
		t.Errorf("list --json unreadable = %v, want []", m["unreadable"])
	}

	r = ok(t, s, nil, "show", "signing/release")
	for _, want := range []string{"key", "web/signing/release", "algorithm", "ed25519", "version 1", "primary"} {
		if !strings.Contains(string(r.stdout), want) {
			t.Errorf("show output lacks %q:\n%s", want, r.stdout)
		}
	}
	fails(t, s, nil, 2, "show", "nope/missing")
	fails(t, s, nil, exitUsage, "show")

	r = ok(t, s, nil, "rotate", "signing/release")
	if got := string(r.stdout); got != "rotated web/signing/release: version 2 is primary\n" {
		t.Errorf("rotate: %q", got)
	}
	m = decode(t, ok(t, s, nil, "--json", "rotate", "signing/release"))
	if m["current_version"] != 3.0 {
		t.Errorf("rotate --json current_version = %v, want 3", m["current_version"])
	}
	r = ok(t, s, nil, "revoke", "signing/release@1")
	if got := string(r.stdout); got != "revoked web/signing/release@1\n" {
		t.Errorf("revoke @1: %q", got)
	}
	r = fails(t, s, nil, 1, "revoke", "signing/release@3")
	if !strings.Contains(r.stderr, "hint: the primary version cannot be revoked alone") {
		t.Errorf("revoke primary: stderr %q lacks the hint", r.stderr)
	}
	r = fails(t, s, nil, 1, "destroy", "signing/release")
	if !strings.Contains(r.stderr, "hint: only a revoked key can be destroyed") {
		t.Errorf("destroy active: stderr %q lacks the hint", r.stderr)
	}
	r = ok(t, s, nil, "revoke", "signing/release")
	if !strings.HasPrefix(string(r.stdout), "revoked web/signing/release (every version)") {
		t.Errorf("revoke: %q", r.stdout)
	}
	r = fails(t, s, nil, 128, "rotate", "signing/release")
	if !strings.Contains(r.stderr, "(EKEYREVOKED)\nhint: the key is revoked; create a new key\n") {
		t.Errorf("rotate revoked: stderr %q", r.stderr)
	}
	fails(t, s, nil, 114, "revoke", "signing/release")
	m = decode(t, ok(t, s, nil, "--json", "destroy", "signing/release"))
	if m["state"] != "destroyed" || m["destroyed"] == nil {
		t.Errorf("destroy --json = %v", m)
	}
	fails(t, s, nil, 114, "destroy", "signing/release")
}

func TestListUnreadableAndEmpty(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	r := ok(t, srv.Socket, nil, "list")
	if len(r.stdout) != 0 || !strings.Contains(r.stderr, "no keys") {
		t.Errorf("empty list: stdout %q stderr %q", r.stdout, r.stderr)
	}
	ok(t, srv.Socket, nil, "create", "p/a")
	ok(t, srv.Socket, nil, "create", "p/b")
	srv.SetUnreadable("app/p/b")
	r = ok(t, srv.Socket, nil, "list")
	if !strings.Contains(string(r.stdout), "app/p/b") || !strings.Contains(r.stderr, "app/p/b is unreadable") {
		t.Errorf("list with an unreadable key: stdout %q stderr %q", r.stdout, r.stderr)
	}
	m := decode(t, ok(t, srv.Socket, nil, "--json", "list"))
	u, _ := m["unreadable"].([]any)
	if len(u) != 1 {
		t.Fatalf("unreadable = %v", m["unreadable"])
	}
	e := u[0].(map[string]any)
	if e["id"] != "app/p/b" || e["error"].(map[string]any)["reason"] != "EIO" {
		t.Errorf("unreadable[0] = %v", e)
	}
}

func TestSocketResolution(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	missing := filepath.Join(t.TempDir(), "none.sock")

	// --socket wins over the environment.
	ok(t, missing, nil, "--socket", srv.Socket, "list")
	// The environment is used without --socket.
	r := fails(t, missing, nil, 69, "list")
	if !strings.Contains(r.stderr, missing) || !strings.Contains(r.stderr, "hint: is keystored running? start it with: go run ./cmd/keystored") {
		t.Errorf("unavailable: stderr %q", r.stderr)
	}
	// Neither: keystore-state/keystored.sock in the working directory.
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("keystore-state", 0o700); err != nil {
		t.Fatal(err)
	}
	r = fails(t, "", nil, 69, "list")
	if !strings.Contains(r.stderr, DefaultSocket) {
		t.Errorf("default socket: stderr %q does not name %s", r.stderr, DefaultSocket)
	}
	if err := os.Symlink(srv.Socket, DefaultSocket); err != nil {
		t.Fatal(err)
	}
	ok(t, "", nil, "list")
}

func TestInsecureWarning(t *testing.T) {
	s := startDaemon(t, clienttest.Options{Insecure: true}).Socket
	r := ok(t, s, nil, "create", "p/k", "--alg", "ed25519")
	if !strings.Contains(r.stderr, "INSECURE") {
		t.Errorf("stderr %q lacks the INSECURE warning", r.stderr)
	}
	m := decode(t, ok(t, s, nil, "--json", "show", "p/k"))
	if m["insecure"] != true {
		t.Errorf("show --json insecure = %v", m["insecure"])
	}
	r = ok(t, s, nil, "show", "p/k")
	if !strings.Contains(string(r.stdout), "INSECURE") {
		t.Errorf("show lacks the insecure line:\n%s", r.stdout)
	}
	s2 := startDaemon(t, clienttest.Options{}).Socket
	if r := ok(t, s2, nil, "create", "p/k"); strings.Contains(r.stderr, "INSECURE") {
		t.Errorf("secure daemon: stderr %q warns", r.stderr)
	}
}

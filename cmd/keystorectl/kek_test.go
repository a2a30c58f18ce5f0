package main

import (
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
)

// TestKEKRotate: an operator's "kek rotate" rewraps every key under a new
// KEK ("kek status" shows it), keys still sign, and the JSON output
// carries the fingerprints and counts; an app is refused (EPERM, exit 1)
// with a hint, as is the insecure provider (ENOTSUP, exit 95).
func TestKEKRotate(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "ops", Operator: true})
	ok(t, s.Socket, nil, "create", "sig/a", "--alg", "ed25519")
	ok(t, s.Socket, nil, "create", "ops/box/b", "--alg", "xchacha20-poly1305")
	before := decode(t, ok(t, s.Socket, nil, "--json", "kek", "status"))
	cur, _ := before["current"].(string)
	if len(cur) != 16 || before["pending"] != "" || before["rotatable"] != true {
		t.Fatalf("status before = %v", before)
	}
	r := ok(t, s.Socket, nil, "kek", "rotate")
	if !strings.HasPrefix(string(r.stdout), "rotated KEK "+cur+" -> ") || !strings.Contains(string(r.stdout), ": 2 keys, 2 handles rewrapped") {
		t.Fatalf("kek rotate printed %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "back up the new KEK file") {
		t.Errorf("kek rotate does not tell to back up the new KEK: %q", r.stderr)
	}
	after := decode(t, ok(t, s.Socket, nil, "--json", "kek", "status"))
	if after["current"] == cur || after["pending"] != "" {
		t.Fatalf("status after = %v", after)
	}
	ok(t, s.Socket, []byte("m"), "sign", "sig/a")
	j := decode(t, ok(t, s.Socket, nil, "--json", "kek", "rotate"))
	if j["from"] != after["current"] || j["rewrapped"] != float64(2) || j["keys"] != float64(2) {
		t.Fatalf("kek rotate --json = %v", j)
	}
	human := string(ok(t, s.Socket, nil, "kek", "status").stdout)
	if !strings.Contains(human, "current:   "+j["to"].(string)) || !strings.Contains(human, "pending:   (none)") {
		t.Errorf("kek status printed %q", human)
	}

	app := startDaemon(t, clienttest.Options{App: "app"})
	f := fails(t, app.Socket, nil, 1, "kek", "rotate")
	if !strings.Contains(f.stderr, "hint: only an operator") {
		t.Errorf("refusal of an app has no hint: %q", f.stderr)
	}
	fails(t, app.Socket, nil, 1, "kek", "status")

	insecure := startDaemon(t, clienttest.Options{App: "ops", Operator: true, Insecure: true})
	f = fails(t, insecure.Socket, nil, 95, "kek", "rotate")
	if !strings.Contains(f.stderr, "cannot rotate") {
		t.Errorf("ENOTSUP refusal: %q", f.stderr)
	}
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core"
)

func TestSweepCommand(t *testing.T) {
	d := startDaemon(t, clienttest.Options{App: "ops", Operator: true})
	s := d.Socket
	ok(t, s, nil, "create", "a/p/one", "--alg", "ed25519", "--rotation-period", "1h")
	ok(t, s, nil, "create", "a/p/manual", "--alg", "ed25519")
	ok(t, s, nil, "create", "b/p/two", "--rotation-period", "1h")
	r := ok(t, s, nil, "sweep")
	if got, want := string(r.stdout), "swept 3 keys: 0 rotated, 0 failed\n"; got != want {
		t.Errorf("sweep before any key is due: %q, want %q", got, want)
	}
	d.Advance(time.Hour)
	r = ok(t, s, nil, "sweep", "--limit", "1")
	want := "rotated a/p/one: version 2 is primary\nrotated b/p/two: version 2 is primary\nswept 3 keys: 2 rotated, 0 failed\n"
	if got := string(r.stdout); got != want {
		t.Errorf("sweep --limit 1 (three calls): %q, want %q", got, want)
	}
	d.Advance(time.Hour)
	m := decode(t, ok(t, s, nil, "--json", "sweep"))
	rotated, _ := m["rotated"].([]any)
	if m["examined"] != 3.0 || len(rotated) != 2 || rotated[0].(map[string]any)["key"] != "a/p/one" || rotated[0].(map[string]any)["version"] != 3.0 {
		t.Errorf("sweep --json = %v", m)
	}
	if f, ok := m["failed"].([]any); !ok || len(f) != 0 {
		t.Errorf("sweep --json failed = %v, want []", m["failed"])
	}
	fails(t, s, nil, exitUsage, "sweep", "--limit", "1001")
	fails(t, s, nil, exitUsage, "sweep", "extra")

	app := startDaemon(t, clienttest.Options{App: "web"}).Socket
	r = fails(t, app, nil, 1, "sweep")
	if !strings.Contains(r.stderr, "hint: only operators may sweep") {
		t.Errorf("sweep by an app: stderr %q lacks the hint", r.stderr)
	}
}

// A key that fails to rotate is reported and sets the exit status; the
// others rotate.
func TestSweepCommandFailures(t *testing.T) {
	d := startDaemon(t, clienttest.Options{App: "ops", Operator: true, Quotas: core.Quotas{Default: core.Quota{VersionsPerKey: 2}}})
	s := d.Socket
	ok(t, s, nil, "create", "a/p/full", "--alg", "ed25519", "--rotation-period", "1h")
	ok(t, s, nil, "rotate", "a/p/full")
	ok(t, s, nil, "create", "a/p/ok", "--alg", "ed25519", "--rotation-period", "1h")
	d.Advance(time.Hour)
	r := fails(t, s, nil, 122, "sweep")
	if got, want := string(r.stdout), "rotated a/p/ok: version 2 is primary\nswept 2 keys: 1 rotated, 1 failed\n"; got != want {
		t.Errorf("sweep stdout %q, want %q", got, want)
	}
	if !strings.Contains(r.stderr, "keystorectl: warning: a/p/full did not rotate") || !strings.Contains(r.stderr, "(EDQUOT)") {
		t.Errorf("sweep stderr %q lacks the failure", r.stderr)
	}
	// --json: one object, the error, carrying the result.
	ok(t, s, nil, "set-policy", "a/p/ok", "--rotation-period", "0")
	m := decode(t, fails(t, s, nil, 122, "--json", "sweep"))
	e, _ := m["error"].(map[string]any)
	failed, _ := e["failed"].([]any)
	if e["reason"] != "EDQUOT" || e["examined"] != 2.0 || len(failed) != 1 || failed[0].(map[string]any)["key"] != "a/p/full" {
		t.Errorf("sweep --json with a failure = %v", m)
	}
}

// show says when a key is due for rotation, and that it is overdue.
func TestShowRotationDue(t *testing.T) {
	d := startDaemon(t, clienttest.Options{App: "web"})
	s := d.Socket
	ok(t, s, nil, "create", "p/k", "--alg", "ed25519", "--rotation-period", "1h")
	ok(t, s, nil, "create", "p/n", "--alg", "ed25519")
	r := ok(t, s, nil, "show", "p/k")
	if !strings.Contains(string(r.stdout), "rotation due") || !strings.Contains(string(r.stdout), "2026-01-01T01:00:00Z\n") {
		t.Errorf("show:\n%s\nwant a line: rotation due 2026-01-01T01:00:00Z", r.stdout)
	}
	if strings.Contains(string(r.stdout), "overdue") {
		t.Errorf("show before the due time says overdue:\n%s", r.stdout)
	}
	m := decode(t, ok(t, s, nil, "--json", "show", "p/k"))
	if m["rotation_due"] != "2026-01-01T01:00:00Z" || m["rotation_overdue"] != nil {
		t.Errorf("show --json: rotation_due %v, rotation_overdue %v", m["rotation_due"], m["rotation_overdue"])
	}
	d.Advance(time.Hour)
	r = ok(t, s, nil, "show", "p/k")
	if !strings.Contains(string(r.stdout), "2026-01-01T01:00:00Z (overdue") {
		t.Errorf("show after the due time:\n%s\nwant it overdue", r.stdout)
	}
	if m := decode(t, ok(t, s, nil, "--json", "show", "p/k")); m["rotation_overdue"] != true {
		t.Errorf("show --json after the due time: rotation_overdue %v", m["rotation_overdue"])
	}
	r = ok(t, s, nil, "show", "p/n")
	if strings.Contains(string(r.stdout), "rotation due") {
		t.Errorf("show of a key without a period:\n%s", r.stdout)
	}
	if m := decode(t, ok(t, s, nil, "--json", "show", "p/n")); m["rotation_due"] != nil {
		t.Errorf("show --json of a key without a period: rotation_due %v", m["rotation_due"])
	}
}

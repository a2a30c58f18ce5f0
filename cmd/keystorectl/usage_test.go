package main

import (
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core"
)

func TestUsageCommand(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "web", Quotas: core.Quotas{Default: core.Quota{Keys: 10}}}).Socket
	ok(t, s, nil, "create", "p/a", "--alg", "ed25519")
	ok(t, s, nil, "create", "p/gone", "--alg", "ed25519")
	ok(t, s, nil, "revoke", "p/gone")
	ok(t, s, nil, "destroy", "p/gone")
	ok(t, s, []byte("hello"), "store", "put", "v")
	r := ok(t, s, nil, "usage")
	for _, want := range []string{
		"app               web\n",
		"keys              2 of 10       (8 left; revoked and destroyed keys count)\n",
		"versions per key  at most 100   (a rotation adds one",
		"store values      1 of 1024     (1023 left)\n",
		"store bytes       5 of 4194304  (4194299 left)\n",
	} {
		if !strings.Contains(string(r.stdout), want) {
			t.Errorf("usage output lacks %q:\n%s", want, r.stdout)
		}
	}
	m := decode(t, ok(t, s, nil, "--json", "usage"))
	if m["app"] != "web" || m["keys"] != 2.0 || m["keys_limit"] != 10.0 || m["versions_per_key_limit"] != 100.0 ||
		m["store_values"] != 1.0 || m["store_values_limit"] != 1024.0 || m["store_bytes"] != 5.0 || m["store_bytes_limit"] != 4194304.0 {
		t.Errorf("usage --json = %v", m)
	}
	fails(t, s, nil, 1, "usage", "--app", "other")
	fails(t, s, nil, 22, "usage", "--app", "Bad App")
	fails(t, s, nil, exitUsage, "usage", "extra")

	o := startDaemon(t, clienttest.Options{App: "ops", Operator: true}).Socket
	ok(t, o, nil, "create", "billing/p/k", "--alg", "ed25519")
	if m := decode(t, ok(t, o, nil, "--json", "usage", "--app", "billing")); m["app"] != "billing" || m["keys"] != 1.0 {
		t.Errorf("operator usage --app billing = %v", m)
	}
}

// show prints each decrypt version's seal budget, used and left.
func TestShowSealBudget(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "web"}).Socket
	ok(t, s, nil, "create", "box/k", "--alg", "aes-256-gcm")
	for range 2 {
		ok(t, s, []byte("x"), "seal", "box/k", "--out", t.TempDir()+"/sealed")
	}
	r := ok(t, s, nil, "show", "box/k")
	if !strings.Contains(string(r.stdout), "seals 2 of 4294967296 (4294967294 left)") {
		t.Errorf("show of a decrypt key:\n%s\nwant its seal budget", r.stdout)
	}
	m := decode(t, ok(t, s, nil, "--json", "show", "box/k"))
	v := m["versions"].([]any)[0].(map[string]any)
	if v["seals"] != 2.0 || v["seal_limit"] != 4294967296.0 {
		t.Errorf("show --json version 1 = %v", v)
	}
	ok(t, s, nil, "create", "sig/k", "--alg", "ed25519")
	if r := ok(t, s, nil, "show", "sig/k"); strings.Contains(string(r.stdout), "seals") {
		t.Errorf("show of a sign key mentions seals:\n%s", r.stdout)
	}
	v = decode(t, ok(t, s, nil, "--json", "show", "sig/k"))["versions"].([]any)[0].(map[string]any)
	if _, has := v["seals"]; has {
		t.Errorf("show --json of a sign key has seals: %v", v)
	}
}

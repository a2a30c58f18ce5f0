package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

// exitCodes is the documented table (docs/cli.md).
var exitCodes = map[provider.Code]int{
	provider.EPERM:        1,
	provider.ENOENT:       2,
	provider.EIO:          5,
	provider.EINVAL:       22,
	provider.EBADMSG:      74,
	provider.EMSGSIZE:     90,
	provider.ENOTSUP:      95,
	provider.EALREADY:     114,
	provider.EKEYREVOKED:  128,
	provider.EUNAVAILABLE: 69,
	provider.EDQUOT:       122,
	provider.EKEYEXPIRED:  127,
}

func TestExitCodeEveryCode(t *testing.T) {
	if len(exitCodes) != len(provider.Codes()) {
		t.Fatalf("table has %d codes, provider has %d", len(exitCodes), len(provider.Codes()))
	}
	srv := startDaemon(t, clienttest.Options{})
	for code, want := range exitCodes {
		srv.SetFault(func(string) error {
			return &provider.Error{Code: code, Op: "sign", Key: "app/p/k", Msg: "injected"}
		})
		r := ctl(t, srv.Socket, []byte("m"), "sign", "p/k")
		if r.code != want {
			t.Errorf("%v: exit %d, want %d", code, r.code, want)
		}
		line, rest, _ := strings.Cut(r.stderr, "\n")
		if wantLine := "keystorectl: error: sign app/p/k: injected (" + code.String() + ")"; line != wantLine {
			t.Errorf("%v: stderr line %q, want %q", code, line, wantLine)
		}
		if !strings.HasPrefix(rest, "hint: ") {
			t.Errorf("%v: no hint line after the error: %q", code, rest)
		}
		if len(r.stdout) != 0 {
			t.Errorf("%v: failed sign wrote %q to stdout", code, r.stdout)
		}

		m := decode(t, ctl(t, srv.Socket, []byte("m"), "--json", "sign", "p/k"))
		e, _ := m["error"].(map[string]any)
		if len(m) != 1 || e["reason"] != code.String() || e["exit"] != float64(want) || e["message"] != "sign app/p/k: injected ("+code.String()+")" || e["hint"] == "" {
			t.Errorf("%v: --json error = %v", code, m)
		}
	}
}

func TestHints(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	tests := []struct {
		code provider.Code
		hint string
	}{
		{provider.EKEYREVOKED, "hint: the key is revoked; create a new key"},
		{provider.EPERM, "hint: this key belongs to another app, or you are not allowed"},
		{provider.EMSGSIZE, "hint: sign accepts a message of at most 65536 bytes (64 KiB)"},
		{provider.EDQUOT, "hint: your app's quota is used up"},
	}
	for _, tt := range tests {
		srv.SetFault(func(string) error { return provider.Errorf(tt.code, "x") })
		if r := ctl(t, srv.Socket, nil, "sign", "p/k"); !strings.Contains(r.stderr, tt.hint) {
			t.Errorf("%v: stderr %q lacks %q", tt.code, r.stderr, tt.hint)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	s := startDaemon(t, clienttest.Options{}).Socket
	for _, args := range [][]string{
		{"bogus"},
		{"create"},
		{"create", "a/b", "c/d"},
		{"sign"},
		{"list", "extra"},
		{"--nope", "list"},
		{"verify", "p/k@1"},
		{"pubkey", "p/k", "--format", "xml"},
		{"audit", "verify", "one", "two"},
		{"audit", "verify", "--state", "x", "file"},
	} {
		r := fails(t, s, nil, exitUsage, args...)
		if !strings.Contains(r.stderr, "\nhint: see: keystorectl") {
			t.Errorf("%v: stderr %q lacks the help hint", args, r.stderr)
		}
	}
	m := decode(t, ctl(t, s, nil, "--json", "bogus"))
	if e := m["error"].(map[string]any); e["reason"] != "usage" || e["exit"] != float64(exitUsage) {
		t.Errorf("--json usage error = %v", m)
	}
}

func TestHelpAndCompletion(t *testing.T) {
	r := ok(t, "", nil, "--help")
	for _, cmd := range []string{"create", "list", "show", "rotate", "revoke", "destroy", "pubkey", "sign", "verify", "seal", "unseal", "rewrap", "datakey", "encrypt", "decrypt", "hpke-encrypt", "hpke-decrypt", "import", "batch", "set-policy", "store", "anchors", "audit", "completion"} {
		if !strings.Contains(string(r.stdout), "  "+cmd+" ") {
			t.Errorf("--help does not list %s", cmd)
		}
	}
	for shell, want := range map[string]string{"bash": "__start_keystorectl", "zsh": "#compdef keystorectl", "fish": "complete -c keystorectl"} {
		r := ok(t, "", nil, "completion", shell)
		if !strings.Contains(string(r.stdout), want) {
			t.Errorf("completion %s lacks %q", shell, want)
		}
	}
	// Cobra's hidden __complete command drives shell completion.
	r = ok(t, "", nil, "__complete", "create", "p/k", "--alg", "")
	if !strings.Contains(string(r.stdout), "ed25519\n") || !strings.Contains(string(r.stdout), "xchacha20-poly1305\n") {
		t.Errorf("--alg completion = %q", r.stdout)
	}
	srv := startDaemon(t, clienttest.Options{})
	ok(t, srv.Socket, nil, "create", "p/k", "--alg", "ed25519")
	r = ok(t, srv.Socket, nil, "__complete", "sign", "")
	if !strings.Contains(string(r.stdout), "app/p/k\ted25519 active") {
		t.Errorf("KEY completion = %q", r.stdout)
	}
	// The short form of the caller's own keys is offered too.
	if !strings.Contains(string(r.stdout), "\np/k\ted25519 active") {
		t.Errorf("KEY completion lacks the short form p/k: %q", r.stdout)
	}
	// An operator sees every app's keys; the short form only for its own.
	op := startDaemon(t, clienttest.Options{App: "ops", Operator: true})
	ok(t, op.Socket, nil, "create", "web/p/k", "--alg", "ed25519")
	ok(t, op.Socket, nil, "create", "p/own", "--alg", "ed25519")
	r = ok(t, op.Socket, nil, "__complete", "sign", "")
	if out := string(r.stdout); !strings.Contains(out, "web/p/k\t") || !strings.Contains(out, "ops/p/own\t") ||
		!strings.Contains(out, "\np/own\t") || strings.Contains(out, "\np/k\t") {
		t.Errorf("operator's KEY completion = %q", out)
	}
}

// --version prints one line, "keystorectl <version> (<revision>, <go>)",
// without a daemon.
func TestVersion(t *testing.T) {
	r := ok(t, filepath.Join(t.TempDir(), "no.sock"), nil, "--version")
	if out := string(r.stdout); !strings.HasPrefix(out, "keystorectl dev (") || strings.Count(out, "\n") != 1 {
		t.Fatalf("--version printed %q", out)
	}
}

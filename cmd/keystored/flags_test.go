package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlagsSocketDefaults(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "keystore-state/keystored.sock"},
		{[]string{"--state", "/var/lib/ks"}, nil, "/var/lib/ks/keystored.sock"},
		{nil, map[string]string{"KEYSTORE_SOCKET": "/run/ks/s.sock"}, "/run/ks/s.sock"},
		{[]string{"--socket", "/tmp/x.sock"}, map[string]string{"KEYSTORE_SOCKET": "/run/ks/s.sock"}, "/tmp/x.sock"},
	}
	for _, c := range cases {
		o, err := parseFlags(c.args, &bytes.Buffer{}, env(c.env))
		if err != nil {
			t.Fatal(err)
		}
		if o.socket != c.want {
			t.Errorf("%v %v: socket %q, want %q", c.args, c.env, o.socket, c.want)
		}
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--log-format", "xml"},
		{"--log-level", "loud"},
		{"--metrics-addr", "host:port"},
		{"--state", ""},
		{"extra"},
		{"--no-such-flag"},
		{"--kek-file", "/k", "--kek-passphrase-file", "/pw"},
		{"--kek-passphrase-file", "/pw", "--kek-passphrase-credential", "pw"},
		{"--kek-passphrase-credential", "a/b"},
		{"--kek-file", "/k", "--insecure-test-seed", "00", "--i-understand-this-is-insecure"},
		{"--kek-file", "/k", "--provider-plugin", "/bin/true", "--provider-sha256", "ab"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}, env(nil)); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestMetricsAddr(t *testing.T) {
	for in, want := range map[string]string{
		"9464":           "127.0.0.1:9464",
		":9464":          "127.0.0.1:9464",
		"0.0.0.0:9464":   "0.0.0.0:9464",
		"[::1]:9464":     "[::1]:9464",
		"localhost:9000": "localhost:9000",
		":0":             "127.0.0.1:0",
	} {
		got, err := metricsAddr(in)
		if err != nil || got != want {
			t.Errorf("metricsAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", ":http", ":65536", ":-1", "a:b:c"} {
		if got, err := metricsAddr(bad); err == nil {
			t.Errorf("metricsAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// TestRunUsageErrors: the exit status of usage errors is 2, with the
// message on stderr.
func TestRunUsageErrors(t *testing.T) {
	t.Run("insecure without the acknowledgement", func(t *testing.T) {
		var out, errb bytes.Buffer
		state := filepath.Join(t.TempDir(), "state")
		if code := run([]string{"--state", state, "--insecure-test-seed", "000102030405060708090a0b0c0d0e0f"}, &out, &errb, env(nil), nil); code != 2 {
			t.Fatalf("--insecure-test-seed alone: exit %d, want 2; stderr %q", code, errb.String())
		}
		if !strings.Contains(errb.String(), "INSECURE") || !strings.Contains(errb.String(), "--i-understand-this-is-insecure") {
			t.Errorf("stderr %q does not say INSECURE and name the acknowledgement flag", errb.String())
		}
		if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the refused daemon touched its state directory: %v", err)
		}
	})
	var out, errb bytes.Buffer
	if code := run([]string{"--log-format", "xml"}, &out, &errb, env(nil), nil); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.HasPrefix(errb.String(), "keystored: error:") || !strings.Contains(errb.String(), "hint:") {
		t.Fatalf("stderr %q", errb.String())
	}
	out.Reset()
	if code := run([]string{"--version"}, &out, &errb, env(nil), nil); code != 0 || !strings.HasPrefix(out.String(), "keystored ") {
		t.Fatalf("--version: exit %d, stdout %q", code, out.String())
	}
	if code := run([]string{"-h"}, &out, &errb, env(nil), nil); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, args := range [][]string{
		{"--provider-sha256", "ab"},
		{"--provider-plugin", "/bin/true"},
		{"--provider-plugin", "/bin/true", "--provider-sha256", "ab", "--insecure-test-seed", "00"},
		{"--provider-plugin", "/bin/true", "--provider-sha256", "ab", "--insecure-test-seed", "00", "--i-understand-this-is-insecure"},
		{"--i-understand-this-is-insecure"},
		// The daemon sets KEYSTORED_STATE_* itself (docs/providers.md).
		{"--provider-plugin", "/bin/true", "--provider-sha256", "ab", "--provider-env", "KEYSTORED_STATE_HOLDS_KEYS"},
	} {
		if code := run(args, &out, &errb, env(nil), nil); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
}

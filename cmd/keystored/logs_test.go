package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/internal/daemontest"
)

// jsonLines parses every stderr line as a JSON log record (level, msg)
// and returns the records; the test fails on any other line.
func jsonLines(t *testing.T, what, stderr string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("%s: stderr line is not JSON: %q", what, line)
			continue
		}
		if _, ok := m["level"]; !ok {
			t.Errorf("%s: JSON line without a level: %q", what, line)
		}
		if _, ok := m["msg"]; !ok {
			t.Errorf("%s: JSON line without a msg: %q", what, line)
		}
		recs = append(recs, m)
	}
	if len(recs) == 0 {
		t.Errorf("%s: nothing on stderr", what)
	}
	return recs
}

// TestJSONLogs: with --log-format json every stderr line is JSON, in
// usage errors (found before the flags parse), start-up failures, the
// INSECURE warnings, and a normal start, reload and stop.
func TestJSONLogs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.toml")
	for _, c := range []struct {
		name string
		args []string
		code int
		err  string // in the ERROR record's err
	}{
		{"unknown flag", []string{"--log-format", "json", "--bogus"}, 2, "flag provided but not defined"},
		{"bad log level", []string{"--log-format=json", "--log-level", "loud"}, 2, "--log-level"},
		{"single-dash flag, argument", []string{"-log-format", "json", "extra"}, 2, "unexpected argument"},
		{"insecure without ack", []string{"--log-format", "json", "--insecure-test-seed", "000102030405060708090a0b0c0d0e0f"}, 2, "INSECURE"},
		{"missing config", []string{"--log-format", "json", "--config", missing}, 1, "no such file"},
	} {
		r := daemontest.Run(t, daemontest.Options{Args: c.args})
		if r.ExitCode != c.code {
			t.Errorf("%s: exit %d, want %d", c.name, r.ExitCode, c.code)
		}
		recs := jsonLines(t, c.name, r.Stderr)
		found := false
		for _, m := range recs {
			if m["level"] == "ERROR" && strings.Contains(m["err"].(string), c.err) && m["hint"] != nil {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no ERROR record with err containing %q and a hint:\n%s", c.name, c.err, r.Stderr)
		}
	}

	r := daemontest.Run(t, daemontest.Options{Args: []string{"--log-format", "json", "-h"}})
	if r.ExitCode != 0 || r.Stderr != "" || !strings.Contains(r.Stdout, "Usage: keystored") {
		t.Errorf("-h with --log-format json: exit %d, stdout %q, stderr %q; want the usage on stdout only", r.ExitCode, r.Stdout, r.Stderr)
	}

	d := daemontest.Start(t, daemontest.Options{Args: append(daemontest.InsecureSeed("000102030405060708090a0b0c0d0e0f"),
		"--log-format", "json", "--insecure-allow-core-dumps", "--metrics-addr", "127.0.0.1:0")})
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.Stderr(), "SIGHUP") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	d.Stop()
	var msgs []string
	for _, m := range jsonLines(t, "start, reload, stop", d.Stderr()) {
		msgs = append(msgs, m["msg"].(string))
	}
	for _, want := range []string{coreDumpWarning, insecureWarning, "keystored started", "SIGHUP: no --config file, nothing to reload", "shutting down", "keystored stopped"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("no JSON record %q among %q", want, msgs)
		}
	}
}

func TestLogFormatOf(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--log-format", "json"}, "json"},
		{[]string{"-log-format=json"}, "json"},
		{[]string{"--log-format", "json", "--log-format", "text"}, "text"},
		{[]string{"--state", "s", "--log-format"}, ""},
		{[]string{"extra", "--log-format", "json"}, ""}, // flags end at the first argument
		{[]string{"--", "--log-format", "json"}, ""},
		{[]string{"--state", "s", "--version", "--log-format", "json"}, "json"},
		{[]string{"--state", "--log-format", "json"}, ""}, // "--log-format" is --state's value
	} {
		if got := logFormatOf(c.args); got != c.want {
			t.Errorf("logFormatOf(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}

// TestBoolFlagsComplete: logFormatOf knows every flag that takes no
// value (the usage lists them without a value name), so that it skips
// the values of the others and only theirs.
func TestBoolFlagsComplete(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"-h"}, &out, &errb, func(string) string { return "" }, nil); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	usage := out.String() + errb.String()
	n := 0
	for _, line := range strings.Split(usage, "\n") {
		name, ok := strings.CutPrefix(line, "  -")
		if !ok || strings.Contains(name, " ") {
			continue
		}
		n++
		if !boolFlags[name] {
			t.Errorf("flag -%s takes no value but is not in boolFlags", name)
		}
	}
	if n != len(boolFlags)-2 { // boolFlags also holds -h and -help
		t.Errorf("usage lists %d flags without a value, boolFlags has %d besides -h and -help", n, len(boolFlags)-2)
	}
}

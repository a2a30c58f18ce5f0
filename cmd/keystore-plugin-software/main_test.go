package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/plugin"
)

// TestRunRefuses: without a usable --kek-file, or when not started by the
// daemon, the plugin says why and exits non-zero without creating a KEK.
func TestRunRefuses(t *testing.T) {
	kek := filepath.Join(t.TempDir(), "kek")
	cases := []struct {
		name   string
		args   []string
		cookie bool
		status int
		want   string
	}{
		{"no flags", nil, true, 2, "--kek-file PATH is required"},
		{"relative KEK file", []string{"--kek-file", "kek"}, true, 2, "must be an absolute path"},
		{"unknown flag", []string{"--kek", kek}, true, 2, "flag provided but not defined"},
		{"extra argument", []string{"--kek-file", kek, "more"}, true, 2, "unexpected argument"},
		{"run by hand", []string{"--kek-file", kek}, false, 1, "keystored provider plugin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cookie {
				t.Setenv(plugin.Handshake.MagicCookieKey, plugin.Handshake.MagicCookieValue)
			} else {
				t.Setenv(plugin.Handshake.MagicCookieKey, "")
			}
			var stderr bytes.Buffer
			if got := run(tc.args, &stderr); got != tc.status {
				t.Errorf("exit status %d, want %d", got, tc.status)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.want)
			}
			if _, err := os.Stat(kek); !os.IsNotExist(err) {
				t.Errorf("a KEK file was created (%v)", err)
			}
		})
	}
}

// TestHelp: -h prints the usage and exits 0.
func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	if got := run([]string{"-h"}, &stderr); got != 0 || !strings.Contains(stderr.String(), "--kek-file") {
		t.Errorf("-h: status %d, output %q", got, stderr.String())
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/internal/keksource"
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
		{"two sources", []string{"--kek-file", kek, "--kek-passphrase-file", kek + ".pw", "--kek-params-file", kek + ".p"}, true, 2,
			"--kek-file and --kek-passphrase-file both name a KEK source"},
		{"two passphrases", []string{"--kek-passphrase-file", kek + ".pw", "--kek-passphrase-credential", "pw", "--kek-params-file", kek + ".p"}, true, 2,
			"both name the KEK passphrase"},
		{"passphrase without params", []string{"--kek-passphrase-file", kek + ".pw"}, true, 2, "--kek-params-file is required"},
		{"params without passphrase", []string{"--kek-file", kek, "--kek-params-file", kek + ".p"}, true, 2, "needs a passphrase"},
		{"relative params file", []string{"--kek-passphrase-file", kek + ".pw", "--kek-params-file", "p"}, true, 2, "must be an absolute path"},
		{"credential without CREDENTIALS_DIRECTORY", []string{"--kek-passphrase-credential", "pw", "--kek-params-file", kek + ".p"}, true, 2,
			"$CREDENTIALS_DIRECTORY is not set"},
		{"credential with a slash", []string{"--kek-passphrase-credential", "../pw", "--kek-params-file", kek + ".p"}, true, 2,
			"is not a credential name"},
		{"missing passphrase file", []string{"--kek-passphrase-file", kek + ".pw", "--kek-params-file", kek + ".p"}, true, 1,
			"KEK passphrase file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CREDENTIALS_DIRECTORY", "")
			t.Setenv(keksource.EnvHoldsKeys, "0") // creating would be allowed: only the flags refuse
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

// TestMissingKEKNotCreated: started by the daemon (cookie set) without a
// KEK file, the plugin creates none unless the daemon said the state holds
// no keys and records no KEK: unset variables, HOLDS_KEYS=1, or a recorded
// KEK all refuse with status 1, naming the file and the fingerprint.
func TestMissingKEKNotCreated(t *testing.T) {
	kek := filepath.Join(t.TempDir(), "kek")
	for _, tc := range []struct {
		name       string
		holds, fp  string
		wantStatus int
		want       []string
	}{
		{"variables unset", "", "", 1, []string{"is missing", "holds keys", "restore the file from its backup"}},
		{"holds keys", "1", "0123456789abcdef", 1, []string{"is missing", "KEK 0123456789abcdef", "restore"}},
		{"no keys but a recorded KEK", "0", "0123456789abcdef", 1, []string{"is missing", "made with KEK 0123456789abcdef"}},
		{"bad HOLDS_KEYS", "yes", "", 2, []string{"KEYSTORED_STATE_HOLDS_KEYS=\"yes\": want 0 or 1"}},
		{"bad KEK", "1", "NOT-HEX", 2, []string{"KEYSTORED_STATE_KEK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(plugin.Handshake.MagicCookieKey, plugin.Handshake.MagicCookieValue)
			t.Setenv(keksource.EnvHoldsKeys, tc.holds)
			t.Setenv(keksource.EnvStateKEK, tc.fp)
			var stderr bytes.Buffer
			if got := run([]string{"--kek-file", kek}, &stderr); got != tc.wantStatus {
				t.Errorf("exit status %d, want %d; stderr %q", got, tc.wantStatus, stderr.String())
			}
			for _, w := range append(tc.want, name+": error: ") {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not say %q", stderr.String(), w)
				}
			}
			if _, err := os.Stat(kek); !os.IsNotExist(err) {
				t.Errorf("a KEK file was created (%v)", err)
			}
		})
	}
}

// TestStateFromEnv: only HOLDS_KEYS=0 with no recorded KEK allows creating
// a KEK.
func TestStateFromEnv(t *testing.T) {
	for _, tc := range []struct {
		holds, fp string
		create    bool
	}{
		{"0", "", true}, {"1", "", false}, {"", "", false}, {"0", "ab", false},
	} {
		env := map[string]string{keksource.EnvHoldsKeys: tc.holds, keksource.EnvStateKEK: tc.fp}
		s, err := keksource.StateFromEnv(func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("%q/%q: %v", tc.holds, tc.fp, err)
		}
		if s.MayCreate() != tc.create {
			t.Errorf("HOLDS_KEYS=%q KEK=%q: may create %v, want %v", tc.holds, tc.fp, s.MayCreate(), tc.create)
		}
	}
}

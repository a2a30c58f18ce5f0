package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/plugin"
)

// TestRunRefuses: the INSECURE plugin refuses to start without --insecure
// or KEYSTORE_PLUGIN_INSECURE=1, saying why; it needs a valid seed; and it
// does nothing when not started by the daemon.
func TestRunRefuses(t *testing.T) {
	const seed = "000102030405060708090a0b0c0d0e0f"
	cookie := plugin.Handshake.MagicCookieKey + "=" + plugin.Handshake.MagicCookieValue
	cases := []struct {
		name   string
		args   []string
		env    []string
		status int
		want   string
	}{
		{"no acknowledgement", []string{"--seed", seed}, []string{cookie}, 2, "refusing to start: this provider is INSECURE"},
		{"env not 1", []string{"--seed", seed}, []string{cookie, insecureEnv + "=yes"}, 2, "Pass --insecure"},
		{"no seed", []string{"--insecure"}, []string{cookie}, 2, "--seed HEX is required"},
		{"env, no seed", nil, []string{cookie, insecureEnv + "=1"}, 2, "--seed HEX is required"},
		{"seed not hex", []string{"--insecure", "--seed", "xyz"}, []string{cookie}, 2, "not hex"},
		{"seed too short", []string{"--insecure", "--seed", "0102"}, []string{cookie}, 2, "seed must be 8 to 64 bytes"},
		{"run by hand", []string{"--insecure", "--seed", seed}, nil, 1, "keystored provider plugin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for _, e := range tc.env {
				k, v, _ := strings.Cut(e, "=")
				env[k] = v
			}
			var stderr bytes.Buffer
			if got := run(tc.args, func(k string) string { return env[k] }, &stderr); got != tc.status {
				t.Errorf("exit status %d, want %d", got, tc.status)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.want)
			}
			if strings.Contains(stderr.String(), seed) {
				t.Error("the seed was printed")
			}
		})
	}
}

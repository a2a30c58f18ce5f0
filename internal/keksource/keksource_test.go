package keksource

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/software"
)

func opts(file, pwFile, cred, params string) Options {
	return Options{
		File:                 Setting{file, "--kek-file"},
		PassphraseFile:       Setting{pwFile, "--kek-passphrase-file"},
		PassphraseCredential: Setting{cred, "--kek-passphrase-credential"},
		ParamsFile:           Setting{params, "--kek-params-file"},
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestResolve(t *testing.T) {
	def := Defaults{File: "/state/kek", Params: "/state/kek.params"}
	creds := env(map[string]string{CredentialsEnv: "/run/credentials/keystored.service"})
	for _, tc := range []struct {
		name string
		o    Options
		d    Defaults
		want Source
	}{
		{"default KEK file", opts("", "", "", ""), def, Source{KEKFile: "/state/kek"}},
		{"KEK file elsewhere", opts("/etc/keystored/kek", "", "", ""), def, Source{KEKFile: "/etc/keystored/kek"}},
		{"relative kept", opts("k/../kek", "", "", ""), def, Source{KEKFile: "kek"}},
		{"passphrase file, default params", opts("", "/etc/pw", "", ""), def, Source{PassphraseFile: "/etc/pw", ParamsFile: "/state/kek.params"}},
		{"passphrase file, params", opts("", "/etc/pw", "", "/var/p"), def, Source{PassphraseFile: "/etc/pw", ParamsFile: "/var/p"}},
		{"credential", opts("", "", "kek-pass", ""), def, Source{PassphraseFile: "/run/credentials/keystored.service/kek-pass", Credential: "kek-pass", ParamsFile: "/state/kek.params"}},
	} {
		got, err := Resolve(tc.o, tc.d, creds)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		o    Options
		d    Defaults
		env  map[string]string
		want string
	}{
		{"file and passphrase file", opts("/k", "/pw", "", ""), def, nil, "--kek-file and --kek-passphrase-file both name a KEK source"},
		{"file and credential", opts("/k", "", "c", ""), def, nil, "--kek-file and --kek-passphrase-credential both name a KEK source"},
		{"two passphrases", opts("", "/pw", "c", ""), def, nil, "--kek-passphrase-file and --kek-passphrase-credential both name the KEK passphrase"},
		{"params without passphrase", opts("", "", "", "/p"), def, nil, "--kek-params-file is the parameters file of a passphrase-derived KEK"},
		{"no default, nothing given", opts("", "", "", ""), Defaults{Abs: true}, nil, "--kek-file is required"},
		{"no default params", opts("", "/pw", "", ""), Defaults{Abs: true}, nil, "--kek-params-file is required"},
		{"relative, absolute required", opts("kek", "", "", ""), Defaults{Abs: true}, nil, `--kek-file "kek" must be an absolute path`},
		{"credentials directory unset", opts("", "", "c", ""), def, nil, "$CREDENTIALS_DIRECTORY is not set"},
		{"credentials directory relative", opts("", "", "c", ""), def, map[string]string{CredentialsEnv: "creds"}, "$CREDENTIALS_DIRECTORY is not set to an absolute directory"},
		{"credential path", opts("", "", "a/b", ""), def, map[string]string{CredentialsEnv: "/c"}, "is not a credential name"},
		{"credential dot-dot", opts("", "", "..", ""), def, map[string]string{CredentialsEnv: "/c"}, "is not a credential name"},
	} {
		_, err := Resolve(tc.o, tc.d, env(tc.env))
		if c, _ := provider.CodeOf(err); c != provider.EINVAL || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want EINVAL saying %q", tc.name, err, tc.want)
		}
	}
}

func TestOver(t *testing.T) {
	flags := opts("", "", "", "/flag/params")
	config := Options{
		PassphraseCredential: Setting{"pw", "[kek] passphrase_credential"},
		ParamsFile:           Setting{"/config/params", "[kek] params_file"},
	}
	got := flags.Over(config)
	if got.ParamsFile.Value != "/flag/params" || got.PassphraseCredential != config.PassphraseCredential || got.File.Set() {
		t.Errorf("flags over config = %+v", got)
	}
	// A conflict across the two names both origins.
	_, err := Resolve(opts("/k", "", "", "").Over(config), Defaults{}, env(map[string]string{CredentialsEnv: "/c"}))
	if err == nil || !strings.Contains(err.Error(), "--kek-file and [kek] passphrase_credential") {
		t.Errorf("conflict between a flag and the config: %v", err)
	}
}

func writePrivate(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadPassphrase: one trailing newline (LF or CRLF) is stripped, the
// rest kept byte for byte; an empty or over-long passphrase and a file
// that is not private are refused, naming the file but never its content.
func TestReadPassphrase(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("p", software.MaxPassphrase)
	for content, want := range map[string]string{
		"correct horse\n":   "correct horse",
		"correct horse\r\n": "correct horse",
		"correct horse":     "correct horse",
		"two lines\n\n":     "two lines\n",
		" spaced \n":        " spaced ",
		long + "\n":         long,
		long + "\r\n":       long,
	} {
		p := writePrivate(t, dir, "pw", content, 0o600)
		got, err := ReadPassphrase(p, "KEK passphrase file")
		if err != nil || !bytes.Equal(got.Reveal(), []byte(want)) {
			t.Errorf("%q: got %q, %v; want %q", content, got.Reveal(), err, want)
		}
		got.Wipe()
		if len(got.Reveal()) > 0 && got.Reveal()[0] != 0 {
			t.Error("Wipe left the passphrase")
		}
	}
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		code          provider.Code
	}{
		{"empty", "", 0o600, provider.EINVAL},
		{"newline only", "\n", 0o600, provider.EINVAL},
		{"too long", long + "x", 0o600, provider.EINVAL},
		{"too long with newline", long + "x\n", 0o600, provider.EINVAL},
		{"far too long", strings.Repeat("x", 10000), 0o600, provider.EINVAL},
		{"readable by others", "secret-passphrase\n", 0o644, provider.EPERM},
		{"readable by the group", "secret-passphrase\n", 0o640, provider.EPERM},
	} {
		p := writePrivate(t, dir, strings.ReplaceAll(tc.name, " ", "-"), tc.content, tc.mode)
		_, err := ReadPassphrase(p, "KEK passphrase file")
		if c, _ := provider.CodeOf(err); c != tc.code {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.code)
			continue
		}
		if !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "secret-passphrase") || strings.Contains(err.Error(), "xxxx") {
			t.Errorf("%s: error %q does not name the file, or quotes its content", tc.name, err)
		}
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(writePrivate(t, dir, "target", "pw\n", 0o600), link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPassphrase(link, "KEK passphrase file"); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlink: %v, want refused", err)
	}
	if _, err := ReadPassphrase(filepath.Join(dir, "none"), "KEK passphrase file"); err == nil {
		t.Error("missing file accepted")
	} else if c, _ := provider.CodeOf(err); c != provider.ENOENT {
		t.Errorf("missing file: %v, want ENOENT", err)
	}
}

// TestConfig: a KEK file source is passed on as is; a passphrase source
// reads the passphrase, and wipe clears it.
func TestConfig(t *testing.T) {
	cfg, wipe, err := Source{KEKFile: "/k"}.Config(true)
	if err != nil || cfg.KEKFile != "/k" || !cfg.Create || !cfg.Passphrase.IsZero() {
		t.Fatalf("KEK file: %+v, %v", cfg, err)
	}
	wipe()
	pw := writePrivate(t, t.TempDir(), "pw", "hunter2\n", 0o600)
	cfg, wipe, err = Source{PassphraseFile: pw, ParamsFile: "/p"}.Config(false)
	if err != nil || cfg.ParamsFile != "/p" || cfg.Create || string(cfg.Passphrase.Reveal()) != "hunter2" {
		t.Fatalf("passphrase: %+v, %v", cfg, err)
	}
	wipe()
	if !bytes.Equal(cfg.Passphrase.Reveal(), make([]byte, 7)) {
		t.Error("wipe did not clear the passphrase")
	}
}

// TestCheckConflicts: what one half of the options can refuse alone.
func TestCheckConflicts(t *testing.T) {
	for _, o := range []Options{opts("", "", "", "/p"), opts("/k", "", "", ""), opts("", "", "c", "")} {
		if err := CheckConflicts(o); err != nil {
			t.Errorf("%+v: %v (the other half may complete it)", o, err)
		}
	}
	for _, o := range []Options{opts("/k", "/pw", "", ""), opts("", "/pw", "c", ""), opts("", "", "a/b", "")} {
		if err := CheckConflicts(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// The state variables round-trip, a restart says "holds keys" with no
// fingerprint, and a KEK may be created only for a state without keys
// and without a recorded KEK (unset variables: never).
func TestStateEnv(t *testing.T) {
	for _, s := range []State{{}, {HoldsKeys: true}, {HoldsKeys: true, KEK: "0011223344556677"}} {
		env := map[string]string{}
		for _, kv := range s.Env() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		got, err := StateFromEnv(func(k string) string { return env[k] })
		if err != nil || got != s {
			t.Errorf("%+v: round trip %+v, %v", s, got, err)
		}
		if got.MayCreate() != (s == State{}) {
			t.Errorf("%+v: MayCreate %v", s, got.MayCreate())
		}
	}
	if s, err := StateFromEnv(func(string) string { return "" }); err != nil || s.MayCreate() {
		t.Errorf("unset variables: %+v, %v; want a state that may hold keys", s, err)
	}
	if got := RestartEnv(); !slices.Equal(got, []string{EnvHoldsKeys + "=1", EnvStateKEK + "="}) {
		t.Errorf("RestartEnv = %q", got)
	}
	for _, bad := range []map[string]string{{EnvHoldsKeys: "yes"}, {EnvStateKEK: "XYZ"}} {
		if _, err := StateFromEnv(func(k string) string { return bad[k] }); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

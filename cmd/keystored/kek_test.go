package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// manifestKEK returns the KEK fingerprint recorded in state's MANIFEST.
func manifestKEK(t *testing.T, state string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(state, "keystore", "MANIFEST"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Body struct {
			KEK string `json:"kek"`
		} `json:"body"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("MANIFEST: %v", err)
	}
	if len(env.Body.KEK) != 16 {
		t.Fatalf("MANIFEST records KEK %q, want 16 hex characters", env.Body.KEK)
	}
	return env.Body.KEK
}

// kekScenario runs issue 9 item 9 against a daemon started with args
// whose KEK lives at kekPath: make a key, stop, move the KEK away, start
// (refused: exits 1 naming the state directory, the missing path and the
// recorded fingerprint, creating no KEK), restore the KEK, start again and
// use the key. namesState: the refusal names the state directory too (the
// daemon's does; a plugin's names its KEK file and the fingerprint).
func kekScenario(t *testing.T, dir, state, kekPath string, args []string, namesState bool) {
	t.Helper()
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: args})
	keys, _, _ := clients(t, d)
	_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	sig, err := keys.Sign(t.Context(), &keystorev1.SignRequest{Key: "sig/k", Message: []byte("before")})
	mustOK(t, "Sign", err)
	d.Stop()
	fp := manifestKEK(t, state)
	kekBefore, err := os.ReadFile(kekPath)
	if err != nil {
		t.Fatal(err)
	}

	moved := filepath.Join(dir, "kek.moved-away")
	if err := os.Rename(kekPath, moved); err != nil {
		t.Fatal(err)
	}
	r := daemontest.Run(t, daemontest.Options{Dir: dir, State: state, Args: args})
	if r.ExitCode == 0 {
		t.Fatalf("daemon started without its KEK:\n%s", r.Stderr)
	}
	wants := []string{kekPath, fp, "restore"}
	if namesState {
		wants = append(wants, state)
	}
	for _, want := range wants {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("refusal does not say %q:\n%s", want, r.Stderr)
		}
	}
	t.Logf("refusal:\n%s", r.Stderr)
	if _, err := os.Lstat(kekPath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused start made a new KEK at %s (%v)", kekPath, err)
	}

	if err := os.Rename(moved, kekPath); err != nil {
		t.Fatal(err)
	}
	d = daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: args})
	keys, _, _ = clients(t, d)
	v, err := keys.Verify(t.Context(), &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: []byte("before"), Signature: sig.GetSignature()})
	mustOK(t, "Verify after restoring the KEK", err)
	if !v.GetValid() {
		t.Error("a signature made before no longer verifies")
	}
	_, err = keys.Sign(t.Context(), &keystorev1.SignRequest{Key: "sig/k", Message: []byte("after")})
	mustOK(t, "Sign after restoring the KEK", err)
	d.Stop()
	if after, _ := os.ReadFile(kekPath); string(after) != string(kekBefore) {
		t.Error("the KEK file changed")
	}
}

// TestMissingKEKRefused: issue 9 item 9 with the built-in software
// provider (<state>/kek). Before the fix the daemon made a new KEK,
// started "healthy" and every key failed with "wrong KEK".
func TestMissingKEKRefused(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	kekScenario(t, dir, state, filepath.Join(state, "kek"), nil, true)
}

// TestMissingKEKRefusedPlugin: the same through the software plugin
// binary and its --kek-file: the daemon tells the plugin that the state
// holds keys (KEYSTORED_STATE_HOLDS_KEYS=1) and which KEK it records, and
// the plugin refuses to start without its KEK file.
func TestMissingKEKRefusedPlugin(t *testing.T) {
	bin, pin := pinnedPlugin(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	kekPath := filepath.Join(dir, "plugin-kek")
	args := []string{"--provider-plugin", bin, "--provider-sha256", pin,
		"--provider-arg", "--kek-file=" + kekPath}
	kekScenario(t, dir, state, kekPath, args, false)
}

// TestMissingKEKWithoutKeys: a state that holds no key but whose MANIFEST
// records a KEK is not given a new one either (its KEK existed).
func TestMissingKEKWithoutKeys(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	d.Stop()
	fp := manifestKEK(t, state)
	if err := os.Remove(filepath.Join(state, "kek")); err != nil {
		t.Fatal(err)
	}
	r := daemontest.Run(t, daemontest.Options{Dir: dir, State: state})
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, fp) || !strings.Contains(r.Stderr, "is missing") {
		t.Errorf("start without the recorded KEK: exit %d, stderr:\n%s", r.ExitCode, r.Stderr)
	}
	if _, err := os.Lstat(filepath.Join(state, "kek")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused start made a new KEK (%v)", err)
	}
}

// writeSecret writes a private (0600) file.
func writeSecret(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// signAcrossRestart starts the daemon with o, makes a key and signs, stops,
// starts again and checks that the key still signs and the first
// signature verifies.
func signAcrossRestart(t *testing.T, o daemontest.Options) {
	t.Helper()
	d := daemontest.Start(t, o)
	keys, _, _ := clients(t, d)
	_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	sig, err := keys.Sign(t.Context(), &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
	mustOK(t, "Sign", err)
	d.Stop()
	d = daemontest.Start(t, o)
	keys, _, _ = clients(t, d)
	v, err := keys.Verify(t.Context(), &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: []byte("m"), Signature: sig.GetSignature()})
	mustOK(t, "Verify after the restart", err)
	if !v.GetValid() {
		t.Error("a signature made before the restart does not verify")
	}
	_, err = keys.Sign(t.Context(), &keystorev1.SignRequest{Key: "sig/k", Message: []byte("after")})
	mustOK(t, "Sign after the restart", err)
	d.Stop()
}

// TestKEKFileOutsideState: --kek-file puts the KEK outside the state
// directory (issue 9 item 10): the state holds no KEK, a restart works.
func TestKEKFileOutsideState(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	kek := filepath.Join(secrets, "kek")
	signAcrossRestart(t, daemontest.Options{Dir: dir, State: state, Args: []string{"--kek-file", kek}})
	if fi, err := os.Lstat(kek); err != nil || fi.Size() != 32 || fi.Mode().Perm() != 0o600 {
		t.Errorf("KEK file %s: %v, %v", kek, fi, err)
	}
	if _, err := os.Lstat(filepath.Join(state, "kek")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a KEK file was made in the state directory too (%v)", err)
	}
	// The state records that KEK: the default one (a fresh <state>/kek)
	// is never made for it.
	r := daemontest.Run(t, daemontest.Options{Dir: dir, State: state})
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, manifestKEK(t, state)) {
		t.Errorf("start without --kek-file: exit %d:\n%s", r.ExitCode, r.Stderr)
	}
}

// TestKEKPassphraseCredential: a passphrase-derived KEK, the passphrase
// from a systemd credential ($CREDENTIALS_DIRECTORY/NAME), the Argon2id
// parameters file outside the state directory. A restart works; a wrong
// passphrase is refused with a clear error and changes nothing (no new
// KEK); a conflicting source is a usage error.
func TestKEKPassphraseCredential(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	creds := filepath.Join(dir, "credentials")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, filepath.Join(creds, "kek-pass"), "correct horse battery staple\n")
	params := filepath.Join(dir, "kek.params")
	args := []string{"--kek-passphrase-credential", "kek-pass", "--kek-params-file", params}
	o := daemontest.Options{Dir: dir, State: state, Args: args, Env: []string{"CREDENTIALS_DIRECTORY=" + creds}}
	signAcrossRestart(t, o)
	before, err := os.ReadFile(params)
	if err != nil {
		t.Fatalf("parameters file: %v", err)
	}
	for _, name := range []string{"kek", "kek.params"} {
		if _, err := os.Lstat(filepath.Join(state, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s made in the state directory (%v)", name, err)
		}
	}

	writeSecret(t, filepath.Join(creds, "kek-pass"), "wrong horse\n")
	r := daemontest.Run(t, o)
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "wrong passphrase") || !strings.Contains(r.Stderr, params) {
		t.Errorf("wrong passphrase: exit %d, want 1 saying \"wrong passphrase\" and naming %s:\n%s", r.ExitCode, params, r.Stderr)
	}
	if strings.Contains(r.Stderr, "wrong horse") || strings.Contains(r.Stderr, "correct horse") {
		t.Errorf("the refusal quotes a passphrase:\n%s", r.Stderr)
	}
	if after, _ := os.ReadFile(params); string(after) != string(before) {
		t.Error("a wrong passphrase changed the parameters file")
	}

	// The right passphrase without its parameters file (the salt) is a
	// lost KEK, never a new one.
	writeSecret(t, filepath.Join(creds, "kek-pass"), "correct horse battery staple\n")
	if err := os.Rename(params, params+".away"); err != nil {
		t.Fatal(err)
	}
	r = daemontest.Run(t, o)
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "KEK parameters file "+params) || !strings.Contains(r.Stderr, "is missing") {
		t.Errorf("missing parameters file: exit %d:\n%s", r.ExitCode, r.Stderr)
	}
	if _, err := os.Lstat(params); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused start made a new parameters file (%v)", err)
	}
	if err := os.Rename(params+".away", params); err != nil {
		t.Fatal(err)
	}

	r = daemontest.Run(t, daemontest.Options{Dir: dir, State: state, Args: args})
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "$CREDENTIALS_DIRECTORY is not set") {
		t.Errorf("credential without $CREDENTIALS_DIRECTORY: exit %d:\n%s", r.ExitCode, r.Stderr)
	}
	r = daemontest.Run(t, daemontest.Options{Dir: dir, State: state, Args: append(args, "--kek-file", filepath.Join(dir, "k"))})
	if r.ExitCode != 2 || !strings.Contains(r.Stderr, "both name a KEK source") {
		t.Errorf("two sources: exit %d, want 2:\n%s", r.ExitCode, r.Stderr)
	}
}

// TestKEKPassphrasePlugin: the software plugin takes the same sources
// (here a passphrase file and a parameters file, absolute paths) and
// survives a restart of the daemon.
func TestKEKPassphrasePlugin(t *testing.T) {
	bin, pin := pinnedPlugin(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	dir := t.TempDir()
	pw := filepath.Join(dir, "passphrase")
	writeSecret(t, pw, "plugin passphrase\n")
	params := filepath.Join(dir, "plugin-kek.params")
	args := []string{"--provider-plugin", bin, "--provider-sha256", pin,
		"--provider-arg", "--kek-passphrase-file=" + pw, "--provider-arg", "--kek-params-file=" + params}
	signAcrossRestart(t, daemontest.Options{Dir: dir, State: filepath.Join(dir, "state"), Args: args})
	if _, err := os.Lstat(params); err != nil {
		t.Errorf("the plugin made no parameters file: %v", err)
	}
}

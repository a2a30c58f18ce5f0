package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/testbin"
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
	bin := testbin.Build(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	kekPath := filepath.Join(dir, "plugin-kek")
	args := []string{"--provider-plugin", bin, "--provider-sha256", hex.EncodeToString(sum[:]),
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

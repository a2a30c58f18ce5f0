package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/internal/testbin"
)

// The plugin binaries the tests launch, built once per test run with the
// go command into a directory that passes the StrictModes checks
// (internal/testbin; removed by TestMain).
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// binaries builds (once) and returns the paths of the software, testseed
// and misbehave plugin binaries.
func binaries(t testing.TB) (software, testseed, misbehave string) {
	t.Helper()
	return testbin.Build(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software"),
		testbin.Build(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-testseed"),
		testbin.Build(t, "github.com/nexus-os/keystored/plugin/internal/testplugins/misbehave")
}

// privDir returns a path for Config.PrivateDir that does not exist yet
// (Launch creates it), short enough for the plugin's socket, removed when
// t ends.
func privDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	})
	return filepath.Join(d, "plugins")
}

// sha256File returns the hex SHA-256 of the file at path.
func sha256File(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// testLogger returns a logger that writes every record, at every level,
// to w.
func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: levelTrace}))
}

// launch starts the plugin at path with cfg (Path and SHA256 filled in)
// and closes it when t ends.
func launch(t testing.TB, path string, cfg Config) *Client {
	t.Helper()
	cfg.Path = path
	if cfg.PrivateDir == "" {
		cfg.PrivateDir = privDir(t)
	}
	if cfg.SHA256 == "" {
		cfg.SHA256 = sha256File(t, path)
	}
	c, err := Launch(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Launch(%s): %v", filepath.Base(path), err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// newStateEnv is what keystored tells a plugin about a new state: no keys,
// no recorded KEK, so the software plugin may create its KEK file.
var newStateEnv = []string{"KEYSTORED_STATE_HOLDS_KEYS=0", "KEYSTORED_STATE_KEK="}

// softwarePlugin launches the software plugin binary with a fresh KEK
// file in t's temporary directory, as for a new state.
func softwarePlugin(t testing.TB, cfg Config) *Client {
	t.Helper()
	sw, _, _ := binaries(t)
	cfg.Args = append([]string{"--kek-file", filepath.Join(t.TempDir(), "kek")}, cfg.Args...)
	cfg.Env = append(slices.Clone(newStateEnv), cfg.Env...)
	return launch(t, sw, cfg)
}

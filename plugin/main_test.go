package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The plugin binaries the tests launch, built once per test run with the
// go command into a temporary directory (removed by TestMain).
var bins struct {
	once                          sync.Once
	dir                           string
	err                           error
	software, testseed, misbehave string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// binaries builds (once) and returns the paths of the software, testseed
// and misbehave plugin binaries.
func binaries(t testing.TB) (software, testseed, misbehave string) {
	t.Helper()
	bins.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			bins.err = fmt.Errorf("the go command is needed to build the plugin binaries: %v", err)
			return
		}
		bins.dir, bins.err = os.MkdirTemp("", "keystored-plugin-bins-")
		if bins.err != nil {
			return
		}
		cmd := exec.Command(goBin, "build", "-o", bins.dir+string(filepath.Separator),
			"github.com/nexus-os/keystored/cmd/keystore-plugin-software",
			"github.com/nexus-os/keystored/cmd/keystore-plugin-testseed",
			"github.com/nexus-os/keystored/plugin/internal/testplugins/misbehave")
		if out, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("go build of the plugin binaries: %v\n%s", err, out)
			return
		}
		bins.software = filepath.Join(bins.dir, "keystore-plugin-software")
		bins.testseed = filepath.Join(bins.dir, "keystore-plugin-testseed")
		bins.misbehave = filepath.Join(bins.dir, "misbehave")
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.software, bins.testseed, bins.misbehave
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

// softwarePlugin launches the software plugin binary with a fresh KEK
// file in t's temporary directory.
func softwarePlugin(t testing.TB, cfg Config) *Client {
	t.Helper()
	sw, _, _ := binaries(t)
	cfg.Args = append([]string{"--kek-file", filepath.Join(t.TempDir(), "kek")}, cfg.Args...)
	return launch(t, sw, cfg)
}

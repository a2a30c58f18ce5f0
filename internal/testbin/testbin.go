// Package testbin builds binaries for tests — provider plugins above
// all — into a directory that keystored's plugin checks accept
// (internal/strictmodes: owned by root or the test's uid and writable by
// nobody else, all the way up to /).
//
// t.TempDir() will not do: it is below $TMPDIR, normally /tmp (mode 1777),
// which the checks refuse. The directory is made below the first of
// $KEYSTORED_TEST_BIN_DIR and the user's cache directory
// (os.UserCacheDir()/keystored-test) whose whole chain passes the checks;
// a test binary gets a fresh subdirectory of it, which Cleanup removes:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testbin.Cleanup()
//		os.Exit(code)
//	}
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/internal/strictmodes"
)

// Env names a directory to build in instead of the user's cache
// directory; it must pass the checks.
const Env = "KEYSTORED_TEST_BIN_DIR"

var (
	mu     sync.Mutex
	dir    string
	dirErr error
	built  = map[string]string{}
)

// base returns (making it if needed) the directory below which the
// per-process directory is made.
func base() (string, error) {
	if d := os.Getenv(Env); d != "" {
		if err := strictmodes.CheckDir(d, "$"+Env); err != nil {
			return "", err
		}
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory (%v); set %s to a directory only you (or root) can write, all the way up to /", err, Env)
	}
	d := filepath.Join(cache, "keystored-test")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	if err := strictmodes.CheckDir(d, "test binary directory"); err != nil {
		return "", fmt.Errorf("%v; set %s to a directory only you (or root) can write, all the way up to /", err, Env)
	}
	return d, nil
}

// Dir returns this test process's binary directory (mode 0700), making
// it on the first call.
func Dir(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if dir == "" && dirErr == nil {
		var b string
		if b, dirErr = base(); dirErr == nil {
			dir, dirErr = os.MkdirTemp(b, "bins-")
		}
	}
	if dirErr != nil {
		t.Fatalf("testbin: %v", dirErr)
	}
	return dir
}

// NewDir returns a new, empty directory below Dir (mode 0700) that passes
// the checks, removed when t ends: the place for a test's own copies of
// binaries.
func NewDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp(Dir(t), "t-")
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("testbin: %v", err)
		}
	})
	return d
}

// Build builds the main package pkg (an import path) into Dir, once per
// test process, and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	d := Dir(t)
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	p := filepath.Join(d, filepath.Base(pkg))
	out, err := exec.Command(goTool(), "build", "-o", p, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("testbin: go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = p
	return p
}

// Cleanup removes Dir and everything in it; call it from TestMain after
// m.Run. Errors are printed, not returned: there is nothing a test binary
// can do about them.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "testbin: removing %s: %v\n", dir, err)
	}
	dir, built = "", map[string]string{}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

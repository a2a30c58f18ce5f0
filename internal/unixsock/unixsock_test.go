package unixsock

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

func opts() Options {
	return Options{DirMode: 0o700, SockMode: 0o600, GID: -1, Who: "the test", Fix: "or use another directory"}
}

// A socket is bound 0600; a stale one is replaced, a live one refused; a
// directory writable by others or a symlinked one is refused unchanged.
func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "us")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	l, err := Listen(path, opts())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", fi, err)
	}
	if _, err := Listen(path, opts()); !errors.Is(err, provider.ErrAlready) || !strings.Contains(err.Error(), "another test is answering") {
		t.Errorf("a live socket: %v, want EALREADY", err)
	}
	l.SetUnlinkOnClose(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Listen(path, opts()) // stale: replaced
	if err != nil {
		t.Fatalf("a stale socket: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, opts()); !errors.Is(err, provider.ErrPermission) || !strings.Contains(err.Error(), "or use another directory") {
		t.Errorf("a world-writable directory: %v, want EPERM with the fix", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("the refused directory was changed: %v, %v", fi, err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(link, "s"), opts()); !errors.Is(err, provider.ErrPermission) {
		t.Errorf("a symlinked directory: %v, want EPERM", err)
	}
	if _, err := Listen(strings.Repeat("x", MaxPath+1), opts()); !errors.Is(err, provider.ErrInvalid) {
		t.Errorf("an over-long path: %v, want EINVAL", err)
	}
}

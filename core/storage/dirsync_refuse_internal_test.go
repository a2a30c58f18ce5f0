//go:build linux

package storage

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// TestDirSyncFailureRefusesLaterChanges: after a directory fsync failed
// (sticky, docs/storage.md step 7: "every later write or removal through
// the same Dir fails ... until the storage is opened again") a later
// write or removal is refused before it changes anything visible: a write
// that reports EIO must not have renamed its file into place (the core
// reads a failed write back and serves what landed, so a refused Create
// or Rotate would be live, and never durable: no directory fsync is tried
// again), and a removal that reports EIO must not have unlinked the file.
func TestDirSyncFailureRefusesLaterChanges(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteFile("a/b/keep", []byte("1")); err != nil {
		t.Fatal(err)
	}
	d.syncs.syncFn = func(int) error { return unix.EIO }
	if err := d.WriteFile("a/b/first", []byte("x")); !errors.Is(err, provider.EIO) {
		t.Fatalf("write whose directory fsync fails: %v, want EIO", err)
	}
	if err := d.WriteFile("a/b/later", []byte("y")); !errors.Is(err, provider.EIO) {
		t.Fatalf("write after the failure: %v, want EIO", err)
	}
	if _, err := d.ReadFile("a/b/later"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("a write refused (EIO) after the sticky failure is visible anyway: ReadFile = %v, want ErrNotFound", err)
	}
	if err := d.WriteFile("n/m/new", []byte("z")); !errors.Is(err, provider.EIO) {
		t.Fatalf("write into new directories after the failure: %v, want EIO", err)
	}
	if _, err := d.ReadDir("n"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("a write refused (EIO) after the sticky failure made its directories anyway: ReadDir(\"n\") = %v, want ErrNotFound", err)
	}
	if err := d.WriteFile("a/b/keep", []byte("2")); !errors.Is(err, provider.EIO) {
		t.Fatalf("overwrite after the failure: %v, want EIO", err)
	}
	if b, err := d.ReadFile("a/b/keep"); err != nil || string(b) != "1" {
		t.Errorf("an overwrite refused (EIO) after the sticky failure replaced the file anyway: %q, %v; want \"1\"", b, err)
	}
	if err := d.Remove("a/b/keep"); !errors.Is(err, provider.EIO) {
		t.Fatalf("remove after the failure: %v, want EIO", err)
	}
	if _, err := d.ReadFile("a/b/keep"); err != nil {
		t.Errorf("a removal refused (EIO) after the sticky failure unlinked the file anyway: ReadFile = %v", err)
	}
}

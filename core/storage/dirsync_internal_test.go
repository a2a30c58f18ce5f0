//go:build linux

package storage

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDirSyncsShared: concurrent fsyncs of one directory all succeed, the
// state of a directory is dropped when its last caller returns, and a
// failing fsync (a closed descriptor) is reported to its callers.
func TestDirSyncsShared(t *testing.T) {
	fd, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Close(fd); err != nil {
			t.Error(err)
		}
	}()
	var s dirSyncs
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Go(func() { errs[i] = s.fsync(fd) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if len(s.m) != 0 {
		t.Errorf("%d directories still tracked after every caller returned", len(s.m))
	}
	if err := s.fsync(-1); err == nil {
		t.Error("fsync of a bad descriptor succeeded")
	}
}

// TestDirSyncsFailureSticky: once a directory fsync fails, every later
// fsync through the same dirSyncs fails with it, untried (the kernel
// reports a writeback error once; a later success would prove nothing
// about the changes made before it), for any directory.
func TestDirSyncsFailureSticky(t *testing.T) {
	open := func() int {
		fd, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := unix.Close(fd); err != nil {
				t.Error(err)
			}
		})
		return fd
	}
	a, b := open(), open()
	calls := 0
	s := dirSyncs{syncFn: func(fd int) error {
		if calls++; calls == 2 {
			return unix.EIO
		}
		return unix.Fsync(fd)
	}}
	if err := s.fsync(a); err != nil {
		t.Fatalf("first fsync: %v", err)
	}
	if err := s.fsync(a); !errors.Is(err, unix.EIO) {
		t.Fatalf("the failing fsync: %v, want EIO", err)
	}
	for _, fd := range []int{a, b} {
		if err := s.fsync(fd); !errors.Is(err, unix.EIO) {
			t.Errorf("fsync after the failure: %v, want the first failure (EIO)", err)
		}
	}
	if calls != 2 {
		t.Errorf("%d fsyncs tried, want 2 (none after the failure)", calls)
	}
}

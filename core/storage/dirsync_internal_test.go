//go:build linux

package storage

import (
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

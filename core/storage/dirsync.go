//go:build linux

package storage

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// dirSyncs shares the fsyncs of one directory among concurrent writes:
// every directory fsync after a change (a rename of a key file into its
// purpose directory, a new directory made in its parent, a removal). A write needs an fsync of
// the directory that begins after its change; one fsync covers every
// change made before it began, so concurrent callers wait for the fsync
// under way to end and then share the next one, as the audit log's group
// commit shares its fsyncs.
//
// A failed directory fsync is sticky: every later fsync of any directory
// through the same dirSyncs fails too, without being tried. The kernel
// reports a writeback error once (to the descriptors open when it
// happened) and may have dropped what that fsync was to make durable, so
// a later fsync that succeeds proves nothing about changes made before
// the failure; and a caller that attached to the next fsync because the
// failed one was under way would otherwise be told its change is durable.
// The storage refuses writes until it is opened again (a restart), which
// reads what the disk really holds.
type dirSyncs struct {
	mu     sync.Mutex
	m      map[dirKey]*dirSync
	failed error // the first directory fsync error, sticky
	// syncFn is unix.Fsync when nil (tests set it to inject failures).
	syncFn func(fd int) error
}

// dirKey names a directory by its device and inode.
type dirKey struct{ dev, ino uint64 }

// dirSync is the state of one directory's fsyncs.
type dirSync struct {
	cond    sync.Cond // on dirSyncs.mu
	users   int       // callers holding this entry
	running bool      // an fsync is under way
	started uint64    // fsyncs begun
	done    uint64    // the last fsync ended (its number)
	err     error     // its error
}

// failure returns the sticky failure, or nil: a write or removal checks
// it before it changes anything visible, so that once a directory fsync
// has failed nothing more is changed (a change made now could not be made
// durable: no fsync is tried again).
func (s *dirSyncs) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// fsync fsyncs the directory fd, sharing the fsync with concurrent
// callers for the same directory: it returns once an fsync that began
// after the call ended, with its error.
func (s *dirSyncs) fsync(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	key := dirKey{dev: st.Dev, ino: st.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[dirKey]*dirSync{}
	}
	e := s.m[key]
	if e == nil {
		e = &dirSync{}
		e.cond.L = &s.mu
		s.m[key] = e
	}
	e.users++
	defer func() {
		if e.users--; e.users == 0 {
			delete(s.m, key)
		}
	}()
	want := e.started + 1 // the next fsync to begin covers this call
	for e.done < want {
		if s.failed != nil {
			return s.failed
		}
		if e.running {
			e.cond.Wait()
			continue
		}
		e.running = true
		e.started++
		n := e.started
		s.mu.Unlock()
		fsync := unix.Fsync
		if s.syncFn != nil {
			fsync = s.syncFn
		}
		err := fsync(fd)
		s.mu.Lock()
		e.running = false
		e.done, e.err = n, err
		if err != nil && s.failed == nil {
			s.failed = fmt.Errorf("an earlier directory fsync failed, so no later one proves anything durable; writes are refused until the storage is opened again: %w", err)
		}
		e.cond.Broadcast()
	}
	return e.err
}

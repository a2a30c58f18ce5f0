//go:build linux

package storage

import (
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
type dirSyncs struct {
	mu sync.Mutex
	m  map[dirKey]*dirSync
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
		if e.running {
			e.cond.Wait()
			continue
		}
		e.running = true
		e.started++
		n := e.started
		s.mu.Unlock()
		err := unix.Fsync(fd)
		s.mu.Lock()
		e.running = false
		e.done, e.err = n, err
		e.cond.Broadcast()
	}
	return e.err
}

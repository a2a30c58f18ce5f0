//go:build linux

package storage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// openDir opens the directory seg inside the directory parent without
// following a symlink.
func openDir(parent int, seg string) (int, error) {
	for {
		fd, err := unix.Openat(parent, seg,
			unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// release closes a directory returned by walk unless it is the root.
func (d *Dir) release(fd int) {
	if fd != d.fd && fd >= 0 {
		// A directory opened read-only has nothing to flush: closing it
		// cannot lose data.
		_ = unix.Close(fd)
	}
}

// walk opens the directory named by dirs (segments from the root), one
// component at a time with O_NOFOLLOW, checking each one's owner and mode.
// With create, missing components are made (0700) and their parents
// fsynced. The result is the root itself when dirs is empty; pass it to
// release.
func (d *Dir) walk(op, name string, dirs []string, create bool) (int, error) {
	return d.walkSync(op, name, dirs, create, nil)
}

// walkSync is walk; with unsynced non-nil, the parents of the directories
// it makes are not fsynced but appended to *unsynced, open, for the
// caller to fsync (syncAll) and release: their hook step (StepDirFsync)
// is still taken here, in order. The caller must do so whatever walkSync
// returns.
//
// A directory on the path that a concurrent write made and whose entry
// is not yet known durable (fresh: that write's parent fsync has not
// ended well) counts as made here: its parent is fsynced too (shared with
// the maker's fsync), so this write is not acknowledged before the
// directory holding its file is durable.
func (d *Dir) walkSync(op, name string, dirs []string, create bool, unsynced *[]unsyncedDir) (int, error) {
	cur := d.fd
	for i, seg := range dirs {
		rel := strings.Join(dirs[:i+1], "/")
		next, err := openDir(cur, seg)
		keep := false
		switch {
		case errors.Is(err, unix.ENOENT) && create:
			next, err = d.mkdir(op, name, cur, seg, rel, unsynced != nil)
			if err != nil {
				d.release(cur)
				return -1, err
			}
			if unsynced != nil {
				*unsynced = append(*unsynced, unsyncedDir{fd: cur, child: rel})
				keep = true
			}
		case err != nil:
			err = walkErr(op, name, cur, seg, rel, err)
			d.release(cur)
			return -1, err
		case create && d.fresh.has(rel):
			if err := d.syncParent(op, name, cur, rel, unsynced); err != nil {
				d.release(next)
				d.release(cur)
				return -1, err
			}
			keep = unsynced != nil
		}
		if !keep {
			d.release(cur)
		}
		cur = next
		var st unix.Stat_t
		if err := unix.Fstat(cur, &st); err != nil {
			d.release(cur)
			return -1, ioErr(op, name, "stat "+rel, err)
		}
		if msg := d.dirProblem(&st); msg != "" {
			d.release(cur)
			return -1, ioErr(op, name, rel+": "+msg, nil)
		}
	}
	return cur, nil
}

// mkdir creates the directory seg (at rel) inside parent with mode 0700,
// opens it, and fsyncs parent so the new entry is durable (with noSync,
// takes the hook's StepDirFsync but leaves the fsync to the caller).
func (d *Dir) mkdir(op, name string, parent int, seg, rel string, noSync bool) (int, error) {
	if err := callHook(d.hook, op, name, StepMkdir, rel); err != nil {
		return -1, err
	}
	// Marked fresh before it exists, so a concurrent write that opens it
	// from now on knows its entry may not be durable yet.
	d.fresh.add(rel)
	err := unix.Mkdirat(parent, seg, 0o700)
	created := err == nil
	if !created {
		d.fresh.undo(rel)
	}
	if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: made by a concurrent write
		return -1, ioErr(op, name, "mkdir "+rel, err)
	}
	fd, err := openDir(parent, seg)
	if created && errors.Is(err, unix.EACCES) {
		// The umask removed the owner's read bit from the directory we
		// just made: set 0700 by name (no escalation even if a racer
		// swapped in a symlink: the open below refuses it) and retry.
		if err = chmodAt(parent, seg, 0o700); err == nil {
			fd, err = openDir(parent, seg)
		}
	}
	if err != nil {
		return -1, walkErr(op, name, parent, seg, rel, err)
	}
	if created {
		if err := unix.Fchmod(fd, 0o700); err != nil { // in case the umask removed owner bits
			d.release(fd)
			return -1, ioErr(op, name, "chmod "+rel, err)
		}
	}
	if noSync {
		if err := callHook(d.hook, op, name, StepDirFsync, parentOf(rel)); err != nil {
			d.release(fd)
			return -1, err
		}
		return fd, nil
	}
	if err := d.fsyncDir(op, name, parent, parentOf(rel)); err != nil {
		d.release(fd)
		return -1, err
	}
	d.fresh.drop(rel)
	return fd, nil
}

// syncParent makes the entry of the fresh directory rel in parent durable
// for this write: it takes the hook's StepDirFsync and, with unsynced nil,
// fsyncs parent now; else it appends parent to *unsynced for syncAll (the
// caller then keeps parent open).
func (d *Dir) syncParent(op, name string, parent int, rel string, unsynced *[]unsyncedDir) error {
	if unsynced == nil {
		if err := d.fsyncDir(op, name, parent, parentOf(rel)); err != nil {
			return err
		}
		d.fresh.drop(rel)
		return nil
	}
	if err := callHook(d.hook, op, name, StepDirFsync, parentOf(rel)); err != nil {
		return err
	}
	*unsynced = append(*unsynced, unsyncedDir{fd: parent, child: rel})
	return nil
}

// unsyncedDir is a directory whose fsync a write still owes (walkSync):
// fd is open; child is the directory (storage path) made, or found fresh,
// in it.
type unsyncedDir struct {
	fd    int
	child string
}

// freshDirs is the set of directories (storage paths) this Dir made whose
// entry is not yet known durable: made, and no fsync of their parent that
// began after the mkdir has ended without error. A directory whose
// maker's fsync failed stays fresh; every later write through it fsyncs
// its parent.
type freshDirs struct {
	mu sync.Mutex
	m  map[string]int // path -> adds not withdrawn (undo)
}

// add records that rel is about to be made.
func (f *freshDirs) add(rel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]int{}
	}
	f.m[rel]++
}

// undo withdraws an add whose mkdir made nothing.
func (f *freshDirs) undo(rel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[rel]--; f.m[rel] <= 0 {
		delete(f.m, rel)
	}
}

// drop records that an fsync of rel's parent that began after rel was
// made ended well: rel's entry is durable.
func (f *freshDirs) drop(rel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, rel)
}

func (f *freshDirs) has(rel string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[rel] > 0
}

// syncAll fsyncs the directories fds (from walkSync) concurrently with
// also (if not nil) and releases them; it returns the errors. The fsyncs
// of one directory are shared with concurrent writes (dirSyncs): every
// new key's directory is made in its purpose directory.
func (d *Dir) syncAll(op, name string, fds []unsyncedDir, also func() error) error {
	errs := make([]error, len(fds)+1)
	var wg sync.WaitGroup
	for i, u := range fds {
		wg.Go(func() {
			if err := d.syncs.fsync(u.fd); err != nil {
				errs[i] = ioErr(op, name, "fsync the parent of a new directory", err)
				return
			}
			d.fresh.drop(u.child)
		})
	}
	if also != nil {
		errs[len(fds)] = also()
	}
	wg.Wait()
	for _, u := range fds {
		d.release(u.fd)
	}
	return errors.Join(errs...)
}

// chmodAt sets the mode of name inside dir, without following a symlink
// where the kernel supports it (fchmodat2, Linux 6.6).
func chmodAt(dir int, name string, mode uint32) error {
	err := unix.Fchmodat(dir, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = unix.Fchmodat(dir, name, mode, 0)
	}
	return err
}

// walkErr explains why the directory seg (at rel) inside parent did not
// open: missing (ENOENT), a symlink, not a directory, or another failure.
func walkErr(op, name string, parent int, seg, rel string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return notFound(op, name, err)
	case errors.Is(err, unix.ELOOP):
		return symlinkErr(op, name, rel)
	case errors.Is(err, unix.ENOTDIR):
		var st unix.Stat_t
		if unix.Fstatat(parent, seg, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return symlinkErr(op, name, rel)
		}
		return ioErr(op, name, rel+" is not a directory", err)
	default:
		return ioErr(op, name, "open directory "+rel, err)
	}
}

// dirProblem returns why a directory in the tree (or the root) is refused,
// or "" if it is fine: it must be owned by the effective uid and not
// writable by group or others.
func (d *Dir) dirProblem(st *unix.Stat_t) string {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return "not a directory (" + fileType(st.Mode) + ")"
	case st.Uid != d.euid:
		return fmt.Sprintf("owned by uid %d, not %d", st.Uid, d.euid)
	case st.Mode&0o022 != 0:
		return fmt.Sprintf("writable by group or others (mode %#o)", st.Mode&0o7777)
	}
	return ""
}

// fileProblem returns why a file is refused for reading, or "" if it is
// fine: a regular file with one link (or none: replaced since opened),
// owned by the effective uid, without group or other permissions, at most
// MaxFileSize bytes.
func (d *Dir) fileProblem(st *unix.Stat_t) string {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "not a regular file (" + fileType(st.Mode) + ")"
	case st.Nlink > 1:
		// Nlink 0 is fine: a concurrent write renamed a new file over
		// this one after we opened it, and we read the old content whole.
		return fmt.Sprintf("hard-linked file (%d links)", st.Nlink)
	case st.Uid != d.euid:
		return fmt.Sprintf("owned by uid %d, not %d", st.Uid, d.euid)
	case st.Mode&0o077 != 0:
		return fmt.Sprintf("group or world permissions (mode %#o)", st.Mode&0o7777)
	case st.Size < 0 || st.Size > MaxFileSize:
		return fmt.Sprintf("file of %d bytes, over the %d-byte limit", st.Size, MaxFileSize)
	}
	return ""
}

// fileType names the type bits of mode.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "unknown file type"
}

// tempName returns a fresh temporary file name: tempPrefix and 32 random
// hex digits.
func tempName() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return tempPrefix + hex.EncodeToString(b[:]), nil
}

// sweepDir removes the temporary files left by a crash in the directory
// fd (at rel) and below, without following symlinks, then fsyncs each
// directory it changed.
func (d *Dir) sweepDir(fd int, rel string) error {
	const op = "sweep"
	names, err := readNames(fd)
	if err != nil {
		return ioErr(op, d.root, "list "+rel, err)
	}
	removed := false
	for _, n := range names {
		childRel := joinRel(rel, n)
		var st unix.Stat_t
		err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return ioErr(op, d.root, "stat "+childRel, err)
		}
		typ := st.Mode & unix.S_IFMT
		switch {
		case strings.HasPrefix(n, tempPrefix) && (typ == unix.S_IFREG || typ == unix.S_IFLNK):
			if err := callHook(d.hook, op, d.root, StepRemove, childRel); err != nil {
				return err
			}
			if err := unix.Unlinkat(fd, n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return ioErr(op, d.root, "remove "+childRel, err)
			}
			removed = true
		case typ == unix.S_IFDIR && !strings.HasPrefix(n, ".") && len(childRel) < MaxPathLen:
			// Deeper than MaxPathLen no storage path reaches, so no
			// write of ours left anything there.
			child, err := openDir(fd, n)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				continue // replaced since listed: not ours to follow
			}
			if err != nil {
				return ioErr(op, d.root, "open directory "+childRel, err)
			}
			err = d.sweepDir(child, childRel)
			d.release(child)
			if err != nil {
				return err
			}
		}
	}
	if removed {
		return d.fsyncDir(op, d.root, fd, rel)
	}
	return nil
}

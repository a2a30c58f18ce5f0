//go:build linux

package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// lockName is the lock file at the top of the tree; tempPrefix starts the
// name of every temporary file. Both start with a dot, which CheckPath
// refuses, so no storage path can name them.
const (
	lockName   = ".lock"
	tempPrefix = ".tmp-"
)

// Dir is a Storage on a local directory (Linux). Every operation walks
// from a file descriptor of the root, one component at a time, without
// following symlinks; writes are atomic and durable (temporary file,
// fsync, rename, directory fsync). A Dir holds an exclusive lock on the
// directory until Close. It is safe for concurrent use.
type Dir struct {
	root string // as given to OpenDir, for messages
	hook Hook
	euid uint32

	mu     sync.RWMutex // held for reading by operations, for writing by Close
	fd     int          // the root directory; -1 once closed
	lockFD int          // the locked .lock file; -1 once closed
}

// An Option configures OpenDir.
type Option func(*dirConfig)

type dirConfig struct {
	hook Hook
}

// WithHook installs a fault-injection hook called before every step of a
// write, a removal and the temporary-file sweep (see Hook). For tests.
func WithHook(h Hook) Option {
	return func(c *dirConfig) { c.hook = h }
}

// OpenDir opens the state directory root, creating it (mode 0700, parents
// must exist) if it is missing. It refuses a root that is a symlink, not a
// directory, not owned by the effective uid, or writable by group or
// others (ErrIO); takes an exclusive lock on root/.lock (ErrUnavailable if
// another process, or another Dir, holds it); and removes the temporary
// files that a crash may have left anywhere in the tree.
func OpenDir(root string, opts ...Option) (*Dir, error) {
	var cfg dirConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if root == "" || strings.IndexByte(root, 0) >= 0 {
		return nil, provider.Errorf(provider.EINVAL, "invalid state directory %q", root)
	}
	d := &Dir{root: root, hook: cfg.hook, euid: uint32(unix.Geteuid()), fd: -1, lockFD: -1}
	if err := d.openRoot(); err != nil {
		return nil, err
	}
	if err := d.lock(); err != nil {
		d.closeFDs()
		return nil, err
	}
	if err := d.sweepDir(d.fd, "."); err != nil {
		d.closeFDs()
		return nil, err
	}
	return d, nil
}

// openRoot creates root if missing, opens it without following a symlink
// and checks its type, owner and mode.
func (d *Dir) openRoot() error {
	what := "state directory " + d.root
	created := false
	switch err := unix.Mkdir(d.root, 0o700); {
	case err == nil:
		created = true
	case errors.Is(err, unix.EEXIST):
	default:
		return provider.Errorf(provider.EIO, "create %s: %w", what, err)
	}
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open(d.root, flags, 0)
	if created && errors.Is(err, unix.EACCES) {
		// The umask removed the owner's read bit from the root we just
		// made.
		if err = unix.Chmod(d.root, 0o700); err == nil {
			fd, err = unix.Open(d.root, flags, 0)
		}
	}
	if err != nil {
		var st unix.Stat_t
		if unix.Lstat(d.root, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return provider.Errorf(provider.EIO, "%s is a symlink", what)
		}
		if errors.Is(err, unix.ENOTDIR) {
			return provider.Errorf(provider.EIO, "%s is not a directory: %w", what, err)
		}
		return provider.Errorf(provider.EIO, "open %s: %w", what, err)
	}
	d.fd = fd
	if created {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			d.closeFDs()
			return provider.Errorf(provider.EIO, "chmod %s: %w", what, err)
		}
		if err := fsyncPath(filepath.Dir(d.root)); err != nil {
			d.closeFDs()
			return provider.Errorf(provider.EIO, "fsync the parent of %s: %w", what, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.closeFDs()
		return provider.Errorf(provider.EIO, "stat %s: %w", what, err)
	}
	if msg := d.dirProblem(&st); msg != "" {
		d.closeFDs()
		return provider.Errorf(provider.EIO, "%s: %s", what, msg)
	}
	return nil
}

// fsyncPath fsyncs the directory at path (used once, for the root's
// parent, which is outside the tree and reached by name). A parent we may
// not read (mode 0711) cannot be fsynced: that is skipped.
func fsyncPath(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		return nil
	}
	if err != nil {
		return err
	}
	serr := unix.Fsync(fd)
	cerr := unix.Close(fd)
	return errors.Join(serr, cerr)
}

// lock opens root/.lock (0600) and takes an exclusive, non-blocking flock.
func (d *Dir) lock() error {
	fd, err := unix.Openat(d.fd, lockName,
		unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return provider.Errorf(provider.EIO, "lock state directory %s: symlink in state directory: %s", d.root, lockName)
		}
		return provider.Errorf(provider.EIO, "lock state directory %s: open %s: %w", d.root, lockName, err)
	}
	d.lockFD = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return provider.Errorf(provider.EIO, "lock state directory %s: stat %s: %w", d.root, lockName, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != d.euid {
		return provider.Errorf(provider.EIO,
			"lock state directory %s: %s is not a regular file owned by uid %d", d.root, lockName, d.euid)
	}
	if st.Mode&0o777 != 0o600 {
		if err := unix.Fchmod(fd, 0o600); err != nil {
			return provider.Errorf(provider.EIO, "lock state directory %s: chmod %s: %w", d.root, lockName, err)
		}
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EWOULDBLOCK):
		return provider.Errorf(provider.EUNAVAILABLE, "state directory %s is in use by another process: %w", d.root, err)
	default:
		return provider.Errorf(provider.EIO, "lock state directory %s: %w", d.root, err)
	}
}

// Close releases the lock and the root. Operations after Close fail with
// ErrIO; a second Close does nothing.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	if err := d.closeFDs(); err != nil {
		return provider.Errorf(provider.EIO, "close state directory %s: %w", d.root, err)
	}
	return nil
}

// closeFDs closes the lock file (releasing the lock) and the root.
func (d *Dir) closeFDs() error {
	var errs []error
	if d.lockFD >= 0 {
		errs = append(errs, unix.Close(d.lockFD))
		d.lockFD = -1
	}
	if d.fd >= 0 {
		errs = append(errs, unix.Close(d.fd))
		d.fd = -1
	}
	return errors.Join(errs...)
}

// begin checks name and takes the read lock; on success the caller must
// call d.mu.RUnlock.
func (d *Dir) begin(op, name string) ([]string, error) {
	segs, err := splitPath(name)
	if err != nil {
		return nil, err
	}
	d.mu.RLock()
	if d.fd < 0 {
		d.mu.RUnlock()
		return nil, provider.Errorf(provider.EIO, "%s %s: state directory %s is closed: %w", op, name, d.root, fs.ErrClosed)
	}
	return segs, nil
}

// ReadFile returns the content of the file at name. It refuses (ErrIO) a
// symlink anywhere on the path, a file that is not regular, hard-linked,
// owned by another uid, accessible to group or others, or larger than
// MaxFileSize. A missing file or directory is ErrNotFound.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	const op = "read"
	segs, err := d.begin(op, name)
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	dirfd, err := d.walk(op, name, segs[:len(segs)-1], false)
	if err != nil {
		return nil, err
	}
	defer d.release(dirfd)

	fd, err := unix.Openat(dirfd, segs[len(segs)-1],
		unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, notFound(op, name, err)
	case errors.Is(err, unix.ELOOP):
		return nil, symlinkErr(op, name, name)
	case err != nil:
		return nil, ioErr(op, name, "open", err)
	}
	// Closing a file opened read-only loses nothing.
	defer func() { _ = unix.Close(fd) }()

	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, ioErr(op, name, "stat", err)
	}
	if msg := d.fileProblem(&st); msg != "" {
		return nil, ioErr(op, name, msg, nil)
	}
	return readAll(op, name, fd, st.Size)
}

// readAll reads fd to its end, refusing more than MaxFileSize bytes.
func readAll(op, name string, fd int, size int64) ([]byte, error) {
	buf := make([]byte, 0, size+1) // size ≤ MaxFileSize: checked by fileProblem
	for {
		if len(buf) > MaxFileSize {
			return nil, ioErr(op, name, fmt.Sprintf("file grew over the %d-byte limit while read", MaxFileSize), nil)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):min(cap(buf), MaxFileSize+1)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, ioErr(op, name, "read", err)
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// WriteFile replaces the file at name with data, atomically and durably:
// missing parent directories are created (0700) and their parents
// fsynced; data goes to a temporary file (0600) in the target's directory,
// which is fsynced, renamed over the target, and the directory fsynced.
// On failure the temporary file is removed and the target keeps its old
// content, except after a failed final directory fsync, when it may hold
// either. A symlink on the path or at the target is refused (ErrIO), data
// over MaxFileSize is ErrTooLarge. The root is checked again first (owner
// and mode, through its descriptor): a root made group- or
// world-writable, or given to another uid, while the daemon runs refuses
// every write (ErrIO).
func (d *Dir) WriteFile(name string, data []byte) error {
	const op = "write"
	if len(data) > MaxFileSize {
		if err := CheckPath(name); err != nil {
			return err
		}
		return tooLarge(name, len(data))
	}
	segs, err := d.begin(op, name)
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := d.checkRoot(op, name); err != nil {
		return err
	}
	dirfd, err := d.walk(op, name, segs[:len(segs)-1], true)
	if err != nil {
		return err
	}
	defer d.release(dirfd)
	last := segs[len(segs)-1]
	dir := parentOf(name)

	// The rename would replace a symlink rather than follow it, but a
	// symlink here was planted: refuse it, as ReadFile does.
	var st unix.Stat_t
	switch err := unix.Fstatat(dirfd, last, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return ioErr(op, name, "stat", err)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return symlinkErr(op, name, name)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return ioErr(op, name, "not a regular file ("+fileType(st.Mode)+")", nil)
	}

	tmp, err := tempName()
	if err != nil {
		return ioErr(op, name, "temp file name", err)
	}
	tmpRel := joinRel(dir, tmp)
	if err := callHook(d.hook, op, name, StepCreateTemp, name); err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, tmp,
		unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0o600)
	if err != nil {
		return ioErr(op, name, "create temp file "+tmpRel, err)
	}
	fail := func(cause error) error {
		return d.abandonTemp(op, name, dirfd, tmp, tmpRel, fd, cause)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return fail(ioErr(op, name, "chmod temp file", err))
	}
	if err := callHook(d.hook, op, name, StepWrite, name); err != nil {
		return fail(err)
	}
	if err := writeAll(fd, data); err != nil {
		return fail(ioErr(op, name, "write temp file", err))
	}
	if err := callHook(d.hook, op, name, StepFsync, name); err != nil {
		return fail(err)
	}
	if err := unix.Fsync(fd); err != nil {
		return fail(ioErr(op, name, "fsync temp file", err))
	}
	cerr := unix.Close(fd)
	fd = -1
	if cerr != nil {
		return fail(ioErr(op, name, "close temp file", cerr))
	}
	if err := callHook(d.hook, op, name, StepRename, name); err != nil {
		return fail(err)
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, last); err != nil {
		return fail(ioErr(op, name, "rename temp file", err))
	}
	return d.fsyncDir(op, name, dirfd, dir)
}

// checkRoot re-checks the root through its descriptor (one fstat) before
// a write: OpenDir checked it, but its owner or mode can change while the
// daemon runs (chmod 0777 by mistake), and a root writable by others lets
// them swap whole subtrees — a new key directory included.
func (d *Dir) checkRoot(op, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return ioErr(op, name, "stat state directory "+d.root, err)
	}
	if msg := d.dirProblem(&st); msg != "" {
		return ioErr(op, name, fmt.Sprintf("state directory %s is now %s; refusing to write until it is fixed "+
			"(chmod 0700 %s, chown it to uid %d, and check that nothing else in it changed)", d.root, msg, d.root, d.euid), nil)
	}
	return nil
}

// abandonTemp cleans up after a failed write: closes fd (if open) and
// removes the temporary file. The hook is consulted before the removal, so
// a simulated crash leaves the file behind for the next sweep.
func (d *Dir) abandonTemp(op, name string, dirfd int, tmp, tmpRel string, fd int, cause error) error {
	var errs []error
	if fd >= 0 {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, err)
		}
	}
	if err := callHook(d.hook, op, name, StepRemove, tmpRel); err != nil {
		errs = append(errs, err)
	} else if err := unix.Unlinkat(dirfd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return cause
	}
	return ioErr(op, name, "temp file "+tmpRel+" left behind (the next OpenDir sweeps it)",
		errors.Join(append([]error{cause}, errs...)...))
}

// writeAll writes data to fd, retrying short writes and EINTR.
func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		data = data[n:]
	}
	return nil
}

// fsyncDir fsyncs the directory fd (at rel) after an entry changed.
func (d *Dir) fsyncDir(op, name string, fd int, rel string) error {
	if err := callHook(d.hook, op, name, StepDirFsync, rel); err != nil {
		return err
	}
	if err := unix.Fsync(fd); err != nil {
		return ioErr(op, name, "fsync directory "+rel, err)
	}
	return nil
}

// Remove deletes the file at name and fsyncs its directory. A missing
// file, or a missing directory on its path, is not an error; a directory
// at name or a symlink on the path is ErrIO.
func (d *Dir) Remove(name string) error {
	const op = "remove"
	segs, err := d.begin(op, name)
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := d.checkRoot(op, name); err != nil {
		return err
	}
	dirfd, err := d.walk(op, name, segs[:len(segs)-1], false)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.release(dirfd)
	if err := callHook(d.hook, op, name, StepRemove, name); err != nil {
		return err
	}
	// Unlinking an already missing file still fsyncs the directory: an
	// earlier Remove may have failed after its unlink.
	err = unix.Unlinkat(dirfd, segs[len(segs)-1], 0)
	switch {
	case err == nil || errors.Is(err, unix.ENOENT):
	case errors.Is(err, unix.EISDIR):
		return ioErr(op, name, "is a directory", err)
	default:
		return ioErr(op, name, "unlink", err)
	}
	return d.fsyncDir(op, name, dirfd, parentOf(name))
}

// ReadDir lists the directory at name, sorted by name, without the names
// starting with a dot (temporary files, the lock). A missing directory is
// ErrNotFound; a symlink on the path or in the listing, or an entry that
// is neither a regular file nor a directory, is ErrIO.
func (d *Dir) ReadDir(name string) ([]fs.DirEntry, error) {
	const op = "readdir"
	segs, err := d.begin(op, name)
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	fd, err := d.walk(op, name, segs, false)
	if err != nil {
		return nil, err
	}
	defer d.release(fd)
	names, err := readNames(fd)
	if err != nil {
		return nil, ioErr(op, name, "list", err)
	}
	slices.Sort(names)
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			continue
		}
		var st unix.Stat_t
		err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue // removed since listed
		}
		if err != nil {
			return nil, ioErr(op, name, "stat "+n, err)
		}
		e := entry{name: n, mode: fs.FileMode(st.Mode & 0o777), size: st.Size, mod: time.Unix(st.Mtim.Unix())}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.mode |= fs.ModeDir
			out = append(out, e)
		case unix.S_IFREG:
			out = append(out, e)
		case unix.S_IFLNK:
			return nil, symlinkErr(op, name, name+"/"+n)
		default:
			return nil, ioErr(op, name, "unexpected "+fileType(st.Mode)+": "+name+"/"+n, nil)
		}
	}
	return out, nil
}

// readNames returns the names in the directory fd, except "." and "..".
func readNames(fd int) ([]string, error) {
	var names []string
	buf := make([]byte, 8<<10)
	for {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

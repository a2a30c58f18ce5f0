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

// lockName is the lock file at the top of the tree; tempDirName the
// directory that holds the temporary files: at the top of the tree for
// the files there, and in each directory at the top for the files below
// it (so that a filesystem mounted there has its own, and a rename never
// crosses filesystems); tempPrefix starts the name of every temporary
// file. All start with a dot, which CheckPath refuses, so no storage path
// can name them.
const (
	lockName    = ".lock"
	tempDirName = ".tmp"
	tempPrefix  = ".tmp-"
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
	tmpFD  int          // the root's temporary-file directory .tmp; -1 once closed

	tmpMu sync.Mutex     // guards temps
	temps map[string]int // <top>/.tmp by top-level directory name, opened on first use

	syncs dirSyncs  // shared fsyncs of the parents of new directories
	fresh freshDirs // directories made whose entry is not yet durable
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
// another process, or another Dir, holds it); opens (creating it if
// missing) root/.tmp; and removes the temporary files that a crash left
// there and in <top>/.tmp of each directory <top> at the top of the tree
// (where writes make their temporary files): one directory read per
// top-level directory, however many files the tree holds. Only when it
// creates root/.tmp (a state written by an older version, which made its
// temporary files beside their targets) does it walk the whole tree for
// them, once.
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
	d := &Dir{root: root, hook: cfg.hook, euid: uint32(unix.Geteuid()), fd: -1, lockFD: -1, tmpFD: -1, temps: map[string]int{}}
	if err := d.openRoot(); err != nil {
		return nil, err
	}
	if err := d.lock(); err != nil {
		// The lock or open error is the one to report; closing a
		// descriptor we only read loses nothing.
		_ = d.closeFDs()
		return nil, err
	}
	created, err := d.openTemp()
	if err == nil && created {
		err = d.sweepDir(d.fd, ".")
	}
	if err == nil {
		err = d.sweepTemp(d.tmpFD, tempDirName)
	}
	if err == nil {
		err = d.sweepTops()
	}
	if err != nil {
		_ = d.closeFDs() // as above: the sweep's error is the one to report
		return nil, err
	}
	return d, nil
}

// openTemp opens root/.tmp without following a symlink, creating it
// (0700, the root fsynced) if it is missing, and checks it as every
// directory of the tree (owner, not writable by group or others). It
// reports whether it created it.
func (d *Dir) openTemp() (bool, error) {
	const op = "open"
	fd, err := openDir(d.fd, tempDirName)
	created := false
	if errors.Is(err, unix.ENOENT) {
		fd, err = d.mkdir(op, d.root, d.fd, tempDirName, tempDirName, false)
		created = err == nil
		if err != nil {
			return false, err
		}
	} else if err != nil {
		return false, walkErr(op, d.root, d.fd, tempDirName, tempDirName, err)
	}
	d.tmpFD = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, ioErr(op, d.root, "stat "+tempDirName, err)
	}
	if msg := d.dirProblem(&st); msg != "" {
		return false, ioErr(op, d.root, tempDirName+": "+msg, nil)
	}
	return created, nil
}

// sweepTops sweeps <top>/.tmp of each directory at the top of the tree
// that has one, keeping it open for writes below <top>.
func (d *Dir) sweepTops() error {
	const op = "sweep"
	// A descriptor of its own: a listing reads from the descriptor's
	// offset, which an earlier listing of d.fd left at the end.
	rootfd, err := openDir(d.fd, ".")
	if err != nil {
		return ioErr(op, d.root, "open .", err)
	}
	names, err := readNames(rootfd)
	d.release(rootfd)
	if err != nil {
		return ioErr(op, d.root, "list .", err)
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.HasPrefix(n, ".") || CheckPath(n) != nil {
			continue
		}
		top, err := openDir(d.fd, n)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			continue // not a directory of ours: the walk of a write refuses it
		}
		if err != nil {
			return ioErr(op, d.root, "open directory "+n, err)
		}
		fd, err := d.openTopTemp(op, d.root, n, top, false)
		d.release(top)
		if err != nil {
			return err
		}
		if fd < 0 {
			continue
		}
		if err := d.sweepTemp(fd, n+"/"+tempDirName); err != nil {
			return err
		}
	}
	return nil
}

// openTopTemp opens <top>/.tmp inside the directory topfd (the top-level
// directory named top) without following a symlink and checks it as every
// directory of the tree; with create it makes it if missing (0700, top
// fsynced; no hook step: an empty temporary directory changes no file).
// Without create, a missing one is -1, nil. The result is kept in
// d.temps.
func (d *Dir) openTopTemp(op, name, top string, topfd int, create bool) (int, error) {
	rel := top + "/" + tempDirName
	fd, err := openDir(topfd, tempDirName)
	if errors.Is(err, unix.ENOENT) {
		if !create {
			return -1, nil
		}
		merr := unix.Mkdirat(topfd, tempDirName, 0o700)
		if merr != nil && !errors.Is(merr, unix.EEXIST) {
			return -1, ioErr(op, name, "mkdir "+rel, merr)
		}
		fd, err = openDir(topfd, tempDirName)
		if merr == nil && errors.Is(err, unix.EACCES) {
			if err = chmodAt(topfd, tempDirName, 0o700); err == nil {
				fd, err = openDir(topfd, tempDirName)
			}
		}
		if err == nil && merr == nil {
			if cerr := unix.Fchmod(fd, 0o700); cerr != nil {
				d.release(fd)
				return -1, ioErr(op, name, "chmod "+rel, cerr)
			}
			if serr := unix.Fsync(topfd); serr != nil {
				d.release(fd)
				return -1, ioErr(op, name, "fsync directory "+top, serr)
			}
		}
	}
	if err != nil {
		return -1, walkErr(op, name, topfd, tempDirName, rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.release(fd)
		return -1, ioErr(op, name, "stat "+rel, err)
	}
	if msg := d.dirProblem(&st); msg != "" {
		d.release(fd)
		return -1, ioErr(op, name, rel+": "+msg, nil)
	}
	d.tmpMu.Lock()
	defer d.tmpMu.Unlock()
	if old, ok := d.temps[top]; ok { // opened by a concurrent write
		d.release(fd)
		return old, nil
	}
	d.temps[top] = fd
	return fd, nil
}

// tempDir returns the temporary-file directory for a write of name
// (segments segs) and its path: root/.tmp for a file at the top of the
// tree, <top>/.tmp for a file below the directory <top>, opened (made if
// missing) on first use. The caller holds d.mu for reading.
func (d *Dir) tempDir(op, name string, segs []string) (int, string, error) {
	if len(segs) == 1 {
		return d.tmpFD, tempDirName, nil
	}
	top := segs[0]
	d.tmpMu.Lock()
	fd, ok := d.temps[top]
	d.tmpMu.Unlock()
	if ok {
		return fd, top + "/" + tempDirName, nil
	}
	topfd, err := d.walk(op, name, segs[:1], false)
	if err != nil {
		return -1, "", err
	}
	fd, err = d.openTopTemp(op, name, top, topfd, true)
	d.release(topfd)
	return fd, top + "/" + tempDirName, err
}

// sweepTemp removes the temporary files a crash left in the temporary
// directory tmpFD (at tmpRel) and fsyncs it if it changed.
func (d *Dir) sweepTemp(tmpFD int, tmpRel string) error {
	const op = "sweep"
	names, err := readNames(tmpFD)
	if err != nil {
		return ioErr(op, d.root, "list "+tmpRel, err)
	}
	removed := false
	for _, n := range names {
		if !strings.HasPrefix(n, tempPrefix) {
			continue
		}
		rel := tmpRel + "/" + n
		var st unix.Stat_t
		err := unix.Fstatat(tmpFD, n, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return ioErr(op, d.root, "stat "+rel, err)
		}
		if typ := st.Mode & unix.S_IFMT; typ != unix.S_IFREG && typ != unix.S_IFLNK {
			continue
		}
		if err := callHook(d.hook, op, d.root, StepRemove, rel); err != nil {
			return err
		}
		if err := unix.Unlinkat(tmpFD, n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return ioErr(op, d.root, "remove "+rel, err)
		}
		removed = true
	}
	if removed {
		return d.fsyncDir(op, d.root, tmpFD, tmpRel)
	}
	return nil
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
	if d.tmpFD >= 0 {
		errs = append(errs, unix.Close(d.tmpFD))
		d.tmpFD = -1
	}
	d.tmpMu.Lock()
	for top, fd := range d.temps {
		errs = append(errs, unix.Close(fd))
		delete(d.temps, top)
	}
	d.tmpMu.Unlock()
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
// fsynced; data goes to a temporary file (0600) in root/.tmp, which is
// fsynced, renamed over the target, and the target's directory fsynced.
// On failure the temporary file is removed and the target keeps its old
// content, except after a failed final directory fsync, when it may hold
// either. A symlink on the path or at the target is refused (ErrIO), data
// over MaxFileSize is ErrTooLarge. The root is checked again first (owner
// and mode, through its descriptor): a root made group- or
// world-writable, or given to another uid, while the daemon runs refuses
// every write (ErrIO).
func (d *Dir) WriteFile(name string, data []byte) error {
	p, err := d.prepare("write", name, data)
	if err != nil {
		return err
	}
	return p.commit()
}

// PrepareWrite is WriteFile in two parts. It does now everything that is
// invisible at name: the missing parent directories (made and their
// parents fsynced, as WriteFile does: an empty directory is no file), and
// the temporary file in root/.tmp, written and fsynced. commit then
// renames it over name and fsyncs name's directory: when commit returns
// nil the write is durable, as after WriteFile. abort removes the
// temporary file instead. The caller must call one of them, once (a
// second call, or a call of the other, does nothing and returns nil);
// until then the temporary file holds the data, and a crash leaves it for
// the next OpenDir to sweep. Between the two a caller can wait for
// something that must be durable before the write becomes visible (an
// audit record): the prepared part's fsyncs and that wait overlap.
//
// The hook sees the same steps as for WriteFile, in the same order:
// StepMkdir and StepDirFsync for each missing parent, StepCreateTemp,
// StepWrite and StepFsync in PrepareWrite; StepRename and StepDirFsync in
// commit; abort's removal of the temporary file is a StepRemove.
func (d *Dir) PrepareWrite(name string, data []byte) (commit func() error, abort func() error, err error) {
	p, err := d.prepare("write", name, data)
	if err != nil {
		return nil, nil, err
	}
	return p.commit, p.abort, nil
}

// pending is a prepared write: its temporary file is written and fsynced
// in root/.tmp; commit or abort finishes it.
type pending struct {
	d        *Dir
	op, name string
	dirfd    int // the target's directory, open; -1 for the root (d.fd)
	last     string
	dir      string // the target's directory, as a storage path
	tmpFD    int    // the temporary-file directory (d.tmpFD or one of d.temps)
	tmp      string // the temporary file's name in it
	tmpRel   string // its storage-relative path
	mu       sync.Mutex
	done     bool
}

// prepare is the first part of a write (see PrepareWrite).
func (d *Dir) prepare(op, name string, data []byte) (*pending, error) {
	if len(data) > MaxFileSize {
		if err := CheckPath(name); err != nil {
			return nil, err
		}
		return nil, tooLarge(name, len(data))
	}
	segs, err := d.begin(op, name)
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	if err := d.checkRoot(op, name); err != nil {
		return nil, err
	}
	if err := d.syncs.failure(); err != nil {
		// Refused before the walk makes a directory (see dirSyncs);
		// commit checks again, for a failure after this.
		return nil, ioErr(op, name, "write", err)
	}
	// The parents of the directories the walk makes are fsynced at the
	// end, concurrently with the temporary file's fsync (their hook
	// steps are taken in the documented order all the same).
	var unsynced []unsyncedDir
	settle := func(err error) error {
		if serr := d.syncAll(op, name, unsynced, nil); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	dirfd, err := d.walkSync(op, name, segs[:len(segs)-1], true, &unsynced)
	if err != nil {
		return nil, settle(err)
	}
	p := &pending{d: d, op: op, name: name, dirfd: dirfd, last: segs[len(segs)-1], dir: parentOf(name)}
	if dirfd == d.fd {
		p.dirfd = -1 // the root: used through d.fd, which Close may close
	}
	bail := func(err error) (*pending, error) {
		p.release()
		return nil, settle(err)
	}
	if err := p.checkTarget(dirfd); err != nil {
		return bail(err)
	}
	tmpFD, tmpDir, err := d.tempDir(op, name, segs)
	if err != nil {
		return bail(err)
	}
	tmp, err := tempName()
	if err != nil {
		return bail(ioErr(op, name, "temp file name", err))
	}
	p.tmpFD, p.tmp, p.tmpRel = tmpFD, tmp, tmpDir+"/"+tmp
	if err := callHook(d.hook, op, name, StepCreateTemp, name); err != nil {
		return bail(err)
	}
	fd, err := unix.Openat(tmpFD, tmp,
		unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0o600)
	if err != nil {
		return bail(ioErr(op, name, "create temp file "+p.tmpRel, err))
	}
	fail := func(cause error) (*pending, error) {
		return bail(d.abandonTemp(op, name, p.tmpFD, p.tmp, p.tmpRel, fd, cause))
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
	fds := unsynced
	unsynced = nil
	if err := d.syncAll(op, name, fds, func() error {
		if err := unix.Fsync(fd); err != nil {
			return ioErr(op, name, "fsync temp file", err)
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	cerr := unix.Close(fd)
	fd = -1
	if cerr != nil {
		return fail(ioErr(op, name, "close temp file", cerr))
	}
	return p, nil
}

// checkTarget refuses a target that is a symlink or not a regular file.
// The rename would replace a symlink rather than follow it, but a symlink
// here was planted: refuse it, as ReadFile does.
func (p *pending) checkTarget(dirfd int) error {
	var st unix.Stat_t
	switch err := unix.Fstatat(dirfd, p.last, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return ioErr(p.op, p.name, "stat", err)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return symlinkErr(p.op, p.name, p.name)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return ioErr(p.op, p.name, "not a regular file ("+fileType(st.Mode)+")", nil)
	}
	return nil
}

// release closes the target's directory (unless it is the root).
func (p *pending) release() {
	if p.dirfd >= 0 {
		p.d.release(p.dirfd)
		p.dirfd = -1
	}
}

// finish marks p done and reports whether it was already.
func (p *pending) finish() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.done
	p.done = true
	return was
}

// commit renames the temporary file over the target and fsyncs the
// target's directory.
func (p *pending) commit() error {
	if p.finish() {
		return nil
	}
	d := p.d
	defer p.release()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.fd < 0 {
		return provider.Errorf(provider.EIO, "%s %s: state directory %s is closed: %w", p.op, p.name, d.root, fs.ErrClosed)
	}
	dirfd := p.dirfd
	if dirfd < 0 {
		dirfd = d.fd
	}
	if err := p.checkTarget(dirfd); err != nil {
		return d.abandonTemp(p.op, p.name, p.tmpFD, p.tmp, p.tmpRel, -1, err)
	}
	if err := callHook(d.hook, p.op, p.name, StepRename, p.name); err != nil {
		return d.abandonTemp(p.op, p.name, p.tmpFD, p.tmp, p.tmpRel, -1, err)
	}
	if err := d.syncs.failure(); err != nil {
		// Refused before it is visible (see dirSyncs). A failure that
		// lands between this check and the rename is reported by this
		// write's own directory fsync: visible then, and EIO, as any
		// write whose fsync fails.
		return d.abandonTemp(p.op, p.name, p.tmpFD, p.tmp, p.tmpRel, -1, ioErr(p.op, p.name, "rename temp file", err))
	}
	if err := unix.Renameat(p.tmpFD, p.tmp, dirfd, p.last); err != nil {
		return d.abandonTemp(p.op, p.name, p.tmpFD, p.tmp, p.tmpRel, -1, ioErr(p.op, p.name, "rename temp file", err))
	}
	return d.fsyncDir(p.op, p.name, dirfd, p.dir)
}

// abort removes the temporary file: the target keeps its old content.
func (p *pending) abort() error {
	if p.finish() {
		return nil
	}
	d := p.d
	defer p.release()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.fd < 0 {
		return nil // closed: the next OpenDir sweeps the temporary file
	}
	return d.abandonTemp(p.op, p.name, p.tmpFD, p.tmp, p.tmpRel, -1, nil)
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

// abandonTemp cleans up after a failed (or aborted: cause nil) write:
// closes fd (if open) and removes the temporary file from root/.tmp. The
// hook is consulted before the removal, so a simulated crash leaves the
// file behind for the next sweep.
func (d *Dir) abandonTemp(op, name string, tmpFD int, tmp, tmpRel string, fd int, cause error) error {
	var errs []error
	if fd >= 0 {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, err)
		}
	}
	if err := callHook(d.hook, op, name, StepRemove, tmpRel); err != nil {
		errs = append(errs, err)
	} else if err := unix.Unlinkat(tmpFD, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
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

// fsyncDir fsyncs the directory fd (at rel) after an entry changed. The
// fsync is shared with concurrent callers for the same directory
// (dirSyncs: one that began after the change covers it), so concurrent
// creates in one purpose directory, each renaming its key file into it,
// share their directory fsyncs.
func (d *Dir) fsyncDir(op, name string, fd int, rel string) error {
	if err := callHook(d.hook, op, name, StepDirFsync, rel); err != nil {
		return err
	}
	if err := d.syncs.fsync(fd); err != nil {
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
	if err := d.syncs.failure(); err != nil {
		// Refused before anything is unlinked (see dirSyncs).
		return ioErr(op, name, "unlink", err)
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

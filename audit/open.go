package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// splitPath checks a log path and returns its directory and file name.
func splitPath(path string) (dir, base string, err error) {
	if path == "" || strings.IndexByte(path, 0) >= 0 {
		return "", "", provider.Errorf(provider.EINVAL, "invalid audit log path %q", path)
	}
	// No trailing slash on dir: with one, O_NOFOLLOW would follow a
	// symlink there.
	clean := filepath.Clean(path)
	dir, base = filepath.Dir(clean), filepath.Base(clean)
	if base == "." || base == ".." || base == "/" {
		return "", "", provider.Errorf(provider.EINVAL, "invalid audit log path %q", path)
	}
	return dir, base, nil
}

// openLockedDir opens the log's directory (creating it, 0700, if missing;
// see openDir for the checks) and takes an exclusive flock on it, which
// the Log holds until Close: a second Log on the same directory, in this
// process or another, fails with EUNAVAILABLE. The lock is on the
// directory rather than the file because rotation replaces the file.
func openLockedDir(dir string) (int, error) {
	dfd, err := openDir(dir, unix.Geteuid())
	if err != nil {
		return -1, err
	}
	for {
		err = unix.Flock(dfd, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		closeFD(dfd)
		return -1, provider.Errorf(provider.EUNAVAILABLE, "audit directory %s is in use by another process or Log: %w", dir, err)
	case err != nil:
		closeFD(dfd)
		return -1, provider.Errorf(provider.EIO, "lock audit directory %s: %w", dir, err)
	}
	return dfd, nil
}

// openFile opens the current file of the log at path, base in the
// directory dfd, for appending, creating it (0600) if missing; with
// mustCreate (a rotation) it must not exist yet. It refuses (EIO) a file
// that is a symlink, not a regular file, owned by another user, whose
// mode is not 0600 or that has other hard links. It returns the file and
// its size.
func openFile(dfd int, path, base string, mustCreate bool) (*os.File, int64, error) {
	euid := unix.Geteuid()
	what := "audit log " + path
	created := true
	const flags = unix.O_RDWR | unix.O_APPEND | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK
	fd, err := unix.Openat(dfd, base, flags|unix.O_CREAT|unix.O_EXCL, 0o600)
	if errors.Is(err, unix.EEXIST) && !mustCreate {
		created = false
		fd, err = unix.Openat(dfd, base, flags, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, 0, provider.Errorf(provider.EIO, "%s is a symlink", what)
		}
		return nil, 0, provider.Errorf(provider.EIO, "open %s: %w", what, err)
	}
	fail := func(err error) (*os.File, int64, error) {
		closeFD(fd)
		return nil, 0, err
	}
	if created {
		// The umask may have taken bits away; the directory entry must
		// survive a crash before any record does.
		if err := unix.Fchmod(fd, 0o600); err != nil {
			return fail(provider.Errorf(provider.EIO, "chmod %s: %w", what, err))
		}
		if err := unix.Fsync(dfd); err != nil {
			return fail(provider.Errorf(provider.EIO, "fsync the directory of %s: %w", what, err))
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(provider.Errorf(provider.EIO, "stat %s: %w", what, err))
	}
	if err := checkFile(what, &st, euid); err != nil {
		return fail(err)
	}
	// Non-blocking mode was only for the open (a FIFO planted at the path
	// must not hang it); writes to the regular file block as usual.
	if err := unix.SetNonblock(fd, false); err != nil {
		return fail(provider.Errorf(provider.EIO, "open %s: %w", what, err))
	}
	return os.NewFile(uintptr(fd), path), st.Size, nil
}

// checkFile refuses (EIO) what a log file must not be: not a regular
// file, owned by another user, a mode other than 0600, other hard links.
func checkFile(what string, st *unix.Stat_t, euid int) error {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return provider.Errorf(provider.EIO, "%s is not a regular file", what)
	case int(st.Uid) != euid:
		return provider.Errorf(provider.EIO, "%s is owned by uid %d, not by this process (uid %d)", what, st.Uid, euid)
	case st.Mode&0o7777 != 0o600:
		return provider.Errorf(provider.EIO, "%s has mode %04o, want 0600 (chmod 600 it after checking it)", what, st.Mode&0o7777)
	case st.Nlink != 1:
		return provider.Errorf(provider.EIO, "%s has %d hard links, want 1", what, st.Nlink)
	}
	return nil
}

// openDir creates dir (0700) if missing, opens it without following a
// symlink and checks its owner and mode.
func openDir(dir string, euid int) (int, error) {
	what := "audit directory " + dir
	created := false
	switch err := unix.Mkdir(dir, 0o700); {
	case err == nil:
		created = true
	case errors.Is(err, unix.EEXIST):
	default:
		return -1, provider.Errorf(provider.EIO, "create %s: %w", what, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if created && errors.Is(err, unix.EACCES) {
		// The umask removed the owner's read bit from the directory we
		// just made.
		if err = unix.Chmod(dir, 0o700); err == nil {
			fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		var st unix.Stat_t
		if unix.Lstat(dir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return -1, provider.Errorf(provider.EIO, "%s is a symlink", what)
		}
		if errors.Is(err, unix.ENOTDIR) {
			return -1, provider.Errorf(provider.EIO, "%s is not a directory: %w", what, err)
		}
		return -1, provider.Errorf(provider.EIO, "open %s: %w", what, err)
	}
	fail := func(err error) (int, error) {
		closeFD(fd)
		return -1, err
	}
	if created {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return fail(provider.Errorf(provider.EIO, "chmod %s: %w", what, err))
		}
		if err := syncParent(dir); err != nil {
			return fail(provider.Errorf(provider.EIO, "fsync the parent of %s: %w", what, err))
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(provider.Errorf(provider.EIO, "stat %s: %w", what, err))
	}
	switch {
	case int(st.Uid) != euid:
		return fail(provider.Errorf(provider.EIO, "%s is owned by uid %d, not by this process (uid %d)", what, st.Uid, euid))
	case st.Mode&0o022 != 0:
		return fail(provider.Errorf(provider.EIO, "%s has mode %04o: writable by group or others", what, st.Mode&0o7777))
	}
	return fd, nil
}

// syncParent fsyncs the parent of dir. A parent we may not read (mode
// 0711) cannot be fsynced: that is skipped.
func syncParent(dir string) error {
	fd, err := unix.Open(filepath.Dir(filepath.Clean(dir)), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
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

// closeFD closes a descriptor that was only read from (the directory) or
// is abandoned after an error that is already being reported: a failed
// close loses no data there and would only hide the first error.
func closeFD(fd int) {
	_ = unix.Close(fd)
}

//go:build linux

package strictmodes

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// Open opens the regular file at path (absolute) read-only after checking
// it and every directory above it; what names it in errors ("plugin
// binary"). The returned file is the one checked.
//
// Errors: EINVAL for a relative path or a file that is not regular;
// ENOENT for a missing file or directory; EPERM for a symbolic link
// anywhere on the path (the message names the real path to use instead),
// an owner or mode the checks refuse, or a component the caller may not
// search; EIO otherwise.
func Open(path, what string) (*os.File, error) {
	p, segs, err := clean(what, path)
	if err != nil {
		return nil, err
	}
	dir, err := walk(what, p, segs[:len(segs)-1])
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	name := segs[len(segs)-1]
	var fd int
	for {
		fd, err = unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, openErr(what, p, p, dir, name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, provider.Errorf(provider.EIO, "%s %s: stat: %w", what, p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return nil, provider.Errorf(provider.EINVAL, "%s %s is not a regular file", what, p)
	}
	if why := Problem(st.Uid, st.Mode&0o7777, uint32(unix.Geteuid())); why != "" {
		_ = unix.Close(fd)
		return nil, refusal(what, p, "the file", why)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// CheckDir checks the directory at path (absolute) and every directory
// above it, with the errors of Open.
func CheckDir(path, what string) error {
	p, segs, err := clean(what, path)
	if err != nil {
		return err
	}
	fd, err := walk(what, p, segs)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// walk opens / and then each directory of segs below it, one at a time
// relative to the one above and without following links, checking each;
// it returns an O_PATH descriptor of the last one. p is the whole path,
// for messages.
func walk(what, p string, segs []string) (int, error) {
	euid := uint32(unix.Geteuid())
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open("/", flags, 0)
	if err != nil {
		return -1, provider.Errorf(provider.EIO, "%s %s: open /: %w", what, p, err)
	}
	cur := "/"
	for i := 0; ; i++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			_ = unix.Close(fd)
			return -1, provider.Errorf(provider.EIO, "%s %s: stat %s: %w", what, p, cur, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			_ = unix.Close(fd)
			return -1, provider.Errorf(provider.EINVAL, "%s %s: %s is not a directory", what, p, cur)
		}
		if why := Problem(st.Uid, st.Mode&0o7777, euid); why != "" {
			_ = unix.Close(fd)
			return -1, refusal(what, p, "directory "+cur, why)
		}
		if i == len(segs) {
			return fd, nil
		}
		next := filepath.Join(cur, segs[i])
		var nfd int
		for {
			nfd, err = unix.Openat(fd, segs[i], flags, 0)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			err = openErr(what, p, next, fd, segs[i], err)
			_ = unix.Close(fd)
			return -1, err
		}
		_ = unix.Close(fd)
		fd, cur = nfd, next
	}
}

// openErr explains a failed open of name (at the path at) inside the
// directory dir.
func openErr(what, p, at string, dir int, name string, err error) error {
	var st unix.Stat_t
	isLink := errors.Is(err, unix.ELOOP) ||
		errors.Is(err, unix.ENOTDIR) && unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
	switch {
	case isLink:
		hint := "name the real path"
		if real, rerr := filepath.EvalSymlinks(p); rerr == nil {
			hint += " (" + real + "), which is checked the same way"
		}
		return provider.Errorf(provider.EPERM, "%s %s: %s is a symbolic link; refusing to follow it: %s", what, p, at, hint)
	case errors.Is(err, unix.ENOENT):
		return provider.Errorf(provider.ENOENT, "%s %s: %s does not exist", what, p, at)
	case errors.Is(err, unix.ENOTDIR):
		return provider.Errorf(provider.EINVAL, "%s %s: %s is not a directory", what, p, filepath.Dir(at))
	case errors.Is(err, unix.EACCES):
		return provider.Errorf(provider.EPERM, "%s %s: %s is not accessible: %w", what, p, at, err)
	}
	return provider.Errorf(provider.EIO, "%s %s: open %s: %w", what, p, at, err)
}

// Package unixsock binds a Unix socket in a directory that only its owner
// can change, the way keystored binds its own socket and keystorectl
// ssh-agent binds the agent's: the directory is opened without following
// a symbolic link and refused (never changed) if it is not a directory,
// is owned by another uid, or is writable by group or others; a stale
// socket is removed only if nothing answers on it; the socket is bound
// under umask 0177 and then given its mode, so it is never reachable by
// others in between; and the directory must still be the one checked
// once the socket is bound.
package unixsock

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// MaxPath is the longest Unix socket path Linux binds (sun_path is 108
// bytes with the terminating NUL).
const MaxPath = 107

// Options say how to bind.
type Options struct {
	// DirMode and SockMode are the modes of a directory the caller has
	// just created (Created) and of the socket.
	DirMode, SockMode uint32
	// GID is the group of the socket and of a created directory; -1 for
	// none.
	GID int
	// Created says the caller has just made the directory: Listen then
	// gives it exactly DirMode and GID.
	Created bool
	// Who names the owner in messages: "the daemon" or "the agent".
	Who string
	// Fix ends every refusal of a directory with how else to do it, e.g.
	// "or give the socket a directory of its own that does not exist yet".
	Fix string
	// CheckDir, if set, is one more check of an existing directory (e.g.
	// that the socket's group can search it).
	CheckDir func(dir string, st *unix.Stat_t) error
}

// Listen binds a listening socket at path as the package comment says.
// Refusals are EPERM (the directory), EALREADY (something at path),
// EINVAL (the path); other failures EIO.
func Listen(path string, o Options) (*net.UnixListener, error) {
	if path == "" {
		return nil, provider.Errorf(provider.EINVAL, "empty socket path")
	}
	if len(path) > MaxPath {
		return nil, provider.Errorf(provider.EINVAL, "socket path %s is %d bytes; Linux allows at most %d", path, len(path), MaxPath)
	}
	dir := filepath.Dir(filepath.Clean(path))
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, provider.Errorf(provider.EPERM, "socket directory %s is a symbolic link (symlink) or not a directory; refusing to use it "+
				"(name the real directory, %s)", ShownDir(dir), o.Fix)
		}
		return nil, provider.Errorf(provider.EIO, "socket directory %s: %w", ShownDir(dir), err)
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return nil, provider.Errorf(provider.EIO, "socket directory %s: %w", ShownDir(dir), err)
	}
	if err := checkDir(dir, &st, o); err != nil {
		return nil, err
	}
	if o.Created {
		// Ours: the exact mode (the umask may have removed bits) and group.
		if err := unix.Fchmod(dfd, o.DirMode); err != nil {
			return nil, provider.Errorf(provider.EIO, "socket directory %s: %w", ShownDir(dir), err)
		}
		if o.GID >= 0 && int(st.Gid) != o.GID {
			if err := unix.Fchown(dfd, -1, o.GID); err != nil {
				return nil, provider.Errorf(provider.EIO, "socket directory %s: setting group %d: %w", ShownDir(dir), o.GID, err)
			}
		}
	} else if o.CheckDir != nil {
		if err := o.CheckDir(dir, &st); err != nil {
			return nil, err
		}
	}
	if err := removeStale(path, o.Who); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "socket %s: %w", path, err)
	}
	fail := func(err error) (*net.UnixListener, error) {
		if cerr := l.Close(); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		return nil, err
	}
	if o.GID >= 0 {
		if err := os.Lchown(path, -1, o.GID); err != nil {
			return fail(provider.Errorf(provider.EIO, "socket %s: setting group %d: %w", path, o.GID, err))
		}
	}
	if err := os.Chmod(path, os.FileMode(o.SockMode)); err != nil {
		return fail(provider.Errorf(provider.EIO, "socket %s: %w", path, err))
	}
	// The directory checked above must still be the one the socket is in.
	var now unix.Stat_t
	if err := unix.Lstat(dir, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return fail(provider.Errorf(provider.EPERM, "socket directory %s changed while binding; refusing to serve", ShownDir(dir)))
	}
	return l, nil
}

// checkDir refuses a socket directory that is not a directory, is owned
// by another uid, or is writable by group or others (another user could
// then replace the socket). It never changes it.
func checkDir(dir string, st *unix.Stat_t, o Options) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return provider.Errorf(provider.EPERM, "socket directory %s is not a directory", ShownDir(dir))
	}
	if euid := uint32(os.Geteuid()); st.Uid != euid {
		return provider.Errorf(provider.EPERM, "socket directory %s is owned by uid %d, not by %s's uid %d; refusing to use it "+
			"(a directory it did not create is never changed: chown it to uid %d, %s)", ShownDir(dir), st.Uid, o.Who, euid, euid, o.Fix)
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 {
		return provider.Errorf(provider.EPERM, "socket directory %s is writable by group or others (mode %04o), so another user could replace the socket; "+
			"refusing to use it (a directory it did not create is never changed: chmod go-w %s, %s)", ShownDir(dir), perm, dir, o.Fix)
	}
	return nil
}

// removeStale removes a socket file nothing answers on. A live socket and
// any file that is not a socket are refused (EALREADY).
func removeStale(path, who string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return provider.Errorf(provider.EIO, "socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return provider.Errorf(provider.EALREADY, "socket path %s exists and is not a socket; refusing to replace it", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		if cerr := conn.Close(); cerr != nil {
			return provider.Errorf(provider.EIO, "socket %s: %w", path, cerr)
		}
		return provider.Errorf(provider.EALREADY, "socket %s: another %s is answering on it", path, trimThe(who))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return provider.Errorf(provider.EIO, "removing stale socket %s: %w", path, err)
	}
	return nil
}

// trimThe turns "the daemon" into "daemon".
func trimThe(who string) string {
	if len(who) > 4 && who[:4] == "the " {
		return who[4:]
	}
	return who
}

// ShownDir names dir in messages, with its absolute path when dir is
// relative ("." for a socket named ks.sock).
func ShownDir(dir string) string {
	if filepath.IsAbs(dir) {
		return dir
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return dir + " (" + abs + ")"
	}
	return dir
}

// PeerCred returns the kernel's credentials (SO_PEERCRED) of the process
// at the other end of c: who connected, as the kernel says.
func PeerCred(c syscall.Conn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		cred *unix.Ucred
		gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if gerr != nil {
		return nil, gerr
	}
	return cred, nil
}

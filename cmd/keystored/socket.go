package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest Unix socket path Linux binds (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// socketModes returns the modes of the socket directory and the socket:
// 0700/0600 without a group, 0750/0660 with one.
func socketModes(gid int) (dirMode, sockMode uint32) {
	if gid >= 0 {
		return 0o750, 0o660
	}
	return 0o700, 0o600
}

// listenSocket prepares the socket's directory and binds the socket.
//
// A missing directory is created (0700, or 0750 with a group) and given
// its exact mode and group; its parent must exist. An existing directory
// is never changed: keystored did not create it, and it may be shared (the
// current directory, /run). It is refused if it is a symlink, not a
// directory, owned by another user, or writable by group or others (then
// another user could replace the socket), and, with a group, if members
// of the group cannot search it; the message names the directory and the
// fix. A stale socket file is removed only if nothing answers on it; any
// other file there is refused. The socket is bound under umask 0177 and
// then given its mode (0600, or 0660 with the group), so it is never
// reachable by others in between.
func listenSocket(path string, gid int, logger *slog.Logger) (*net.UnixListener, error) {
	if path == "" {
		return nil, errors.New("socket: empty path")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes; Linux allows at most %d (use a shorter --socket)", path, len(path), maxSocketPath)
	}
	dirMode, sockMode := socketModes(gid)
	dir := filepath.Dir(filepath.Clean(path))
	created := false
	switch err := os.Mkdir(dir, os.FileMode(dirMode)); {
	case err == nil:
		created = true
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("socket directory %s: %w", shownDir(dir), err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("socket directory %s is a symlink or not a directory; refusing to use it "+
				"(name the real directory, or a missing one for keystored to create)", shownDir(dir))
		}
		return nil, fmt.Errorf("socket directory %s: %w", shownDir(dir), err)
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return nil, fmt.Errorf("socket directory %s: %w", shownDir(dir), err)
	}
	if err := checkSocketDir(dir, &st); err != nil {
		return nil, err
	}
	if created {
		// Ours: the exact mode (the umask may have removed bits) and group.
		if err := unix.Fchmod(dfd, dirMode); err != nil {
			return nil, fmt.Errorf("socket directory %s: %w", shownDir(dir), err)
		}
		if gid >= 0 && int(st.Gid) != gid {
			if err := unix.Fchown(dfd, -1, gid); err != nil {
				return nil, fmt.Errorf("socket directory %s: setting group %d: %w", shownDir(dir), gid, err)
			}
		}
		logger.Info("created the socket directory", "dir", dir, "mode", fmt.Sprintf("%04o", dirMode))
	} else if err := checkGroupCanSearch(dir, &st, gid); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	fail := func(err error) (*net.UnixListener, error) {
		if cerr := l.Close(); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		return nil, err
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			return fail(fmt.Errorf("socket %s: setting group %d: %w", path, gid, err))
		}
	}
	if err := os.Chmod(path, os.FileMode(sockMode)); err != nil {
		return fail(fmt.Errorf("socket %s: %w", path, err))
	}
	// The directory checked above must still be the one the socket is in.
	var now unix.Stat_t
	if err := unix.Lstat(dir, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return fail(fmt.Errorf("socket directory %s changed while binding; refusing to serve", shownDir(dir)))
	}
	return l, nil
}

// ownDirHint tells the operator how to give the socket a directory of
// its own, which keystored creates and sets up.
const ownDirHint = "or give the socket a directory of its own that does not exist yet " +
	"(keystored creates it 0700, or 0750 with socket_group), e.g. --socket /run/keystored/keystored.sock"

// shownDir names dir in messages, with its absolute path when dir is
// relative ("." for --socket ks.sock).
func shownDir(dir string) string {
	if filepath.IsAbs(dir) {
		return dir
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return dir + " (" + abs + ")"
	}
	return dir
}

// checkSocketDir refuses a socket directory that is not a directory, is
// owned by another user, or is writable by group or others. keystored
// never changes such a directory; the message says how to fix it.
func checkSocketDir(dir string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("socket directory %s is not a directory", shownDir(dir))
	}
	if euid := uint32(os.Geteuid()); st.Uid != euid {
		return fmt.Errorf("socket directory %s is owned by uid %d, not by the daemon's uid %d; refusing to use it "+
			"(keystored does not change directories it did not create: chown it to uid %d, %s)", shownDir(dir), st.Uid, euid, euid, ownDirHint)
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 {
		return fmt.Errorf("socket directory %s is writable by group or others (mode %04o), so another user could replace the socket; "+
			"refusing to use it (keystored does not change directories it did not create: chmod go-w %s, %s)", shownDir(dir), perm, dir, ownDirHint)
	}
	return nil
}

// checkGroupCanSearch refuses an existing socket directory that members
// of the socket group (gid, -1 for none) cannot search: they could not
// reach the socket.
func checkGroupCanSearch(dir string, st *unix.Stat_t, gid int) error {
	if gid < 0 {
		return nil
	}
	// The kernel applies the group bits to members of the directory's
	// group, and the other bits to everyone else.
	perm := st.Mode & 0o7777
	if int(st.Gid) == gid && perm&0o010 != 0 || int(st.Gid) != gid && perm&0o001 != 0 {
		return nil
	}
	return fmt.Errorf("socket directory %s (mode %04o, group %d) cannot be searched by members of socket_group %d, "+
		"so they could not reach the socket; refusing to use it (keystored does not change directories it did not create: "+
		"chgrp %d %s && chmod g+x %s, %s)", shownDir(dir), perm, st.Gid, gid, gid, dir, dir, ownDirHint)
}

// removeStale removes a socket file left by a daemon that is gone. A
// socket something still answers on, and any file that is not a socket,
// are refused.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("socket path %s exists and is not a socket; refusing to replace it", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		if cerr := conn.Close(); cerr != nil {
			return fmt.Errorf("socket %s: %w", path, cerr)
		}
		return fmt.Errorf("socket %s: another daemon is answering on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}

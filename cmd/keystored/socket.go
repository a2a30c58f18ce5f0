package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/nexus-os/keystored/internal/unixsock"
	"golang.org/x/sys/unix"
)

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
	if len(path) > unixsock.MaxPath {
		return nil, fmt.Errorf("socket path %s is %d bytes; Linux allows at most %d (use a shorter --socket)", path, len(path), unixsock.MaxPath)
	}
	dirMode, sockMode := socketModes(gid)
	dir := filepath.Dir(filepath.Clean(path))
	created := false
	switch err := os.Mkdir(dir, os.FileMode(dirMode)); {
	case err == nil:
		created = true
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("socket directory %s: %w", unixsock.ShownDir(dir), err)
	}
	l, err := unixsock.Listen(path, unixsock.Options{
		DirMode: dirMode, SockMode: sockMode, GID: gid, Created: created,
		Who: "the daemon", Fix: ownDirHint,
		CheckDir: func(dir string, st *unix.Stat_t) error { return checkGroupCanSearch(dir, st, gid) },
	})
	if err != nil {
		return nil, err
	}
	if created {
		logger.Info("created the socket directory", "dir", dir, "mode", fmt.Sprintf("%04o", dirMode))
	}
	return l, nil
}

// ownDirHint tells the operator how to give the socket a directory of
// its own, which keystored creates and sets up.
const ownDirHint = "or give the socket a directory of its own that does not exist yet " +
	"(keystored creates it 0700, or 0750 with socket_group), e.g. --socket /run/keystored/keystored.sock"

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
		"chgrp %d %s && chmod g+x %s, %s)", unixsock.ShownDir(dir), perm, st.Gid, gid, gid, dir, dir, ownDirHint)
}

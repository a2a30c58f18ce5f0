package sshagent

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// maxSocketPath is the longest Unix socket path Linux binds (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Socket is the agent's listening Unix socket.
type Socket struct {
	// Path is the socket's path, as given (absolute for ListenTemp).
	Path string

	l       *net.UnixListener
	madeDir string // the directory Listen created, removed by Close
}

// ListenTemp makes a new directory below $TMPDIR (mode 0700, as
// ssh-agent's /tmp/ssh-XXXXXXXXXX) and listens on agent.sock in it.
// Close removes both.
func ListenTemp() (*Socket, error) {
	dir, err := os.MkdirTemp("", "keystore-ssh-")
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "ssh-agent: socket directory: %w", err)
	}
	s, err := listen(filepath.Join(dir, "agent.sock"), dir)
	if err != nil {
		if rerr := os.Remove(dir); rerr != nil {
			return nil, errors.Join(err, provider.Errorf(provider.EIO, "ssh-agent: removing %s: %w", dir, rerr))
		}
		return nil, err
	}
	return s, nil
}

// Listen listens on path, with the rules keystored applies to its own
// socket directory (cmd/keystored/socket.go). A missing directory is
// created with mode 0700 (its parent must exist) and removed by Close. An
// existing one is never changed, and is refused (EPERM, naming it and the
// fix) if it is a symbolic link or not a directory, owned by another
// user, or writable by group or others: another user could then replace
// the socket. A stale socket is removed if nothing answers on it;
// anything else at path is refused. The socket is bound under umask 0177
// and then given mode 0600, so it is never reachable by others.
func Listen(path string) (*Socket, error) {
	if path == "" {
		return nil, provider.Errorf(provider.EINVAL, "ssh-agent: empty socket path")
	}
	dir := filepath.Dir(filepath.Clean(path))
	made := ""
	switch err := os.Mkdir(dir, 0o700); {
	case err == nil:
		made = dir
	case !errors.Is(err, fs.ErrExist):
		return nil, provider.Errorf(provider.EIO, "ssh-agent: socket directory %s: %w", dir, err)
	}
	s, err := listen(path, made)
	if err != nil && made != "" {
		if rerr := os.Remove(made); rerr != nil {
			return nil, errors.Join(err, provider.Errorf(provider.EIO, "ssh-agent: removing %s: %w", made, rerr))
		}
	}
	return s, err
}

// listen checks path's directory and binds the socket; made is the
// directory if the caller just created it.
func listen(path, made string) (*Socket, error) {
	if len(path) > maxSocketPath {
		return nil, provider.Errorf(provider.EINVAL, "ssh-agent: socket path %s is %d bytes; Linux allows at most %d", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(filepath.Clean(path))
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, provider.Errorf(provider.EPERM, "ssh-agent: socket directory %s is a symbolic link or not a directory; refusing it (name the real directory, or a missing one to be created)", dir)
		}
		return nil, provider.Errorf(provider.EIO, "ssh-agent: socket directory %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return nil, provider.Errorf(provider.EIO, "ssh-agent: socket directory %s: %w", dir, err)
	}
	if err := checkDir(dir, &st); err != nil {
		return nil, err
	}
	if made != "" {
		// Ours: the exact mode (the umask may have removed bits).
		if err := unix.Fchmod(dfd, 0o700); err != nil {
			return nil, provider.Errorf(provider.EIO, "ssh-agent: socket directory %s: %w", dir, err)
		}
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "ssh-agent: socket %s: %w", path, err)
	}
	fail := func(err error) (*Socket, error) {
		if cerr := l.Close(); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fail(provider.Errorf(provider.EIO, "ssh-agent: socket %s: %w", path, err))
	}
	// The directory checked above must still be the one the socket is in.
	var now unix.Stat_t
	if err := unix.Lstat(dir, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return fail(provider.Errorf(provider.EPERM, "ssh-agent: socket directory %s changed while binding; refusing to serve", dir))
	}
	return &Socket{Path: path, l: l, madeDir: made}, nil
}

// checkDir refuses a socket directory that is not a directory, is owned
// by another user, or is writable by group or others.
func checkDir(dir string, st *unix.Stat_t) error {
	const own = "or name a directory that does not exist yet (it is created 0700), or leave out --agent-socket for a new one below $TMPDIR"
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return provider.Errorf(provider.EPERM, "ssh-agent: socket directory %s is not a directory", dir)
	}
	if euid := uint32(os.Geteuid()); st.Uid != euid {
		return provider.Errorf(provider.EPERM, "ssh-agent: socket directory %s is owned by uid %d, not by you (uid %d); refusing it "+
			"(it is never changed: chown it, %s)", dir, st.Uid, euid, own)
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 {
		return provider.Errorf(provider.EPERM, "ssh-agent: socket directory %s is writable by group or others (mode %04o), so another user could replace the socket; "+
			"refusing it (it is never changed: chmod go-w %s, %s)", dir, perm, dir, own)
	}
	return nil
}

// removeStale removes a socket nothing answers on; a live socket and any
// other file are refused.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return provider.Errorf(provider.EIO, "ssh-agent: socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return provider.Errorf(provider.EALREADY, "ssh-agent: %s exists and is not a socket; refusing to replace it", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		if cerr := conn.Close(); cerr != nil {
			return provider.Errorf(provider.EIO, "ssh-agent: socket %s: %w", path, cerr)
		}
		return provider.Errorf(provider.EALREADY, "ssh-agent: socket %s: another agent is answering on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return provider.Errorf(provider.EIO, "ssh-agent: removing stale socket %s: %w", path, err)
	}
	return nil
}

// Close stops listening and removes the socket and, if Listen made it,
// its directory.
func (s *Socket) Close() error {
	err := s.l.Close() // a listener made by ListenUnix removes its socket file
	if err != nil && errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if s.madeDir != "" {
		if rerr := os.Remove(s.madeDir); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, provider.Errorf(provider.EIO, "ssh-agent: removing %s: %w", s.madeDir, rerr))
		}
	}
	return err
}

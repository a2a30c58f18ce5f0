package sshagent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/unixsock"
)

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

// listen binds the socket with the daemon's rules (internal/unixsock);
// made is the directory if the caller just created it.
func listen(path, made string) (*Socket, error) {
	l, err := unixsock.Listen(path, unixsock.Options{
		DirMode: 0o700, SockMode: 0o600, GID: -1, Created: made != "", Who: "the agent",
		Fix: "or name a directory that does not exist yet (it is created 0700), or leave out --agent-socket for a new one below $TMPDIR",
	})
	if err != nil {
		return nil, fmt.Errorf("ssh-agent: %w", err)
	}
	return &Socket{Path: path, l: l, madeDir: made}, nil
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

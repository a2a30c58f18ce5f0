package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The service manager side of the daemon (docs/operations.md, "systemd"):
// readiness notification (sd_notify) and socket activation (LISTEN_FDS),
// both through github.com/coreos/go-systemd/v22, systemd's own Go
// bindings. Outside systemd (no NOTIFY_SOCKET, no LISTEN_FDS) neither
// does anything.

// notifier sends state changes to the service manager.
type notifier struct{ log *slog.Logger }

// notify sends state ("READY=1", ...) to $NOTIFY_SOCKET, if set. A failure
// is logged and otherwise ignored: the daemon serves either way, and
// systemd's start timeout reports a daemon that never said READY=1.
func (n notifier) notify(state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

func (n notifier) ready()    { n.notify(sddaemon.SdNotifyReady) }
func (n notifier) stopping() { n.notify(sddaemon.SdNotifyStopping) }

// reloading announces a reload; systemd wants the monotonic time with it
// (sd_notify(3): RELOADING=1 with MONOTONIC_USEC=), then READY=1 after.
func (n notifier) reloading() {
	n.notify(sddaemon.SdNotifyReloading + "\n" + sddaemon.SdNotifyMonotonicUsec())
}

// activatedListener returns the listening socket the service manager
// passed (LISTEN_FDS for this process's LISTEN_PID), or nil when it passed
// none. The LISTEN_* variables are removed from the environment and the
// descriptors made close-on-exec, so that no child (a plugin) inherits
// them. Variables meant for another process (LISTEN_PID is not ours) are
// ignored, as sd_listen_fds(3) says.
func activatedListener() (*net.UnixListener, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	return listenerFromFiles(files)
}

// listenerFromFiles turns the descriptors passed by the service manager
// into the daemon's listener. It takes exactly one, which must be a
// listening AF_UNIX stream socket; anything else is refused with what it
// is. All of files are closed (the listener holds a duplicate).
func listenerFromFiles(files []*os.File) (l *net.UnixListener, err error) {
	defer func() {
		for _, f := range files {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("socket activation: closing fd %d: %w", f.Fd(), cerr)
			}
		}
	}()
	if len(files) != 1 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = f.Name()
		}
		return nil, fmt.Errorf("socket activation: the service manager passed %d file descriptors (%v); keystored serves exactly one "+
			"listening Unix socket (one ListenStream= in keystored.socket)", len(files), names)
	}
	f := files[0]
	if err := checkListeningUnix(int(f.Fd())); err != nil {
		return nil, fmt.Errorf("socket activation: fd %d (%s): %w", f.Fd(), f.Name(), err)
	}
	nl, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("socket activation: fd %d (%s): %w", f.Fd(), f.Name(), err)
	}
	ul, ok := nl.(*net.UnixListener)
	if !ok {
		if cerr := nl.Close(); cerr != nil {
			return nil, fmt.Errorf("socket activation: fd %d (%s) is a %T: %w", f.Fd(), f.Name(), nl, cerr)
		}
		return nil, fmt.Errorf("socket activation: fd %d (%s) is a %T, not a Unix socket", f.Fd(), f.Name(), nl)
	}
	// Closing the listener must not remove the socket: systemd owns it
	// (FileListener does not unlink; say so explicitly all the same).
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

// checkListeningUnix refuses a descriptor that is not an AF_UNIX
// SOCK_STREAM socket in the listening state.
func checkListeningUnix(fd int) error {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if errors.Is(err, unix.ENOTSOCK) {
		return errors.New("not a socket; keystored needs a listening Unix stream socket (ListenStream=/path in keystored.socket)")
	}
	if err != nil {
		return err
	}
	if domain != unix.AF_UNIX {
		return fmt.Errorf("a socket of address family %d, not AF_UNIX; keystored serves only a Unix socket "+
			"(ListenStream= must name a path, not a port)", domain)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return err
	}
	if typ != unix.SOCK_STREAM {
		return fmt.Errorf("a Unix socket of type %d, not SOCK_STREAM (use ListenStream=, not ListenDatagram= or ListenSequentialPacket=)", typ)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return err
	}
	if acc == 0 {
		return errors.New("a Unix stream socket that is not listening (Accept=yes passes connections; keystored.socket needs Accept=no)")
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	if u, ok := sa.(*unix.SockaddrUnix); !ok || u.Name == "" || u.Name[0] == '@' || u.Name[0] == 0 {
		return errors.New("an abstract or unnamed Unix socket: it has no file permissions, so nothing would keep other users out; " +
			"ListenStream= must name a path (e.g. /run/keystored/keystored.sock)")
	}
	return nil
}

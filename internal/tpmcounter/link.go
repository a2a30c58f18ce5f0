package tpmcounter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// Bounds on what goes over the link. TPM 2.0 commands and responses are
// at most a few KiB (MAX_COMMAND_SIZE / MAX_RESPONSE_SIZE, 4096 on the
// TPMs we know); the commands this package sends are under 100 bytes and
// their responses under 200. A response header announcing more than
// maxResponse is refused before anything more is read.
const (
	maxCommand  = 4096
	maxResponse = 16 << 10
	headerSize  = 10 // tag (2) + size (4) + response code (4)
)

// link is one open connection to a TPM: a character device
// (/dev/tpmrm0, the kernel's resource manager) or a Unix socket speaking
// raw TPM 2.0 commands (swtpm's "socket --server type=unixio"). It is
// not safe for concurrent use: Counter serialises its calls.
type link struct {
	rw io.ReadWriteCloser
	// deadline sets the read and write deadline; nil when the file does
	// not support deadlines (a device the runtime cannot poll).
	deadline func(time.Time) error
}

// dial opens path: a character device is opened read-write, a socket is
// connected to. Anything else is refused.
func dial(ctx context.Context, path string) (*link, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, provider.Errorf(provider.EUNAVAILABLE, "tpm %s: %w", path, err)
	}
	switch m := fi.Mode(); {
	case m&os.ModeSocket != 0:
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, provider.Errorf(provider.EUNAVAILABLE, "tpm %s: %w", path, err)
		}
		return &link{rw: c, deadline: c.SetDeadline}, nil
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0:
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, provider.Errorf(provider.EUNAVAILABLE, "tpm %s: %w", path, err)
		}
		l := &link{rw: f, deadline: f.SetDeadline}
		// A device the runtime cannot poll has no deadlines: its I/O
		// is then bounded by the TPM's own command timeouts in the
		// kernel driver, not by the context.
		if err := f.SetDeadline(time.Time{}); errors.Is(err, os.ErrNoDeadline) {
			l.deadline = nil
		}
		return l, nil
	default:
		return nil, provider.Errorf(provider.EINVAL, "tpm %s: not a character device or a Unix socket (%s)", path, fi.Mode().Type())
	}
}

func (l *link) Close() error { return l.rw.Close() }

// longAgo is a deadline in the past: setting it makes pending I/O fail
// at once.
var longAgo = time.Unix(1, 0)

// roundTrip sends one command and reads its whole response, bounded by
// ctx (its deadline, and its cancellation) where the link has deadlines.
// After an error the link's state is unknown (a response may still
// come): bound refuses to use it again.
func (l *link) roundTrip(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) < headerSize || len(cmd) > maxCommand {
		return nil, provider.Errorf(provider.EINVAL, "tpm command of %d bytes (want %d to %d)", len(cmd), headerSize, maxCommand)
	}
	if err := ctx.Err(); err != nil {
		return nil, provider.Errorf(provider.EUNAVAILABLE, "tpm: %w", err)
	}
	if l.deadline != nil {
		d, _ := ctx.Deadline() // zero (no deadline) when ctx has none
		if err := l.deadline(d); err != nil {
			return nil, provider.Errorf(provider.EIO, "tpm: setting a deadline: %w", err)
		}
		stop := context.AfterFunc(ctx, func() {
			// Wakes a blocked read or write; its error (the link
			// closed meanwhile) changes nothing: the I/O fails either way.
			_ = l.deadline(longAgo)
		})
		defer stop()
	}
	if _, err := l.rw.Write(cmd); err != nil {
		return nil, l.ioError(ctx, "sending a command", err)
	}
	// One read with room for the largest response: a TPM device returns
	// the whole response to one read (older kernels drop what does not
	// fit); a socket may return it in pieces.
	buf := make([]byte, maxResponse)
	got, want := 0, headerSize
	for {
		n, err := l.rw.Read(buf[got:])
		got += n
		if want == headerSize && got >= headerSize {
			size := int(binary.BigEndian.Uint32(buf[2:6]))
			if size < headerSize || size > maxResponse {
				return nil, provider.Errorf(provider.EIO, "tpm response announces %d bytes (want %d to %d)", size, headerSize, maxResponse)
			}
			want = size
		}
		if got > want {
			return nil, provider.Errorf(provider.EIO, "tpm response longer (%d bytes) than it announces (%d)", got, want)
		}
		if got == want {
			return buf[:got], nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, l.ioError(ctx, "reading a response", err)
		}
		if n == 0 {
			return nil, provider.Errorf(provider.EIO, "tpm: empty read")
		}
	}
}

// ioError names a failed read or write, and the context's error when the
// context is why it failed.
func (l *link) ioError(ctx context.Context, what string, err error) error {
	cerr := ctx.Err()
	if _, ok := ctx.Deadline(); ok && cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The link's deadline is ctx's: it may pass before ctx's own
		// timer has marked ctx done.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return provider.Errorf(provider.EUNAVAILABLE, "tpm: %s: %w (%v)", what, cerr, err)
	}
	return provider.Errorf(provider.EIO, "tpm: %s: %w", what, err)
}

// bound is a transport.TPM that sends over l with ctx: go-tpm's command
// types take a transport without a context, so one is made per call.
type bound struct {
	ctx context.Context
	l   *link
	err error // the first link error: the link is unusable after it
}

func (b *bound) Send(cmd []byte) ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	rsp, err := b.l.roundTrip(b.ctx, cmd)
	if err != nil {
		b.err = err
	}
	return rsp, err
}

package sshagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nexus-os/keystored/internal/unixsock"
	"golang.org/x/crypto/ssh/agent"
)

// Defaults of ServeConfig.
const (
	// DefaultMaxConnections is how many clients are served at once.
	DefaultMaxConnections = 64
	// DefaultMaxMessage is the largest request, in bytes: OpenSSH's own
	// agent limit (AGENT_MAX_LEN, 256 KiB). x/crypto's agent.ServeAgent
	// alone would take 16 MiB.
	DefaultMaxMessage = 256 << 10
)

// ServeConfig bounds Serve.
type ServeConfig struct {
	// MaxConnections: a connection beyond it is closed at once (0:
	// DefaultMaxConnections).
	MaxConnections int
	// MaxMessage: a request whose length prefix is larger closes its
	// connection before its body is read (0: DefaultMaxMessage).
	MaxMessage uint32
	// Logf prints a line about a refused or failed connection (nil:
	// nothing). Lines never hold request data.
	Logf func(format string, args ...any)
}

// Serve serves ag on s until ctx ends, then closes every connection,
// waits for them and returns nil; it returns an error only if accepting
// fails for good. Each connection's requests are served one after the
// other. A client whose uid (SO_PEERCRED) is neither the process's
// effective uid nor root is closed before a byte is read.
func Serve(ctx context.Context, s *Socket, ag agent.Agent, cfg ServeConfig) error {
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var (
		mu    sync.Mutex
		conns = map[*net.UnixConn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		// Unblock Accept; the socket file stays until s.Close.
		if err := s.l.SetDeadline(time.Unix(1, 0)); err != nil {
			logf("ssh-agent: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			if err := c.Close(); err != nil {
				logf("ssh-agent: closing a connection: %v", err)
			}
		}
	})
	defer func() {
		stop()
		mu.Lock()
		for c := range conns {
			if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				logf("ssh-agent: closing a connection: %v", err)
			}
		}
		mu.Unlock()
		wg.Wait()
	}()
	euid := uint32(os.Geteuid())
	backoff := time.Duration(0)
	for {
		c, err := s.l.AcceptUnix()
		if ctx.Err() != nil {
			if c != nil {
				if cerr := c.Close(); cerr != nil {
					logf("ssh-agent: closing a connection: %v", cerr)
				}
			}
			return nil
		}
		if err != nil {
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				logf("ssh-agent: accept: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("ssh-agent: accept: %w", err)
		}
		backoff = 0
		uid, err := peerUID(c)
		if err != nil || uid != euid && uid != 0 {
			if err != nil {
				logf("ssh-agent: refused a connection: peer credentials: %v", err)
			} else {
				logf("ssh-agent: refused a connection from uid %d: the agent serves uid %d only", uid, euid)
			}
			if cerr := c.Close(); cerr != nil {
				logf("ssh-agent: closing a connection: %v", cerr)
			}
			continue
		}
		mu.Lock()
		if len(conns) >= cfg.MaxConnections {
			mu.Unlock()
			logf("ssh-agent: refused a connection: %d connections open, the limit", cfg.MaxConnections)
			if cerr := c.Close(); cerr != nil {
				logf("ssh-agent: closing a connection: %v", cerr)
			}
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := agent.ServeAgent(ag, &frameLimiter{rw: c, max: cfg.MaxMessage})
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				logf("ssh-agent: connection closed: %v", err)
			}
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			if cerr := c.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				logf("ssh-agent: closing a connection: %v", cerr)
			}
		}()
	}
}

// peerUID returns the uid of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	cred, err := unixsock.PeerCred(c)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}

// ErrMessageTooLarge is why a connection whose request declares more than
// ServeConfig.MaxMessage bytes is closed.
var ErrMessageTooLarge = errors.New("ssh-agent: request over the size limit")

// frameLimiter passes an agent connection through, reading each
// request's 4-byte length prefix itself first: a request longer than max
// fails the read (agent.ServeAgent then closes the connection) before its
// body is read or any buffer is allocated for it. Writes pass through.
type frameLimiter struct {
	rw   io.ReadWriter
	max  uint32
	hdr  [4]byte
	hdrN int // bytes of hdr not yet handed out (0: none pending)
	left int // body bytes of the current request not yet read
}

func (f *frameLimiter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if f.hdrN == 0 && f.left == 0 {
		if _, err := io.ReadFull(f.rw, f.hdr[:]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(f.hdr[:])
		if n > f.max {
			return 0, fmt.Errorf("%w: %d bytes declared, at most %d", ErrMessageTooLarge, n, f.max)
		}
		f.hdrN, f.left = len(f.hdr), int(n)
	}
	if f.hdrN > 0 {
		n := copy(p, f.hdr[len(f.hdr)-f.hdrN:])
		f.hdrN -= n
		return n, nil
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.rw.Read(p)
	f.left -= n
	return n, err
}

func (f *frameLimiter) Write(p []byte) (int, error) { return f.rw.Write(p) }

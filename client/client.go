package client

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// MaxMessageSize is the largest gRPC message the client sends: the
// daemon's bound on an encoded batch request.
const MaxMessageSize = 8 << 20

// maxResponseSize is the largest gRPC message the client receives: the
// daemon's bound on a response, which is larger than a request's because
// a SealBatch response grows every item by the envelope's overhead.
const maxResponseSize = 16 << 20

// DefaultDialTimeout bounds how long Dial waits for the connection when
// ctx has no earlier deadline.
const DefaultDialTimeout = 5 * time.Second

// InsecureHeader is the response header a daemon running the INSECURE
// test provider sets to "true".
const InsecureHeader = "keystored-insecure"

// Option configures Dial.
type Option func(*options)

type options struct {
	dialTimeout time.Duration
	grpcOpts    []grpc.DialOption
}

// WithDialTimeout sets how long Dial waits for the daemon (default
// DefaultDialTimeout). A shorter deadline on Dial's ctx wins.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithGRPCOptions adds gRPC dial options (interceptors, for instance). The
// transport stays the Unix socket.
func WithGRPCOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

// Client is a connection to keystored. It is safe for concurrent use; all
// calls share one gRPC connection.
type Client struct {
	socket   string
	conn     *grpc.ClientConn
	keys     keystorev1.KeysClient
	store    keystorev1.StoreClient
	anchors  keystorev1.TrustAnchorsClient
	admin    keystorev1.AdminClient
	insecure atomic.Bool
	dialErr  atomic.Pointer[error]
	// conns counts the connections the dialer made; checked is the
	// value of conns whose first response's headers were read for the
	// insecure mark (see call).
	conns, checked atomic.Uint64
}

// Socket paths.
const (
	// SocketEnv names the environment variable that gives the daemon's
	// socket, as VAULT_ADDR does for Vault's client.
	SocketEnv = "KEYSTORE_SOCKET"
	// DefaultSocket is the development daemon's socket (go run
	// ./cmd/keystored), relative to the working directory.
	DefaultSocket = "keystore-state/keystored.sock"
	// SystemSocket is the socket of a system install (dist/systemd and
	// docs/operations.md): set KEYSTORE_SOCKET to it, e.g. in
	// /etc/environment, for clients on such a host.
	SystemSocket = "/run/keystored/keystored.sock"
)

// SocketFromEnv returns $KEYSTORE_SOCKET, or DefaultSocket when it is
// unset or empty.
func SocketFromEnv() string {
	if s := os.Getenv(SocketEnv); s != "" {
		return s
	}
	return DefaultSocket
}

// Dial connects to the daemon listening on the Unix socket at socketPath
// ("" means SocketFromEnv: $KEYSTORE_SOCKET, else DefaultSocket) and waits
// until the connection is up (bounded by ctx and the dial timeout). A
// missing socket, a refused connection or a timeout give an error
// wrapping ErrUnavailable that names the socket; a socket the caller may
// not open gives ErrPermission.
func Dial(ctx context.Context, socketPath string, opts ...Option) (*Client, error) {
	o := options{dialTimeout: DefaultDialTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if socketPath == "" {
		socketPath = SocketFromEnv()
	}
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "socket path %s: %w", socketPath, err)
	}
	if err := checkSocket(socketPath, abs); err != nil {
		return nil, err
	}
	c := &Client{socket: socketPath}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", abs)
		if err != nil {
			c.dialErr.Store(&err)
			return nil, err
		}
		c.conns.Add(1) // a new connection: its first response is checked again
		return conn, nil
	}
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), // a Unix socket: the kernel vouches for the peer
		grpc.WithContextDialer(dialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
	}, o.grpcOpts...)
	conn, err := grpc.NewClient("unix://"+abs, dopts...)
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "keystored socket %s: %w", socketPath, err)
	}
	c.conn = conn
	c.keys = keystorev1.NewKeysClient(conn)
	c.store = keystorev1.NewStoreClient(conn)
	c.anchors = keystorev1.NewTrustAnchorsClient(conn)
	c.admin = keystorev1.NewAdminClient(conn)
	if err := c.waitReady(ctx, o.dialTimeout); err != nil {
		_ = conn.Close() // the dial error is the one to report
		return nil, err
	}
	return c, nil
}

// checkSocket gives a clear error before gRPC tries to connect.
func checkSocket(path, abs string) error {
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return provider.Errorf(provider.EUNAVAILABLE, "no keystored socket at %s", path)
	case errors.Is(err, fs.ErrPermission):
		return provider.Errorf(provider.EPERM, "keystored socket %s: permission denied", path)
	case err != nil:
		return provider.Errorf(provider.EUNAVAILABLE, "keystored socket %s: %w", path, err)
	case st.Mode()&fs.ModeSocket == 0:
		return provider.Errorf(provider.EUNAVAILABLE, "%s is not a socket (is it the keystored socket?)", path)
	}
	return nil
}

// waitReady connects and waits for the Ready state.
func (c *Client) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c.conn.Connect()
	for {
		s := c.conn.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return c.unavailable(nil)
		}
		if !c.conn.WaitForStateChange(ctx, s) {
			return c.unavailable(ctx.Err())
		}
	}
}

// unavailable builds the error for a daemon that cannot be reached,
// naming the socket and the last dial error.
func (c *Client) unavailable(cause error) error {
	if p := c.dialErr.Load(); p != nil {
		if errors.Is(*p, syscall.EACCES) || errors.Is(*p, syscall.EPERM) {
			return provider.Errorf(provider.EPERM, "keystored socket %s: permission denied: %w", c.socket, *p)
		}
		if cause == nil {
			cause = *p
		}
	}
	if cause == nil {
		cause = errors.New("connection failed")
	}
	return provider.Errorf(provider.EUNAVAILABLE, "cannot reach keystored at %s: %w", c.socket, cause)
}

// Close closes the connection. Calls in flight fail with ErrUnavailable.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return provider.Errorf(provider.EIO, "closing keystored connection: %w", err)
	}
	return nil
}

// Socket returns the socket path given to Dial.
func (c *Client) Socket() string { return c.socket }

// Insecure reports whether a daemon this client was connected to runs
// the INSECURE test provider: the first response on every connection is
// checked for the header "keystored-insecure: true", as is every
// response that returns a key's metadata. Such a daemon's keys derive
// from a known seed: they are not secret.
func (c *Client) Insecure() bool { return c.insecure.Load() }

// call runs one RPC and maps the error through the shared table
// (rpcerr). The response headers are read (for the insecure mark) only
// on the first call of every connection the client makes, so that a
// call adds no per-call work a bare gRPC client does not; the bool
// reports whether this response was read and marked insecure.
func call[Req, Resp any](ctx context.Context, c *Client, f func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, bool, error) {
	gen := c.conns.Load()
	if gen == c.checked.Load() {
		resp, err := f(ctx, req)
		if c.conns.Load() != gen {
			// A connection was made during the call (gRPC reconnects
			// when a call needs one, and retries a call the closing
			// connection never delivered on the new one, transparently),
			// so this response may be the new connection's first, its
			// headers unread. Read them on a
			// read-only call before the response is returned (only after
			// a reconnect). Its error is deliberately not returned: it is
			// not this call's, whose own result stands, and the headers
			// are read on an error response too; a failed check leaves
			// the connection unchecked (checked is advanced only after a
			// successful response), so the next call reads them again
			// (doc.go, "Insecure daemons").
			_, _, _ = call(ctx, c, c.anchors.ListAnchors, &keystorev1.ListAnchorsRequest{})
		}
		if err != nil {
			return resp, false, c.mapError(ctx, err)
		}
		return resp, false, nil
	}
	resp, insec, err := callHeader(ctx, c, f, req)
	if err == nil && c.conns.Load() == gen {
		// This response came on connection gen (no other was made
		// meanwhile): it has been checked.
		c.checked.Store(gen)
	}
	return resp, insec, err
}

// callHeader is call, always reading the response headers: for the
// calls that return a key's metadata (KeyInfo.Insecure).
func callHeader[Req, Resp any](ctx context.Context, c *Client, f func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, bool, error) {
	var hdr metadata.MD
	resp, err := f(ctx, req, grpc.Header(&hdr))
	insec := false
	if v := hdr.Get(InsecureHeader); len(v) > 0 && v[0] == "true" {
		insec = true
		c.insecure.Store(true)
	}
	if err != nil {
		return resp, insec, c.mapError(ctx, err)
	}
	return resp, insec, nil
}

// mapError turns an RPC error into a keystored error.
func (c *Client) mapError(ctx context.Context, err error) error {
	mapped := rpcerr.FromStatus(err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return &ctxError{err: provider.Errorf(provider.EUNAVAILABLE, "call to keystored at %s ended: %w", c.socket, ctxErr), ctx: ctxErr}
	}
	if code, _ := provider.CodeOf(mapped); code == provider.EUNAVAILABLE && !hasReason(err) {
		// The transport failed (the daemon is gone), not the daemon.
		return c.unavailable(mapped)
	}
	return mapped
}

// hasReason reports whether err is a status carrying keystored's
// ErrorInfo, that is an error the daemon itself returned.
func hasReason(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	_, ok = rpcerr.Reason(st)
	return ok
}

// ctxError is an error caused by the caller's context: it matches both
// ErrUnavailable and the context error.
type ctxError struct {
	err error
	ctx error
}

func (e *ctxError) Error() string   { return e.err.Error() }
func (e *ctxError) Unwrap() []error { return []error{e.err, e.ctx} }

package server

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"

	"github.com/nexus-os/keystored/internal/unixsock"
	"google.golang.org/grpc/credentials"
)

// PeerInfo is the caller's identity as the kernel reported it when the
// client connected (SO_PEERCRED): it is the credentials.AuthInfo of every
// connection the daemon accepts. Credentials are frozen at connect():
// a socket handed to another process keeps its connector's identity.
type PeerInfo struct {
	credentials.CommonAuthInfo
	UID, GID uint32
	PID      int32

	// conn is the metered connection (nil for one Listener did not accept).
	conn *meteredConn
}

// AuthType implements credentials.AuthInfo.
func (PeerInfo) AuthType() string { return "peercred" }

// errNotUnix is returned for a connection that is not a Unix socket.
var errNotUnix = errors.New("keystored: peer credentials need a Unix socket connection")

// ConnLimits bound the connections the daemon holds open, so a client that
// opens many connections (or holds them idle) cannot starve the others.
type ConnLimits struct {
	// Total is the most connections open at once (0: DefaultMaxConnections).
	Total int
	// PerUID is the most connections one uid may hold open at once
	// (0: DefaultMaxConnectionsPerUID).
	PerUID int
}

// Defaults of ConnLimits.
const (
	DefaultMaxConnections       = 1024
	DefaultMaxConnectionsPerUID = 128
)

// peerCreds is a server-side credentials.TransportCredentials that does
// no handshake on the wire: it reads the peer's uid, gid and pid from the
// kernel (SO_PEERCRED) and enforces the connection limits.
type peerCreds struct {
	limits ConnLimits

	mu     sync.Mutex
	total  int
	perUID map[uint32]int
}

func newPeerCreds(l ConnLimits) *peerCreds {
	if l.Total <= 0 {
		l.Total = DefaultMaxConnections
	}
	if l.PerUID <= 0 {
		l.PerUID = DefaultMaxConnectionsPerUID
	}
	return &peerCreds{limits: l, perUID: make(map[uint32]int)}
}

// ReadPeerCred returns the kernel's credentials of the process at the other
// end of a Unix socket connection.
func ReadPeerCred(conn net.Conn) (PeerInfo, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return PeerInfo{}, errNotUnix
	}
	if _, isUnix := conn.LocalAddr().(*net.UnixAddr); !isUnix {
		return PeerInfo{}, errNotUnix
	}
	cred, err := unixsock.PeerCred(sc)
	if err != nil {
		return PeerInfo{}, err
	}
	return PeerInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            cred.Uid, GID: cred.Gid, PID: cred.Pid,
	}, nil
}

// acquire counts a new connection of uid, or reports why it is refused.
func (p *peerCreds) acquire(uid uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total >= p.limits.Total {
		return errors.New("connection limit reached (" + strconv.Itoa(p.limits.Total) + ")")
	}
	if p.perUID[uid] >= p.limits.PerUID {
		return errors.New("uid " + strconv.FormatUint(uint64(uid), 10) + " holds its limit of " +
			strconv.Itoa(p.limits.PerUID) + " connections")
	}
	p.total++
	p.perUID[uid]++
	return nil
}

// ServerHandshake returns the peer's credentials: those the limiting
// listener read when it accepted the connection, or (for a connection from
// another listener) read now, uncounted.
func (p *peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if mc, ok := conn.(*meteredConn); ok {
		info := mc.info
		info.conn = mc
		return mc, info, nil
	}
	info, err := ReadPeerCred(conn)
	if err != nil {
		return nil, nil, err
	}
	return conn, info, nil
}

func (p *peerCreds) release(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.perUID[uid]--; p.perUID[uid] <= 0 {
		delete(p.perUID, uid)
	}
}

// open returns the number of connections counted now.
func (p *peerCreds) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// ClientHandshake is not supported: these credentials are for the server.
func (p *peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("keystored: peer credentials are server-side only")
}

// Info implements credentials.TransportCredentials.
func (p *peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

// Clone implements credentials.TransportCredentials; the clone shares the
// connection counts.
func (p *peerCreds) Clone() credentials.TransportCredentials { return p }

// OverrideServerName implements credentials.TransportCredentials.
func (p *peerCreds) OverrideServerName(string) error { return nil }

// countedConn is an accepted connection holding a slot, which it releases
// once, on its first Close. Every path in grpc closes the accepted
// connection, so a slot cannot leak. It keeps the peer's credentials.
type countedConn struct {
	net.Conn
	info    PeerInfo
	once    sync.Once
	release func()
}

// SyscallConn exposes the socket (for ReadPeerCred).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNotUnix
	}
	return sc.SyscallConn()
}

// limitListener accepts connections, reads each peer's credentials and
// enforces the connection limits before gRPC sees the connection: a
// connection over a limit (or without credentials) is closed at once and
// counted in refused. A connection it accepts is metered (flow.go).
type limitListener struct {
	net.Listener
	creds   *peerCreds
	budget  *budget
	refused func(reason string)
	overrun func()
}

// Accept returns the next connection within the limits.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		info, err := ReadPeerCred(c)
		if err == nil {
			err = l.creds.acquire(info.UID)
		}
		if err != nil {
			l.refused(err.Error())
			if cerr := c.Close(); cerr != nil {
				l.refused("closing a refused connection: " + cerr.Error())
			}
			continue
		}
		cc := &countedConn{Conn: c, info: info, release: func() { l.creds.release(info.UID) }}
		return newMeteredConn(cc, l.budget, l.overrun), nil
	}
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

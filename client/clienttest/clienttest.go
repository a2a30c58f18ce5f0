// Package clienttest runs keystored's real server in the test process, on
// a Unix socket, for tests of code that uses package client (as
// net/http/httptest does for HTTP). [Start] serves the four keystore.v1
// services of package server over in-memory storage, a hash-chained audit
// log in a temporary directory, a fixed clock, and the software provider
// (a random KEK in a KEK file of that directory, so it can be rotated) or,
// with [Options].Insecure, the INSECURE testseed
// provider: the lifecycle, bounds, errors, identity checks and envelopes
// are the daemon's own.
//
// The caller's identity comes from the kernel as in the daemon: the test
// process's uid is mapped to [Options].App. [Server.SetFault] injects an
// error into later calls, [Server.SetUnreadable] corrupts a key's stored
// metadata, [Server.Calls] counts calls. It links the whole server, so only
// tests may import it (internal/layering checks); docs/testing.md says
// more.
package clienttest

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
	"github.com/nexus-os/keystored/server"
)

// Options configure Start.
type Options struct {
	// App is the caller's app ID (default "app"): the test process's uid
	// is mapped to it.
	App string
	// Operator makes the caller an operator, who may name any app's keys.
	Operator bool
	// Insecure runs the server on the INSECURE testseed provider, as the
	// daemon with --insecure-test-seed: every response carries
	// "keystored-insecure: true" and keys are marked insecure.
	Insecure bool
	// Anchors are the trust anchors of the TrustAnchors service, by name
	// (each a key ID segment).
	Anchors map[string]ed25519.PublicKey
	// Quotas are the apps' quotas (zero: the daemon's defaults).
	Quotas core.Quotas
}

// Epoch is the time of the server's clock: every timestamp it records.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// insecureSeed is the seed of the testseed provider of Options.Insecure.
var insecureSeed = []byte("keystored/clienttest/insecure-seed")

// Server is a running server.
type Server struct {
	// Socket is the path of the Unix socket the server listens on.
	Socket string
	// AuditLog is the path of its audit log (keystorectl audit verify
	// checks it).
	AuditLog string

	t     testing.TB
	dir   string
	clock *clock.Fake
	cfg   server.Config
	st    *storage.Memory
	log   *audit.Log
	stop  sync.Once

	mu      sync.Mutex
	g       *grpc.Server
	done    chan struct{} // closed when g stopped serving
	stopped bool
	fault   func(method string) error
	calls   map[string]int
}

// Start starts a server and registers its shutdown with t.Cleanup. It
// fails t if the server cannot start.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(t, opts)
	if err != nil {
		t.Fatalf("clienttest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func start(t testing.TB, opts Options) (s *Server, err error) {
	if opts.App == "" {
		opts.App = "app"
	}
	// A short directory: a Unix socket path is limited to 107 bytes, and
	// t.TempDir() holds the test's name.
	dir, err := os.MkdirTemp("", "clienttest-")
	if err != nil {
		return nil, err
	}
	s = &Server{t: t, Socket: filepath.Join(dir, "keystored.sock"), AuditLog: filepath.Join(dir, "audit.log"), dir: dir, st: storage.NewMemory(), calls: map[string]int{}}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	uid := uint32(os.Getuid())
	var operators []uint32
	if opts.Operator {
		operators = []uint32{uid}
	}
	identity, err := server.NewIdentity(map[uint32]string{uid: opts.App}, operators, server.UnmappedDeny)
	if err != nil {
		return nil, err
	}
	anchors, err := loadAnchors(filepath.Join(dir, "anchors"), opts.Anchors)
	if err != nil {
		return nil, err
	}
	p, err := newProvider(opts.Insecure, dir)
	if err != nil {
		return nil, err
	}
	clk := clock.NewFake(Epoch)
	s.clock = clk
	if s.log, err = audit.Open(s.AuditLog, audit.WithClock(clk)); err != nil {
		return nil, err
	}
	s.cfg = server.Config{Storage: s.st, Provider: p, Clock: clk, Audit: s.log, Identity: identity, Anchors: anchors, Quotas: opts.Quotas}
	if err := s.serve(); err != nil {
		return nil, err
	}
	return s, nil
}

// newProvider returns the testseed provider, or the software provider
// over a new KEK file in dir (so that its KEK can be rotated, as the
// daemon's).
func newProvider(insecure bool, dir string) (provider.Provider, error) {
	if insecure {
		return testseed.NewInsecure(insecureSeed)
	}
	return software.New(software.Config{KEKFile: filepath.Join(dir, "kek"), Create: true})
}

// loadAnchors writes anchors as the PEM files of a trust anchor directory
// and loads it as the daemon does.
func loadAnchors(dir string, anchors map[string]ed25519.PublicKey) (*server.Anchors, error) {
	if len(anchors) == 0 {
		return nil, nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	for name, pub := range anchors {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		block := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name+".pem"), block, 0o600); err != nil {
			return nil, err
		}
	}
	return server.LoadAnchors(dir)
}

// serve opens a server over s's storage (a fresh core that reads the
// keys from storage) and serves it on s.Socket.
func (s *Server) serve() error {
	srv, err := server.New(context.Background(), s.cfg)
	if err != nil {
		return err
	}
	_ = os.Remove(s.Socket) // a stale socket of the previous server
	ln, err := net.Listen("unix", s.Socket)
	if err != nil {
		return err
	}
	g := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(registrar{g: g, s: s})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(g, ln) // returns when g stops; the error is the listener's close
	}()
	s.mu.Lock()
	s.g, s.done = g, done
	s.mu.Unlock()
	return nil
}

// halt stops the gRPC server and waits until it no longer serves. With
// graceful, calls in flight finish and clients are told to go away (the
// calls they start meanwhile are retried on a new connection); otherwise
// calls in flight are cut.
func (s *Server) halt(graceful bool) {
	s.mu.Lock()
	g, done := s.g, s.done
	s.g = nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	if graceful {
		g.GracefulStop()
	} else {
		g.Stop()
	}
	<-done
}

// Stop stops the server (calls in flight are cut) and removes its
// directory. Later calls fail with ErrUnavailable. Stop may be called more
// than once.
func (s *Server) Stop() {
	s.stop.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.halt(false)
		if s.log != nil {
			_ = s.log.Close() // the records are not looked at after Stop
		}
		_ = os.RemoveAll(s.dir) // best effort: a temporary directory
	})
}

// Advance moves the server's clock forward by d: the time it records, and
// the time against which keys are due for automatic rotation.
func (s *Server) Advance(d time.Duration) { s.clock.Advance(d) }

// SetFault makes every later call first ask f (method is the full gRPC
// method, e.g. "/keystore.v1.Keys/Sign"); a non-nil error is returned
// instead of running the call. An error carrying a provider Code is
// returned as the daemon returns its handler's errors: audited, with its
// reason and message. A gRPC status error without one (status.Error)
// never reaches the daemon and travels as it is, as from a proxy or a
// broken transport. nil clears the fault.
func (s *Server) SetFault(f func(method string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Calls returns how many calls the server received for method (the full
// gRPC method name), faults included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// SetUnreadable corrupts the stored metadata of the key id (a full key ID)
// and restarts the server so that it reads it again, as the daemon does
// after a restart: Get gives EIO and List reports the key as unreadable.
// Calls in flight finish first; clients reconnect by themselves. It fails the
// test (of Start's t) when the key has no metadata. Call it from the
// test's goroutine.
func (s *Server) SetUnreadable(id string) {
	s.t.Helper()
	kid, err := provider.ParseKeyID(id)
	if err == nil {
		err = s.st.Corrupt(core.MetaPath(kid), func(b []byte) []byte {
			return append(b[:len(b)/2:len(b)/2], "\x00corrupted by clienttest"...)
		})
	}
	if err == nil {
		err = s.restart()
	}
	if err != nil {
		s.t.Fatalf("clienttest: SetUnreadable(%s): %v", id, err)
	}
}

func (s *Server) restart() error {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return errors.New("the server was stopped")
	}
	s.halt(true)
	return s.serve()
}

// before counts a call and returns the fault to inject, if any.
func (s *Server) before(method string) error {
	s.mu.Lock()
	s.calls[method]++
	f := s.fault
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(method)
}

// registrar registers the server's services with every method wrapped:
// once its request has arrived, the call is counted and, when a fault is
// set, the fault replaces the handler.
type registrar struct {
	g *grpc.Server
	s *Server
}

func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		method := "/" + desc.ServiceName + "/" + d.Methods[i].MethodName
		handler := d.Methods[i].Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			var fault error
			received := func(req any) error {
				if err := dec(req); err != nil {
					return err // refused by the transport: not a call
				}
				fault = r.s.before(method)
				if _, coded := provider.CodeOf(fault); fault != nil && !coded {
					if _, isStatus := status.FromError(fault); isStatus {
						return fault // never reaches the daemon
					}
				}
				return nil
			}
			// The daemon's own checks run (identity, audit, the error
			// table), then this interceptor; with a fault, the handler
			// fails.
			faulty := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if fault != nil {
					h = func(context.Context, any) (any, error) { return nil, fault }
				}
				if icpt == nil {
					return h(ctx, req)
				}
				return icpt(ctx, req, info, h)
			}
			return handler(srv, ctx, received, faulty)
		}
	}
	r.g.RegisterService(&d, impl)
}

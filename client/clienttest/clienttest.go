// Package clienttest runs an in-process fake keystored on a Unix socket,
// for tests of code that uses package client (as net/http/httptest does
// for HTTP). The fake serves the three keystore.v1 services from memory
// with the daemon's error vocabulary, bounds and lifecycle rules, close
// enough to drive client code through every path, including every error
// code (SetFault) and the INSECURE marker (Options.Insecure).
//
// It is not keystored: keys live in process memory, nothing is persisted
// or audited, every caller is the one app of Options, and its sealed
// format is its own. Test against the real daemon (internal/daemontest)
// for anything about keystored itself.
package clienttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// Options configure the fake.
type Options struct {
	// App is the caller's app ID (default "app"): every connection is
	// this app.
	App string
	// Operator makes the caller an operator, who may name any app's keys.
	Operator bool
	// Insecure makes the fake behave like a daemon on the INSECURE test
	// provider: every response carries "keystored-insecure: true" and keys
	// are marked insecure.
	Insecure bool
	// Anchors are the trust anchors TrustAnchors serves.
	Anchors map[string]ed25519.PublicKey
}

// Server is a running fake.
type Server struct {
	// Socket is the path of the Unix socket the fake listens on.
	Socket string

	opts Options
	grpc *grpc.Server
	dir  string

	mu         sync.Mutex
	keys       map[string]*fakeKey
	values     map[string][]byte
	unreadable map[string]bool
	fault      func(method string) error
	calls      map[string]int
	tick       int64
}

// Start starts a fake and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.App == "" {
		opts.App = "app"
	}
	// A short directory: a Unix socket path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "kst-fake-")
	if err != nil {
		t.Fatalf("clienttest: %v", err)
	}
	sock := filepath.Join(dir, "keystored.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("clienttest: listen %s: %v", sock, err)
	}
	s := &Server{
		Socket:     sock,
		opts:       opts,
		dir:        dir,
		keys:       map[string]*fakeKey{},
		values:     map[string][]byte{},
		unreadable: map[string]bool{},
		calls:      map[string]int{},
	}
	s.grpc = grpc.NewServer(
		grpc.UnaryInterceptor(s.intercept),
		// The daemon's transport bounds (docs/api.md): requests up to
		// 9 MiB, responses up to 16 MiB.
		grpc.MaxRecvMsgSize(9<<20),
		grpc.MaxSendMsgSize(16<<20),
	)
	keystorev1.RegisterKeysServer(s.grpc, &keysServer{s: s})
	keystorev1.RegisterStoreServer(s.grpc, &storeServer{s: s})
	keystorev1.RegisterTrustAnchorsServer(s.grpc, &anchorsServer{s: s})
	go func() { _ = s.grpc.Serve(ln) }() // Serve returns when Stop closes the listener
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the fake (calls in flight are cut) and removes its socket.
// Later calls to the fake fail with ErrUnavailable. Stop may be called
// more than once.
func (s *Server) Stop() {
	s.grpc.Stop()
	_ = os.RemoveAll(s.dir) // best effort: a temp directory
}

// SetFault makes every later call first ask f: a non-nil error is
// returned instead of running the call. Errors carrying a provider Code
// travel with their reason like the daemon's; a plain gRPC status error
// (status.Error) travels as it is, without a reason. nil clears the fault.
// method is the full gRPC method, e.g. "/keystore.v1.Keys/Sign".
func (s *Server) SetFault(f func(method string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Calls returns how many calls the fake received for method (the full
// gRPC method name), faults included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// SetUnreadable marks a key (full ID) as corrupted: Get gives EIO and List
// reports it as unreadable.
func (s *Server) SetUnreadable(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unreadable[id] = true
}

func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if s.opts.Insecure {
		if err := grpc.SetHeader(ctx, metadata.Pairs("keystored-insecure", "true")); err != nil {
			return nil, rpcerr.ToStatus(provider.Errorf(provider.EIO, "set header: %w", err))
		}
	}
	s.mu.Lock()
	s.calls[info.FullMethod]++
	fault := s.fault
	s.mu.Unlock()
	if fault != nil {
		if err := fault(info.FullMethod); err != nil {
			return nil, toStatus(err)
		}
	}
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

func toStatus(err error) error {
	if _, ok := provider.CodeOf(err); !ok {
		if st, ok := status.FromError(err); ok {
			return st.Err()
		}
	}
	return rpcerr.ToStatus(err)
}

// now returns the fake clock's time: one second per event from a fixed
// date, so tests are deterministic. Called with mu held.
func (s *Server) now() time.Time {
	s.tick++
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s.tick) * time.Second)
}

// resolve turns a request's key name into a full key ID, checking the
// caller may use it.
func (s *Server) resolve(op, name string) (string, error) {
	parts := strings.Split(name, "/")
	var app, purpose, kname string
	switch len(parts) {
	case 2:
		app, purpose, kname = s.opts.App, parts[0], parts[1]
	case 3:
		app, purpose, kname = parts[0], parts[1], parts[2]
	default:
		if len(name) > provider.MaxKeyIDLen {
			name = name[:provider.MaxKeyIDLen]
		}
		return "", &provider.Error{Code: provider.EINVAL, Op: op, Msg: "key " + strconv.Quote(name) + " is not <purpose>/<name> or <app>/<purpose>/<name>"}
	}
	id, err := provider.NewKeyID(app, purpose, kname)
	if err != nil {
		return "", provider.WithOp(op, "", err)
	}
	if app != s.opts.App && !s.opts.Operator {
		return "", &provider.Error{Code: provider.EPERM, Op: op, Key: id.String()}
	}
	return id.String(), nil
}

// hexID is a short fingerprint used in anchors.
func fingerprint(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type anchorsServer struct {
	keystorev1.UnimplementedTrustAnchorsServer
	s *Server
}

func (a *anchorsServer) ListAnchors(context.Context, *keystorev1.ListAnchorsRequest) (*keystorev1.ListAnchorsResponse, error) {
	names := make([]string, 0, len(a.s.opts.Anchors))
	for n := range a.s.opts.Anchors {
		names = append(names, n)
	}
	sort.Strings(names)
	resp := &keystorev1.ListAnchorsResponse{}
	for _, n := range names {
		pub := a.s.opts.Anchors[n]
		resp.Anchors = append(resp.Anchors, &keystorev1.TrustAnchor{Name: n, Algorithm: "ed25519", PublicKey: pub, Fingerprint: fingerprint(pub)})
	}
	return resp, nil
}

func (a *anchorsServer) Verify(_ context.Context, req *keystorev1.VerifyAnchorRequest) (*keystorev1.VerifyAnchorResponse, error) {
	pub, ok := a.s.opts.Anchors[req.GetAnchor()]
	if !ok {
		return nil, &provider.Error{Code: provider.ENOENT, Op: "verify-anchor", Key: req.GetAnchor()}
	}
	if len(req.GetMessage()) > provider.MaxSignMessage {
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: "verify-anchor", Key: req.GetAnchor(), Msg: "message over " + strconv.Itoa(provider.MaxSignMessage) + " bytes"}
	}
	return &keystorev1.VerifyAnchorResponse{Valid: ed25519.Verify(pub, req.GetMessage(), req.GetSignature())}, nil
}

type storeServer struct {
	keystorev1.UnimplementedStoreServer
	s *Server
}

// maxValue bounds a stored value.
const maxValue = 64 << 10

func (st *storeServer) Put(_ context.Context, req *keystorev1.PutValueRequest) (*keystorev1.PutValueResponse, error) {
	if err := provider.CheckSegment("value name", req.GetName()); err != nil {
		return nil, provider.WithOp("put", "", err)
	}
	if len(req.GetValue()) > maxValue {
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: "put", Key: req.GetName(), Msg: "value over " + strconv.Itoa(maxValue) + " bytes"}
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	st.s.values[req.GetName()] = append([]byte{}, req.GetValue()...)
	return &keystorev1.PutValueResponse{}, nil
}

func (st *storeServer) Get(_ context.Context, req *keystorev1.GetValueRequest) (*keystorev1.GetValueResponse, error) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	v, ok := st.s.values[req.GetName()]
	if !ok {
		return nil, &provider.Error{Code: provider.ENOENT, Op: "get", Key: req.GetName()}
	}
	return &keystorev1.GetValueResponse{Value: v}, nil
}

func (st *storeServer) Delete(_ context.Context, req *keystorev1.DeleteValueRequest) (*keystorev1.DeleteValueResponse, error) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	if _, ok := st.s.values[req.GetName()]; !ok {
		return nil, &provider.Error{Code: provider.ENOENT, Op: "delete", Key: req.GetName()}
	}
	delete(st.s.values, req.GetName())
	return &keystorev1.DeleteValueResponse{}, nil
}

func (st *storeServer) List(_ context.Context, req *keystorev1.ListValuesRequest) (*keystorev1.ListValuesResponse, error) {
	st.s.mu.Lock()
	names := make([]string, 0, len(st.s.values))
	for n := range st.s.values {
		names = append(names, n)
	}
	st.s.mu.Unlock()
	sort.Strings(names)
	page, next, err := paginate(names, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &keystorev1.ListValuesResponse{Names: page, NextPageToken: next}, nil
}

// paginate returns one page of items; the token is the decimal offset.
func paginate[T any](items []T, size int32, token string) ([]T, string, error) {
	if size < 0 || size > 1000 {
		return nil, "", provider.Errorf(provider.EINVAL, "page size must be 0 .. 1000")
	}
	if size == 0 {
		size = 100
	}
	off := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", provider.Errorf(provider.EINVAL, "bad page token")
		}
		off = n
	}
	end := min(off+int(size), len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[off:end], next, nil
}

// randomBytes fills a new slice from crypto/rand.
func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, provider.Errorf(provider.EIO, "random: %w", err)
	}
	return b, nil
}

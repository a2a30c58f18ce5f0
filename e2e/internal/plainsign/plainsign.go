// Package plainsign is the baseline of the daemon's Sign benchmarks: a
// plain gRPC service (grpc.NewServer with its defaults, nothing else)
// that signs the request's message with an Ed25519 key it holds in
// memory (with circl's Ed25519, the implementation the daemon's software
// provider signs with, so that the signature costs the same on both
// sides), over a Unix socket, in a process of its own (cmd/plainsign),
// as keystored runs. Its request and response are those of Keys/Sign, so
// the difference from a real Sign through the daemon and the client
// library is everything keystored adds: identity, policy, audit, metrics,
// admission, fair scheduling. The service is described by hand (no proto
// of its own); the client side is a bare grpc.ClientConn.Invoke.
package plainsign

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	circled25519 "github.com/cloudflare/circl/sign/ed25519"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/testbin"
)

// Method is the full gRPC method name of the service's one method.
const Method = "/keystored.bench.PlainSign/Sign"

// Signer is the service's handler type.
type Signer interface {
	Sign(context.Context, *keystorev1.SignRequest) (*keystorev1.SignResponse, error)
}

// ServiceDesc describes the service to grpc.Server.RegisterService.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "keystored.bench.PlainSign",
	HandlerType: (*Signer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Sign",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := new(keystorev1.SignRequest)
			if err := dec(req); err != nil {
				return nil, err
			}
			return srv.(Signer).Sign(ctx, req)
		},
	}},
	Metadata: "plainsign",
}

// server signs with one key.
type server struct{ priv ed25519.PrivateKey }

func (s server) Sign(_ context.Context, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	if len(req.GetMessage()) > 64<<10 {
		return nil, status.Error(codes.InvalidArgument, "message too long")
	}
	return &keystorev1.SignResponse{Key: req.GetKey(), Version: 1, Signature: circled25519.Sign(circled25519.PrivateKey(s.priv), req.GetMessage())}, nil
}

// NewServer returns a grpc.Server (default options) serving the service
// with priv.
func NewServer(priv ed25519.PrivateKey) *grpc.Server {
	s := grpc.NewServer()
	s.RegisterService(&ServiceDesc, server{priv: priv})
	return s
}

// Dial connects to a plainsign server on the Unix socket at path.
func Dial(path string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Call makes one Sign call.
func Call(ctx context.Context, cc *grpc.ClientConn, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	resp := new(keystorev1.SignResponse)
	if err := cc.Invoke(ctx, Method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Package is the import path of the baseline's binary.
const Package = "github.com/nexus-os/keystored/e2e/internal/plainsign/cmd/plainsign"

// ReadyLine is what the binary prints on stdout once it serves, followed
// by the public key in hex.
const ReadyLine = "plainsign: listening, public key "

// Process is a running baseline.
type Process struct {
	Socket string
	Pid    int
	Public ed25519.PublicKey
}

// Start builds the baseline (once per test binary: testbin), runs it on
// a socket in a new temporary directory, waits until it serves, and stops
// it when t ends. The test binary's TestMain must call testbin.Cleanup
// (daemontest.Main does).
func Start(t testing.TB) *Process {
	t.Helper()
	bin := testbin.Build(t, Package)
	dir, err := os.MkdirTemp("", "plainsign-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "plainsign.sock")
	cmd := exec.Command(bin, "--socket", sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil {
			t.Errorf("plainsign: kill: %v", err)
		}
		_ = cmd.Wait() // killed: the exit status says so
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("plainsign: %v", err)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("plainsign: no ready line: %v", err)
	}
	hexKey, ok := strings.CutPrefix(strings.TrimSpace(line), ReadyLine)
	if !ok {
		t.Fatalf("plainsign: unexpected output %q", line)
	}
	pub, err := hex.DecodeString(hexKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("plainsign: bad public key %q: %v", hexKey, err)
	}
	return &Process{Socket: sock, Pid: cmd.Process.Pid, Public: pub}
}

// Listen listens on the Unix socket path (for cmd/plainsign).
func Listen(path string) (net.Listener, error) { return net.Listen("unix", path) }

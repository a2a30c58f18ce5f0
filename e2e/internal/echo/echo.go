// Package echo is the plain-gRPC baseline of keystored's benchmarks: a
// trivial unary service over a Unix socket whose request and response are
// the shapes of Keys/Sign (a SignRequest in, a SignResponse with a 64-byte
// signature out), so that the only difference from a real Sign is the work
// the daemon does. The service is described by hand (no proto of its own).
package echo

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// Method is the full gRPC method name of Echo.
const Method = "/keystored.bench.Echo/Echo"

// Echoer is the service's handler type.
type Echoer interface {
	Echo(context.Context, *keystorev1.SignRequest) (*keystorev1.SignResponse, error)
}

// ServiceDesc describes the service to grpc.Server.RegisterService.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "keystored.bench.Echo",
	HandlerType: (*Echoer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := new(keystorev1.SignRequest)
			if err := dec(req); err != nil {
				return nil, err
			}
			return srv.(Echoer).Echo(ctx, req)
		},
	}},
	Metadata: "echo",
}

// server answers every request with a fixed 64-byte "signature".
type server struct{ sig []byte }

func (s server) Echo(_ context.Context, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	return &keystorev1.SignResponse{Key: req.GetKey(), Version: 1, Signature: s.sig}, nil
}

// Serve serves the echo service on ln until the returned stop is called.
func Serve(ln net.Listener) (stop func()) {
	s := grpc.NewServer()
	s.RegisterService(&ServiceDesc, server{sig: make([]byte, 64)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln) // returns when Stop closes the listener
	}()
	return func() {
		s.Stop()
		<-done
	}
}

// Dial connects to an echo server on the Unix socket at path.
func Dial(path string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Call makes one Echo call.
func Call(ctx context.Context, cc *grpc.ClientConn, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	resp := new(keystorev1.SignResponse)
	if err := cc.Invoke(ctx, Method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

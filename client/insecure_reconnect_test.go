package client_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/client"
)

// signOnlyKeys answers Sign; with insecure set every response of the
// server (every method, refusals included) is marked INSECURE, as the
// daemon on the testseed provider marks them (server.Server.serve).
type signOnlyKeys struct {
	keystorev1.UnimplementedKeysServer
	insecure bool
}

func (k signOnlyKeys) Sign(ctx context.Context, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	return &keystorev1.SignResponse{Key: req.GetKey(), Version: 1, Signature: make([]byte, 64)}, nil
}

func serveKeys(t *testing.T, sock string, keys signOnlyKeys) *grpc.Server {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if keys.insecure {
			if err := grpc.SetHeader(ctx, metadata.Pairs(client.InsecureHeader, "true")); err != nil {
				return nil, err
			}
		}
		return h(ctx, req)
	}))
	keystorev1.RegisterKeysServer(s, keys)
	keystorev1.RegisterTrustAnchorsServer(s, keystorev1.UnimplementedTrustAnchorsServer{})
	go s.Serve(l)
	return s
}

// TestInsecureMarkOnFirstResponseAfterReconnect: the daemon restarts on
// the INSECURE testseed provider at the same socket while a client is
// connected. The client's next call makes a new connection (gRPC
// reconnects when a call needs one), so its response is the first of
// that connection and must be checked for the insecure header
// (docs/client: "the client reads the headers of the first response on
// every connection it makes"): Client.Insecure() must be true right after
// that Sign, not only after a later call.
func TestInsecureMarkOnFirstResponseAfterReconnect(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "k.sock")
	secure := serveKeys(t, sock, signOnlyKeys{})
	c, err := client.Dial(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Sign(context.Background(), "p/k", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if c.Insecure() {
		t.Fatal("Insecure() = true on a secure daemon")
	}
	secure.Stop()
	insecure := serveKeys(t, sock, signOnlyKeys{insecure: true})
	defer insecure.Stop()
	var err2 error
	for range 20 {
		// The first call may meet the closing connection.
		if _, err2 = c.Sign(context.Background(), "p/k", []byte("m")); err2 == nil {
			break
		}
	}
	if err2 != nil {
		t.Fatal(err2)
	}
	if !c.Insecure() {
		t.Fatal("a Sign answered by an INSECURE daemon on a new connection (its first response) left Client.Insecure() false")
	}
}

package client_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

// dial starts keystored's server (clienttest) with opts and returns a
// client connected to it.
func dial(t *testing.T, opts clienttest.Options) (*client.Client, *clienttest.Server) {
	t.Helper()
	srv := clienttest.Start(t, opts)
	c, err := client.Dial(context.Background(), srv.Socket)
	if err != nil {
		t.Fatalf("Dial(%s): %v", srv.Socket, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c, srv
}

func TestDialNoSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.sock")
	_, err := client.Dial(context.Background(), path)
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Dial(missing) = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the socket %s", err, path)
	}
}

// Dial("") takes $KEYSTORE_SOCKET, else the development default.
func TestDialSocketFromEnv(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	t.Setenv(client.SocketEnv, srv.Socket)
	c, err := client.Dial(context.Background(), "")
	if err != nil {
		t.Fatalf("Dial(\"\") with %s=%s: %v", client.SocketEnv, srv.Socket, err)
	}
	if c.Socket() != srv.Socket {
		t.Errorf("Socket() = %q, want %q", c.Socket(), srv.Socket)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(client.SocketEnv, "")
	t.Chdir(t.TempDir())
	_, err = client.Dial(context.Background(), "")
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), client.DefaultSocket) {
		t.Fatalf("Dial(\"\") without %s = %v, want ErrUnavailable naming %s", client.SocketEnv, err, client.DefaultSocket)
	}
}

func TestDialNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := client.Dial(context.Background(), path)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Dial(file) = %v, want ErrUnavailable naming 'not a socket'", err)
	}
}

func TestDialRefused(t *testing.T) {
	// A socket file nobody listens on: bind, then close the listener
	// without unlinking.
	dir, err := os.MkdirTemp("", "kst-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "dead.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = client.Dial(context.Background(), path, client.WithDialTimeout(2*time.Second))
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Dial(refused) = %v, want ErrUnavailable naming %s", err, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial(refused) = %v, want the cause ECONNREFUSED in the chain", err)
	}
}

func TestDaemonGoneIsUnavailable(t *testing.T) {
	c, srv := dial(t, clienttest.Options{})
	if _, err := c.Create(context.Background(), "p/k", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err := c.Get(context.Background(), "p/k")
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Get after stop = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), srv.Socket) {
		t.Errorf("error %q does not name the socket", err)
	}
}

func TestContextErrors(t *testing.T) {
	c, _ := dial(t, clienttest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Get(ctx, "p/k")
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Get(cancelled ctx) = %v, want ErrUnavailable and context.Canceled", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel()
	_, err = c.Get(ctx, "p/k")
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get(expired ctx) = %v, want ErrUnavailable and context.DeadlineExceeded", err)
	}
}

func TestInsecureFlag(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		c, _ := dial(t, clienttest.Options{Insecure: insecure})
		if c.Insecure() {
			t.Fatalf("Insecure() before any call = true")
		}
		k, err := c.Create(context.Background(), "p/k", client.CreateOptions{Algorithm: client.Ed25519})
		if err != nil {
			t.Fatal(err)
		}
		if k.Insecure != insecure || c.Insecure() != insecure {
			t.Errorf("insecure daemon %v: KeyInfo.Insecure = %v, Client.Insecure() = %v", insecure, k.Insecure, c.Insecure())
		}
	}
}

func TestParseKeyRef(t *testing.T) {
	tests := []struct {
		in      string
		key     string
		version uint32
		err     error
	}{
		{"p/k", "p/k", 0, nil},
		{"app/p/k@3", "app/p/k", 3, nil},
		{"p/k@4294967295", "p/k", 4294967295, nil},
		{"p/k@0", "", 0, client.ErrInvalid},
		{"p/k@01", "", 0, client.ErrInvalid},
		{"p/k@-1", "", 0, client.ErrInvalid},
		{"p/k@4294967296", "", 0, client.ErrInvalid},
		{"p/k@", "", 0, client.ErrInvalid},
		{"@1", "", 0, client.ErrInvalid},
		{"p/k@+1", "", 0, client.ErrInvalid},
		{"p/k@1x", "", 0, client.ErrInvalid},
		{"p/k@ 1", "", 0, client.ErrInvalid},
		{"p/k@9223372036854775808", "", 0, client.ErrInvalid},
		{"p/k@" + strings.Repeat("9", 1000), "", 0, client.ErrInvalid},
		{"a/b/c@1@2", "a/b/c@1", 2, nil}, // the key part is the daemon's to check
	}
	for _, tt := range tests {
		key, v, err := client.ParseKeyRef(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("ParseKeyRef(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || key != tt.key || v != tt.version {
			t.Errorf("ParseKeyRef(%q) = %q, %d, %v; want %q, %d", tt.in, key, v, err, tt.key, tt.version)
		}
	}
}

// TestInsecureHeaderReadOncePerConnection: the calls that return no key
// metadata read the response headers (the insecure mark) on the first
// call of each connection only — a bare gRPC client's work otherwise —
// and still report an INSECURE daemon, also when the first call is a
// Sign; a new connection is checked again.
func TestInsecureHeaderReadOncePerConnection(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		srv := clienttest.Start(t, clienttest.Options{Insecure: insecure})
		var withHeader, signs, probes atomic.Int64
		count := grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if strings.HasSuffix(method, "/Sign") {
				signs.Add(1)
				for _, o := range opts {
					if _, ok := o.(grpc.HeaderCallOption); ok {
						withHeader.Add(1)
					}
				}
			}
			if strings.HasSuffix(method, "/ListAnchors") {
				// The check after a call during which a connection was
				// made (gRPC's transparent retry onto it).
				probes.Add(1)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		})
		setup, err := client.Dial(context.Background(), srv.Socket)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"p/k", "p/other"} {
			if _, err := setup.Create(context.Background(), k, client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
				t.Fatal(err)
			}
		}
		if err := setup.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(context.Background(), srv.Socket, client.WithGRPCOptions(count))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Error(err)
			}
		})
		for range 5 {
			if _, err := c.Sign(context.Background(), "p/k", []byte("m")); err != nil {
				t.Fatal(err)
			}
		}
		if signs.Load() != 5 || withHeader.Load() != 1 {
			t.Fatalf("insecure %v: %d of %d Sign calls read the headers, want 1 of 5", insecure, withHeader.Load(), signs.Load())
		}
		if c.Insecure() != insecure {
			t.Fatalf("insecure daemon %v: Client.Insecure() = %v after Sign calls only", insecure, c.Insecure())
		}
		srv.SetUnreadable("app/p/other") // restarts the server: the connection is closed
		for range 3 {
			if _, err := c.Sign(context.Background(), "p/k", []byte("m")); err != nil {
				// The first call may meet the closing connection.
				if _, err := c.Sign(context.Background(), "p/k", []byte("m")); err != nil {
					t.Fatal(err)
				}
			}
		}
		if withHeader.Load() < 2 && probes.Load() == 0 {
			t.Fatalf("insecure %v: no call read the headers of the new connection (%d of %d Sign calls, no ListAnchors check)", insecure, withHeader.Load(), signs.Load())
		}
	}
}

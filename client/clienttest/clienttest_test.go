package clienttest_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

func dial(t *testing.T, srv *clienttest.Server) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// The caller is the test process's uid, mapped to Options.App by the
// daemon's identity map: its keys are under that app, another app's are
// refused unless the caller is an operator.
func TestIdentityFromPeerCredentials(t *testing.T) {
	ctx := context.Background()
	c := dial(t, clienttest.Start(t, clienttest.Options{App: "web"}))
	k, err := c.Create(ctx, "signing/k", client.CreateOptions{Algorithm: "ed25519"})
	if err != nil || k.ID != "web/signing/k" {
		t.Fatalf("create = %q, %v; want web/signing/k", k.ID, err)
	}
	if _, err := c.Create(ctx, "other/signing/k", client.CreateOptions{}); !errors.Is(err, client.ErrPermission) {
		t.Errorf("create under another app = %v, want ErrPermission", err)
	}
	op := dial(t, clienttest.Start(t, clienttest.Options{App: "root", Operator: true}))
	if _, err := op.Create(ctx, "other/signing/k", client.CreateOptions{}); err != nil {
		t.Errorf("operator create under another app: %v", err)
	}
}

// Every call is audited in a hash-chained log that verifies, faults and
// refusals included, with the caller's uid from the kernel.
func TestAuditLog(t *testing.T) {
	ctx := context.Background()
	srv := clienttest.Start(t, clienttest.Options{})
	c := dial(t, srv)
	if _, err := c.Create(ctx, "p/k", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv.SetFault(func(string) error { return provider.Errorf(provider.EIO, "injected") })
	if _, err := c.Get(ctx, "p/k"); !errors.Is(err, client.ErrIO) {
		t.Fatalf("faulted get = %v, want ErrIO", err)
	}
	f, err := os.Open(srv.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []audit.Record
	if _, err := audit.Walk(f, func(r audit.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatalf("audit log does not verify: %v", err)
	}
	if len(got) != 3 || got[0].Op != "keys.create" || got[0].Result != "ok" || got[1].Op != "keys.applied" || got[1].Gen != 1 ||
		got[2].Op != "keys.get" || got[2].Result != "EIO" {
		t.Fatalf("audit records %+v; want keys.create ok, keys.applied gen 1, keys.get EIO", got)
	}
	if got[0].Caller.UID != int64(os.Getuid()) || got[0].Caller.App != "app" {
		t.Errorf("audited caller %+v, want uid %d app app", got[0].Caller, os.Getuid())
	}
}

// A coded fault travels as the daemon's errors do; a plain gRPC status
// never reaches the daemon. Both are counted.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	srv := clienttest.Start(t, clienttest.Options{})
	c := dial(t, srv)
	srv.SetFault(func(string) error { return provider.Errorf(provider.EKEYREVOKED, "injected") })
	if _, err := c.Get(ctx, "p/k"); !errors.Is(err, client.ErrKeyRevoked) || err.Error() != "injected" {
		t.Errorf("coded fault = %v, want ErrKeyRevoked %q", err, "injected")
	}
	srv.SetFault(func(string) error { return status.Error(codes.NotFound, "plain") })
	if _, err := c.Get(ctx, "p/k"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("plain status fault = %v, want ErrNotFound from the gRPC code", err)
	}
	srv.SetFault(nil)
	if _, err := c.Get(ctx, "p/k"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get of a missing key = %v, want ErrNotFound", err)
	}
	if n := srv.Calls("/keystore.v1.Keys/Get"); n != 3 {
		t.Errorf("Calls(Get) = %d, want 3", n)
	}
}

// SetUnreadable corrupts the key's metadata; the server reads it again and
// reports it, the other keys unaffected, over the client's same connection.
func TestSetUnreadable(t *testing.T) {
	ctx := context.Background()
	srv := clienttest.Start(t, clienttest.Options{})
	c := dial(t, srv)
	for _, k := range []string{"p/a", "p/b"} {
		if _, err := c.Create(ctx, k, client.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	srv.SetUnreadable("app/p/b")
	if _, err := c.Get(ctx, "p/b"); !errors.Is(err, client.ErrIO) {
		t.Errorf("get of the corrupted key = %v, want ErrIO", err)
	}
	if _, err := c.Get(ctx, "p/a"); err != nil {
		t.Errorf("get of the other key: %v", err)
	}
}

// Stop cuts the server: later calls fail with ErrUnavailable.
func TestStop(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	c := dial(t, srv)
	srv.Stop()
	if _, err := c.Get(context.Background(), "p/k"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("after Stop = %v, want ErrUnavailable", err)
	}
	srv.Stop() // again: no effect
}

package client_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

// sentinels maps each code to the client's sentinel and its errno.
var sentinels = []struct {
	code     client.Code
	sentinel error
	errno    syscall.Errno
}{
	{provider.EPERM, client.ErrPermission, syscall.EPERM},
	{provider.ENOENT, client.ErrNotFound, syscall.ENOENT},
	{provider.EALREADY, client.ErrAlready, syscall.EALREADY},
	{provider.EKEYREVOKED, client.ErrKeyRevoked, syscall.EKEYREVOKED},
	{provider.EINVAL, client.ErrInvalid, syscall.EINVAL},
	{provider.EMSGSIZE, client.ErrTooLarge, syscall.EMSGSIZE},
	{provider.EBADMSG, client.ErrBadMessage, syscall.EBADMSG},
	{provider.ENOTSUP, client.ErrNotSupported, syscall.ENOTSUP},
	{provider.EIO, client.ErrIO, syscall.EIO},
	{provider.EUNAVAILABLE, client.ErrUnavailable, 0},
	{provider.EDQUOT, client.ErrQuota, syscall.EDQUOT},
	{provider.EKEYEXPIRED, client.ErrExpired, syscall.EKEYEXPIRED},
}

func TestSentinelTableCoversEveryCode(t *testing.T) {
	if got, want := len(sentinels), len(provider.Codes()); got != want {
		t.Fatalf("table has %d codes, provider has %d", got, want)
	}
}

// every RPC of keystore.v1, as a call through the client.
func everyMethod(c *client.Client) map[string]func(context.Context) error {
	msg := []byte("m")
	return map[string]func(context.Context) error{
		"Keys/Create":        func(ctx context.Context) error { _, err := c.Create(ctx, "p/k", client.CreateOptions{}); return err },
		"Keys/Get":           func(ctx context.Context) error { _, err := c.Get(ctx, "p/k"); return err },
		"Keys/List":          func(ctx context.Context) error { _, err := c.List(ctx, client.ListOptions{}); return err },
		"Keys/Rotate":        func(ctx context.Context) error { _, err := c.Rotate(ctx, "p/k"); return err },
		"Keys/Revoke":        func(ctx context.Context) error { _, err := c.Revoke(ctx, "p/k"); return err },
		"Keys/RevokeVersion": func(ctx context.Context) error { _, err := c.RevokeVersion(ctx, "p/k", 1); return err },
		"Keys/Destroy":       func(ctx context.Context) error { _, err := c.Destroy(ctx, "p/k"); return err },
		"Keys/SetPolicy":     func(ctx context.Context) error { _, err := c.SetPolicy(ctx, "p/k", client.Policy{}); return err },
		"Keys/PublicKey":     func(ctx context.Context) error { _, err := c.PublicKey(ctx, "p/k", 0); return err },
		"Keys/Sign":          func(ctx context.Context) error { _, err := c.Sign(ctx, "p/k", msg); return err },
		"Keys/Verify":        func(ctx context.Context) error { return c.Verify(ctx, "p/k", 1, msg, msg) },
		"Keys/Seal":          func(ctx context.Context) error { _, err := c.Seal(ctx, "p/k", msg, nil); return err },
		"Keys/Unseal":        func(ctx context.Context) error { _, err := c.Unseal(ctx, "p/k", msg, nil); return err },
		"Keys/Rewrap":        func(ctx context.Context) error { _, err := c.Rewrap(ctx, "p/k", msg, nil); return err },
		"Keys/SignBatch": func(ctx context.Context) error {
			_, err := c.SignBatch(ctx, []client.SignItem{{Key: "p/k"}})
			return err
		},
		"Keys/SealBatch": func(ctx context.Context) error {
			_, err := c.SealBatch(ctx, []client.SealItem{{Key: "p/k"}})
			return err
		},
		"Keys/UnsealBatch": func(ctx context.Context) error {
			_, err := c.UnsealBatch(ctx, []client.UnsealItem{{Key: "p/k"}})
			return err
		},
		"Store/Put":                func(ctx context.Context) error { return c.PutValue(ctx, "v", msg) },
		"Store/Get":                func(ctx context.Context) error { _, err := c.GetValue(ctx, "v"); return err },
		"Store/Delete":             func(ctx context.Context) error { return c.DeleteValue(ctx, "v") },
		"Store/List":               func(ctx context.Context) error { _, err := c.ListValues(ctx, 0, ""); return err },
		"TrustAnchors/ListAnchors": func(ctx context.Context) error { _, err := c.ListAnchors(ctx); return err },
		"TrustAnchors/Verify":      func(ctx context.Context) error { return c.VerifyAnchor(ctx, "a", msg, msg) },
		"Admin/WrappingKeyStatus":  func(ctx context.Context) error { _, err := c.KEKStatus(ctx); return err },
		"Admin/RotateWrappingKey":  func(ctx context.Context) error { _, err := c.RotateKEK(ctx); return err },
		"Keys/Sweep":               func(ctx context.Context) error { _, err := c.Sweep(ctx, client.SweepOptions{}); return err },
		"Keys/GetUsage":            func(ctx context.Context) error { _, err := c.Usage(ctx, ""); return err },
		"Keys/Mac":                 func(ctx context.Context) error { _, err := c.MAC(ctx, "p/k", msg); return err },
		"Keys/VerifyMac":           func(ctx context.Context) error { return c.VerifyMAC(ctx, "p/k", 1, msg, msg) },
		"Keys/MacBatch": func(ctx context.Context) error {
			_, err := c.MACBatch(ctx, []client.MACItem{{Key: "p/k"}})
			return err
		},
		"Keys/VerifyMacBatch": func(ctx context.Context) error {
			_, err := c.VerifyMACBatch(ctx, []client.VerifyMACItem{{Key: "p/k", Version: 1}})
			return err
		},
		"Keys/GenerateDataKey": func(ctx context.Context) error {
			_, err := c.GenerateDataKey(ctx, "p/k", client.DataKeySpec{}, msg)
			return err
		},
		"Keys/GenerateDataKeyWithoutPlaintext": func(ctx context.Context) error {
			_, err := c.GenerateDataKeyWithoutPlaintext(ctx, "p/k", client.DataKeySpec{}, msg)
			return err
		},
		"Keys/Decrypt": func(ctx context.Context) error {
			_, err := c.Decrypt(ctx, "p/k", 1, client.HPKEMessage{Enc: msg, Ciphertext: msg})
			return err
		},
		"Keys/GetImportParameters": func(ctx context.Context) error {
			_, err := c.GetImportParameters(ctx, "p/k", client.AES256GCM, client.ImportOptions{})
			return err
		},
		"Keys/Import": func(ctx context.Context) error {
			_, err := c.Import(ctx, "p/k", "kit1.token", msg, msg, client.Policy{})
			return err
		},
	}
}

// TestEveryCodeEveryMethod: the daemon's error, whatever the code and the
// method, comes back wrapping the same sentinel and errno, with the
// daemon's message.
func TestEveryCodeEveryMethod(t *testing.T) {
	c, srv := dial(t, clienttest.Options{})
	methods := everyMethod(c)
	services := keystorev1.File_keystore_proto.Services()
	rpcs := 0
	for i := range services.Len() {
		sd := services.Get(i)
		for j := range sd.Methods().Len() {
			rpcs++
			if name := string(sd.Name()) + "/" + string(sd.Methods().Get(j).Name()); methods[name] == nil {
				t.Errorf("the table has no call of %s", name)
			}
		}
	}
	if len(methods) != rpcs {
		t.Fatalf("%d methods in the table, want the %d RPCs of keystore.v1", len(methods), rpcs)
	}
	for _, s := range sentinels {
		var called string
		srv.SetFault(func(method string) error {
			called = method
			return &provider.Error{Code: s.code, Op: "fault", Key: "app/p/k", Msg: "injected"}
		})
		for name, f := range methods {
			err := f(context.Background())
			if called != "/keystore.v1."+name {
				t.Errorf("%s: the daemon saw %q", name, called)
			}
			if got, ok := client.CodeOf(err); !ok || got != s.code {
				t.Errorf("%s with %v: CodeOf = %v, %v", name, s.code, got, ok)
			}
			if !errors.Is(err, s.sentinel) {
				t.Errorf("%s with %v: %v does not match the sentinel", name, s.code, err)
			}
			if s.errno != 0 && !errors.Is(err, s.errno) {
				t.Errorf("%s with %v: %v does not match syscall errno %d", name, s.code, err, s.errno)
			}
			want := "fault app/p/k: injected"
			if err == nil || err.Error() != want {
				t.Errorf("%s with %v: message %q, want %q", name, s.code, err, want)
			}
			for _, other := range sentinels {
				if other.code != s.code && errors.Is(err, other.sentinel) {
					t.Errorf("%s with %v also matches %v", name, s.code, other.code)
				}
			}
		}
	}
}

func TestErrnoAndFS(t *testing.T) {
	c, srv := dial(t, clienttest.Options{})
	srv.SetFault(func(string) error { return provider.Errorf(provider.ENOENT, "gone") })
	_, err := c.Get(context.Background(), "p/k")
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("ENOENT: %v does not match fs.ErrNotExist and syscall.ENOENT", err)
	}
	srv.SetFault(func(string) error { return provider.Errorf(provider.EKEYREVOKED, "revoked") })
	_, err = c.Sign(context.Background(), "p/k", nil)
	if !errors.Is(err, syscall.EKEYREVOKED) || errors.Is(err, syscall.ENOENT) {
		t.Errorf("EKEYREVOKED: %v, want syscall.EKEYREVOKED only", err)
	}
}

// A status without keystored's reason falls back on the gRPC code.
func TestStatusWithoutReason(t *testing.T) {
	c, srv := dial(t, clienttest.Options{})
	tests := []struct {
		code codes.Code
		want error
	}{
		{codes.NotFound, client.ErrNotFound},
		{codes.PermissionDenied, client.ErrPermission},
		{codes.InvalidArgument, client.ErrInvalid},
		{codes.Unknown, client.ErrIO},
		{codes.Unimplemented, client.ErrNotSupported},
	}
	for _, tt := range tests {
		srv.SetFault(func(string) error { return status.Error(tt.code, "plain") })
		if _, err := c.Get(context.Background(), "p/k"); !errors.Is(err, tt.want) {
			t.Errorf("status %v: %v, want %v", tt.code, err, tt.want)
		}
	}
}

// The daemon's own EUNAVAILABLE (its provider is down) keeps its message;
// a transport failure names the socket.
func TestUnavailableFromDaemonKeepsMessage(t *testing.T) {
	c, srv := dial(t, clienttest.Options{})
	srv.SetFault(func(string) error { return provider.Errorf(provider.EUNAVAILABLE, "plugin provider not running") })
	_, err := c.Get(context.Background(), "p/k")
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "plugin provider not running") {
		t.Errorf("daemon EUNAVAILABLE = %v, want its message", err)
	}
	srv.SetFault(func(string) error { return status.Error(codes.Unavailable, "transport is closing") })
	_, err = c.Get(context.Background(), "p/k")
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), srv.Socket) {
		t.Errorf("transport Unavailable = %v, want a message naming the socket", err)
	}
}

package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// flakyProvider fails Sign with EUNAVAILABLE while down is set.
type flakyProvider struct {
	provider.Provider
	down atomic.Bool
}

func (f *flakyProvider) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, provider.Errorf(provider.EUNAVAILABLE, "provider is restarting")
	}
	return f.Provider.Sign(ctx, ref, h, msg)
}

// TestErrorMapping: every code reaches the client as its gRPC code and
// reason, and comes back as the same sentinel and errno.
func TestErrorMapping(t *testing.T) {
	var flaky *flakyProvider
	e := newEnv(t, envOpts{wrap: func(p provider.Provider) provider.Provider {
		flaky = &flakyProvider{Provider: p}
		return flaky
	}})
	k := e.keys
	_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = k.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create enc", err)
	_, err = k.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/revoked", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = k.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: "sig/revoked"})
	mustOK(t, "Revoke", err)
	se, err := k.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte("p")})
	mustOK(t, "Seal", err)
	tampered := append([]byte(nil), se.GetSealed()...)
	tampered[len(tampered)-1] ^= 1

	cases := []struct {
		code  provider.Code
		sent  error
		grpc  codes.Code
		errno syscall.Errno
		call  func() error
	}{
		{provider.EPERM, provider.ErrPermission, codes.PermissionDenied, syscall.EPERM, func() error {
			_, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: "bob/sig/k"})
			return err
		}},
		{provider.ENOENT, provider.ErrNotFound, codes.NotFound, syscall.ENOENT, func() error {
			_, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: "sig/missing"})
			return err
		}},
		{provider.EALREADY, provider.ErrAlready, codes.AlreadyExists, syscall.EALREADY, func() error {
			_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
			return err
		}},
		{provider.EKEYREVOKED, provider.ErrKeyRevoked, codes.FailedPrecondition, syscall.EKEYREVOKED, func() error {
			_, err := k.Sign(bg, &keystorev1.SignRequest{Key: "sig/revoked", Message: []byte("m")})
			return err
		}},
		{provider.EINVAL, provider.ErrInvalid, codes.InvalidArgument, syscall.EINVAL, func() error {
			_, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: "Bad/Name"})
			return err
		}},
		{provider.EMSGSIZE, provider.ErrTooLarge, codes.ResourceExhausted, syscall.EMSGSIZE, func() error {
			_, err := k.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: make([]byte, provider.MaxSignMessage+1)})
			return err
		}},
		{provider.EBADMSG, provider.ErrBadMessage, codes.DataLoss, syscall.EBADMSG, func() error {
			_, err := k.Unseal(bg, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: tampered})
			return err
		}},
		{provider.ENOTSUP, provider.ErrNotSupported, codes.Unimplemented, syscall.ENOTSUP, func() error {
			_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "rsa-1024"})
			return err
		}},
		{provider.EIO, provider.ErrIO, codes.Internal, syscall.EIO, func() error {
			e.audit.failAppend.Store(true)
			defer e.audit.failAppend.Store(false)
			_, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: "sig/k"})
			return err
		}},
		{provider.EKEYEXPIRED, provider.ErrExpired, codes.FailedPrecondition, syscall.EKEYEXPIRED, func() error {
			p, err := k.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/k", Algorithm: "aes-256-gcm", TtlSeconds: 60})
			if err != nil {
				return err
			}
			e.clock.Advance(time.Minute)
			_, err = k.Import(bg, &keystorev1.ImportKeyRequest{Key: "imp/k", Token: p.GetToken()})
			return err
		}},
		{provider.EUNAVAILABLE, provider.ErrUnavailable, codes.Unavailable, 0, func() error {
			flaky.down.Store(true)
			defer flaky.down.Store(false)
			_, err := k.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.code.String(), func(t *testing.T) {
			err := c.call()
			if err == nil {
				t.Fatal("got success")
			}
			st, _ := status.FromError(err)
			if st.Code() != c.grpc {
				t.Errorf("gRPC code = %v, want %v", st.Code(), c.grpc)
			}
			got := rpcerr.FromStatus(err)
			if !errors.Is(got, c.sent) {
				t.Errorf("errors.Is(%v, %v) = false", got, c.sent)
			}
			if c.errno != 0 && !errors.Is(got, c.errno) {
				t.Errorf("errors.Is(%v, syscall.%v) = false", got, c.errno)
			}
			// The code travels in the status's reason, not in its text.
			if strings.Contains(got.Error(), c.code.String()) {
				t.Errorf("message %q repeats the code %v", got.Error(), c.code)
			}
		})
	}
}

// TestUnknownMethod: a method keystore.v1 does not have is ENOTSUP and
// audited.
func TestUnknownMethod(t *testing.T) {
	e := newEnv(t, envOpts{})
	before := e.audit.count()
	err := invokeRaw(e.conn, "/keystore.v1.Keys/Frobnicate", nil)
	wantCode(t, "unknown method", err, provider.ENOTSUP)
	recs := e.audit.waitFor(t, before+1)
	if len(recs) != before+1 {
		t.Fatalf("%d audit records, want %d", len(recs), before+1)
	}
	if r := recs[before]; r.Op != opUnknown || r.Result != "ENOTSUP" {
		t.Fatalf("record %+v, want op %q result ENOTSUP", r, opUnknown)
	}
}

// TestMalformedMessages: bytes that are not a request message are EINVAL
// (not Internal), audited, and change nothing.
func TestMalformedMessages(t *testing.T) {
	e := newEnv(t, envOpts{})
	before := e.audit.count()
	snap := e.mem.Snapshot()
	bodies := [][]byte{
		{0xff},                               // invalid tag
		{0x0a, 0x05, 'a'},                    // truncated length-delimited field
		{0x0a, 0x02, 0xc3, 0x28},             // invalid UTF-8 in a string field
		{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, // huge length
		{0x08},                               // truncated varint
	}
	for i, b := range bodies {
		err := invokeRaw(e.conn, keystorev1.Keys_Create_FullMethodName, b)
		wantCode(t, "malformed Create", err, provider.EINVAL)
		err = invokeRaw(e.conn, keystorev1.Store_Put_FullMethodName, b)
		wantCode(t, "malformed Put", err, provider.EINVAL)
		if got := e.audit.count(); got != before+2*(i+1) {
			t.Fatalf("after %d malformed calls: %d records, want %d", 2*(i+1), got-before, 2*(i+1))
		}
	}
	for _, r := range e.audit.records()[before:] {
		if r.Result != "EINVAL" || r.Key != "" || r.Caller.App != "alice" {
			t.Fatalf("record %+v", r)
		}
	}
	if len(e.mem.Snapshot()) != len(snap) {
		t.Fatal("malformed requests changed the state")
	}
	// The daemon still serves.
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/after", Algorithm: "ed25519"})
	mustOK(t, "Create after malformed", err)
}

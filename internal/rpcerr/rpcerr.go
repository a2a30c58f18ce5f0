// Package rpcerr is the one table that carries keystored's error codes
// across every gRPC boundary (the provider plugin protocol and the daemon
// API): each provider.Code maps to a gRPC status code, and the code's name
// travels as the reason of a google.rpc.ErrorInfo in the status details
// (domain "keystored"). The receiving side rebuilds an error that wraps the
// same sentinel, so errors.Is(err, provider.ErrKeyRevoked) — and
// errors.Is(err, syscall.EKEYREVOKED) — hold on both sides.
//
// Authors in other languages: send the reason string ("EKEYREVOKED") in an
// ErrorInfo with domain "keystored"; the gRPC code alone is only a fallback.
package rpcerr

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexus-os/keystored/core/provider"
)

// Domain is the ErrorInfo domain of keystored's reasons.
const Domain = "keystored"

// MaxMessage bounds the human-readable message carried across a boundary.
const MaxMessage = 1024

// table: each Code and its gRPC status code. Two pairs of codes share
// one: EMSGSIZE (an input over its bound, gRPC's own use of the code for
// a message too large) and EDQUOT (a quota, the code's other documented
// use) share ResourceExhausted; EKEYREVOKED and EKEYEXPIRED (an import
// token past its expiry: Cloud KMS answers an expired import job the
// same way) share FailedPrecondition, the state a caller must fix before
// retrying. The reason tells them apart; a status without a reason is
// the first of each pair (preferred), EMSGSIZE and EKEYREVOKED.
var table = map[provider.Code]codes.Code{
	provider.EPERM:        codes.PermissionDenied,
	provider.ENOENT:       codes.NotFound,
	provider.EALREADY:     codes.AlreadyExists,
	provider.EKEYREVOKED:  codes.FailedPrecondition,
	provider.EINVAL:       codes.InvalidArgument,
	provider.EMSGSIZE:     codes.ResourceExhausted,
	provider.EBADMSG:      codes.DataLoss,
	provider.ENOTSUP:      codes.Unimplemented,
	provider.EIO:          codes.Internal,
	provider.EUNAVAILABLE: codes.Unavailable,
	provider.EDQUOT:       codes.ResourceExhausted,
	provider.EKEYEXPIRED:  codes.FailedPrecondition,
}

// preferred is, for each gRPC code several Codes share, the Code a status
// without a reason means: a transport's ResourceExhausted is a message
// too large; a FailedPrecondition from an older peer, a revoked key.
var preferred = map[codes.Code]provider.Code{
	codes.ResourceExhausted:  provider.EMSGSIZE,
	codes.FailedPrecondition: provider.EKEYREVOKED,
}

// fallback is the Code of a gRPC status code that carries no reason.
var fallback = func() map[codes.Code]provider.Code {
	m := map[codes.Code]provider.Code{}
	for c, g := range table {
		m[g] = c
	}
	for g, c := range preferred {
		m[g] = c
	}
	m[codes.Unavailable] = provider.EUNAVAILABLE
	m[codes.Canceled] = provider.EUNAVAILABLE
	m[codes.DeadlineExceeded] = provider.EUNAVAILABLE
	return m
}()

// GRPCCode returns the gRPC status code for c (Internal for an invalid c).
func GRPCCode(c provider.Code) codes.Code {
	if g, ok := table[c]; ok {
		return g
	}
	return codes.Internal
}

// ToStatus converts err to a gRPC status error carrying its code as the
// reason. An error without a code becomes EIO; a context error becomes
// EUNAVAILABLE. nil stays nil.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	code, ok := provider.CodeOf(err)
	if !ok {
		code = provider.EIO
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			code = provider.EUNAVAILABLE
		}
	}
	st := status.New(GRPCCode(code), bound(err.Error()))
	if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: code.String(), Domain: Domain}); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// FromStatus converts an error returned by a gRPC call back into a
// keystored error wrapping the Code that comes from the ErrorInfo
// reason, or from the gRPC code when there is none (Unavailable, Canceled
// and DeadlineExceeded become EUNAVAILABLE; anything unknown EIO). The
// message is the remote message, bounded. nil stays nil.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return provider.Errorf(provider.EUNAVAILABLE, "call cancelled: %w", err)
		}
		return provider.Errorf(provider.EIO, "remote call failed: %w", err)
	}
	code, found := provider.Code(0), false
	if reason, ok := Reason(st); ok {
		code, found = provider.ParseCode(reason)
	}
	if !found {
		code = fromGRPC(st.Code())
	}
	msg := bound(st.Message())
	if msg == "" {
		msg = code.Error()
	}
	return &remoteError{code: code, msg: msg, grpc: st.Code()}
}

// Reason returns the keystored reason a status carries (the Reason of an
// ErrorInfo in domain Domain), and whether it carries one: a status
// without it was made by a transport, not by keystored or a provider.
func Reason(st *status.Status) (string, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info.GetReason(), true
		}
	}
	return "", false
}

// bound cuts msg to at most MaxMessage bytes of valid UTF-8: a status
// message that is not valid UTF-8 does not marshal, and the transport
// would then drop the status details, reason included.
func bound(msg string) string {
	if len(msg) > MaxMessage {
		msg = msg[:MaxMessage]
	}
	return strings.ToValidUTF8(msg, "")
}

func fromGRPC(c codes.Code) provider.Code {
	if code, ok := fallback[c]; ok {
		return code
	}
	return provider.EIO
}

// remoteError is an error that came across a gRPC boundary. Its message
// is the remote one, printed as received; it unwraps to its Code.
type remoteError struct {
	code provider.Code
	msg  string
	grpc codes.Code
}

func (e *remoteError) Error() string { return e.msg }

// Unwrap exposes the Code (and so the sentinels and errno).
func (e *remoteError) Unwrap() error { return e.code }

// GRPCStatus lets a remote error be returned again across another gRPC
// boundary unchanged (the daemon relaying a plugin's error).
func (e *remoteError) GRPCStatus() *status.Status {
	st := status.New(e.grpc, e.msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.code.String(), Domain: Domain}); err == nil {
		return withInfo
	}
	return st
}

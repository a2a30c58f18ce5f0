package rpcerr

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nexus-os/keystored/core/provider"
)

// Every code survives the round trip as the same sentinel and errno.
func TestRoundTrip(t *testing.T) {
	seen := map[codes.Code]provider.Code{}
	for _, c := range provider.Codes() {
		orig := &provider.Error{Code: c, Op: "sign", Key: "app/p/k@1", Msg: "detail"}
		st := ToStatus(orig)
		s, ok := status.FromError(st)
		if !ok || s.Code() != GRPCCode(c) {
			t.Fatalf("%v: status %v", c, st)
		}
		if prev, dup := seen[s.Code()]; dup && !sharesCode(prev, c) {
			t.Fatalf("%v and %v share gRPC code %v", prev, c, s.Code())
		}
		seen[s.Code()] = c
		back := FromStatus(st)
		if !errors.Is(back, c) {
			t.Fatalf("%v came back as %v", c, back)
		}
		if errno := c.Errno(); errno != 0 && !errors.Is(back, errno) {
			t.Fatalf("%v: errors.Is(_, %v) false", c, errno)
		}
		if back.Error() != orig.Error() {
			t.Fatalf("message %q, want %q", back.Error(), orig.Error())
		}
		// Relayed again across a second boundary: still the same.
		again := FromStatus(ToStatus(back))
		if !errors.Is(again, c) || again.Error() != orig.Error() {
			t.Fatalf("relayed %v came back as %v", c, again)
		}
	}
	if !errors.Is(FromStatus(ToStatus(provider.ErrKeyRevoked)), syscall.EKEYREVOKED) {
		t.Fatal("EKEYREVOKED does not reach syscall.EKEYREVOKED")
	}
}

// sharesCode reports the two documented pairs of codes on one gRPC code:
// EMSGSIZE and EDQUOT, EKEYREVOKED and EKEYEXPIRED, told apart by the
// reason.
func sharesCode(a, b provider.Code) bool {
	pair := func(x, y provider.Code) bool { return a == x && b == y || a == y && b == x }
	return pair(provider.EMSGSIZE, provider.EDQUOT) || pair(provider.EKEYREVOKED, provider.EKEYEXPIRED)
}

// EKEYEXPIRED and EKEYREVOKED share FailedPrecondition: the reason keeps
// them apart both ways (and across a second boundary), EKEYEXPIRED is
// errno EKEYEXPIRED, and a FailedPrecondition without a reason is
// EKEYREVOKED (preferred; not whichever a map iteration met first).
func TestFailedPreconditionPair(t *testing.T) {
	for _, c := range []provider.Code{provider.EKEYREVOKED, provider.EKEYEXPIRED} {
		if g := GRPCCode(c); g != codes.FailedPrecondition {
			t.Fatalf("%v maps to %v, want FailedPrecondition", c, g)
		}
		back := FromStatus(ToStatus(provider.Errorf(c, "import token expired")))
		if got, _ := provider.CodeOf(back); got != c {
			t.Fatalf("%v came back as %v", c, got)
		}
		if got, _ := provider.CodeOf(FromStatus(ToStatus(back))); got != c {
			t.Fatalf("%v relayed came back as %v", c, got)
		}
	}
	if err := FromStatus(ToStatus(provider.ErrExpired)); !errors.Is(err, syscall.EKEYEXPIRED) || errors.Is(err, syscall.EKEYREVOKED) {
		t.Fatalf("EKEYEXPIRED came back as %v: want errno EKEYEXPIRED only", err)
	}
	if got, _ := provider.CodeOf(FromStatus(status.Error(codes.FailedPrecondition, "x"))); got != provider.EKEYREVOKED {
		t.Fatalf("reasonless FailedPrecondition became %v, want EKEYREVOKED", got)
	}
}

// EDQUOT and EMSGSIZE share ResourceExhausted: the reason keeps them apart
// both ways, and a status without a reason (a transport's message-size
// refusal) is EMSGSIZE.
func TestResourceExhaustedPair(t *testing.T) {
	for _, c := range []provider.Code{provider.EMSGSIZE, provider.EDQUOT} {
		if g := GRPCCode(c); g != codes.ResourceExhausted {
			t.Fatalf("%v maps to %v, want ResourceExhausted", c, g)
		}
		back := FromStatus(ToStatus(provider.Errorf(c, "over")))
		if got, _ := provider.CodeOf(back); got != c {
			t.Fatalf("%v came back as %v", c, got)
		}
	}
	if !errors.Is(FromStatus(ToStatus(provider.ErrQuota)), syscall.EDQUOT) {
		t.Fatal("EDQUOT does not reach syscall.EDQUOT")
	}
	if got, _ := provider.CodeOf(FromStatus(status.Error(codes.ResourceExhausted, "grpc: received message larger than max"))); got != provider.EMSGSIZE {
		t.Fatalf("reasonless ResourceExhausted became %v, want EMSGSIZE", got)
	}
}

func TestFallbacks(t *testing.T) {
	cases := []struct {
		err  error
		want provider.Code
	}{
		{status.Error(codes.Unavailable, "gone"), provider.EUNAVAILABLE},
		{status.Error(codes.DeadlineExceeded, "slow"), provider.EUNAVAILABLE},
		{status.Error(codes.Canceled, "x"), provider.EUNAVAILABLE},
		{status.Error(codes.NotFound, "x"), provider.ENOENT},
		{status.Error(codes.Unknown, "x"), provider.EIO},
		{errors.New("not a status"), provider.EIO},
		{context.Canceled, provider.EUNAVAILABLE},
	}
	for _, c := range cases {
		if got, _ := provider.CodeOf(FromStatus(c.err)); got != c.want {
			t.Errorf("FromStatus(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if got, _ := provider.CodeOf(FromStatus(ToStatus(errors.New("plain")))); got != provider.EIO {
		t.Errorf("codeless error became %v", got)
	}
	if got, _ := provider.CodeOf(FromStatus(ToStatus(context.Canceled))); got != provider.EUNAVAILABLE {
		t.Errorf("context error became %v", got)
	}
	long := FromStatus(ToStatus(provider.Errorf(provider.EINVAL, "%s", strings.Repeat("x", 5000))))
	if len(long.Error()) > MaxMessage {
		t.Errorf("message not bounded: %d", len(long.Error()))
	}
	if ToStatus(nil) != nil || FromStatus(nil) != nil {
		t.Error("nil not preserved")
	}
}

// A message cut at MaxMessage never ends in half a UTF-8 sequence: the
// status must still marshal (the transport drops the details, and with
// them the reason, of a status whose message is not valid UTF-8).
func TestTruncationKeepsUTF8(t *testing.T) {
	msg := strings.Repeat("x", MaxMessage-1) + "é and more"
	st, _ := status.FromError(ToStatus(provider.Errorf(provider.EKEYREVOKED, "%s", msg)))
	if !utf8.ValidString(st.Message()) {
		t.Fatalf("ToStatus message ends in %q: not valid UTF-8", st.Message()[len(st.Message())-3:])
	}
	if _, err := proto.Marshal(st.Proto()); err != nil {
		t.Fatalf("status does not marshal: %v", err)
	}
	back := FromStatus(status.Error(codes.FailedPrecondition, msg))
	if !utf8.ValidString(back.Error()) {
		t.Fatalf("FromStatus message is not valid UTF-8")
	}
}

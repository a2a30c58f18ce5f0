package plugin

import (
	"context"
	"crypto"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// TestCallStreamMatchesReplies: many concurrent Sign, SignDigest and MAC
// calls over the call stream (which the plugin announces) each get their
// own output and errors keep their codes, while calls share messages.
func TestCallStreamMatchesReplies(t *testing.T) {
	t.Parallel()
	r := testRemote(t, &grpcPlugin{impl: echoFake(), stub: testStub})
	if r.calls == nil {
		t.Fatal("the plugin announces no call stream")
	}
	ctx := t.Context()
	ref := signRef(t, "fake")
	dref := ref
	dref.Algorithm = provider.ECDSAP256
	const callers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for w := range callers {
		wg.Go(func() {
			for i := range each {
				msg := fmt.Sprintf("m-%d-%d", w, i)
				var out []byte
				var err error
				switch i % 4 {
				case 0:
					out, err = r.Sign(ctx, ref, provider.Handle("h"), []byte(msg))
				case 1:
					out, err = r.MAC(ctx, macKeyRef(t), provider.Handle("h"), []byte(msg))
				case 2:
					d := make([]byte, 32)
					copy(d, msg)
					out, err = r.SignDigest(ctx, dref, provider.Handle("h"), crypto.SHA256, d)
					msg = string(d)
				case 3:
					_, err = r.Sign(ctx, ref, provider.Handle("h"), []byte("code:EKEYREVOKED"))
					if !errorIs(err, provider.EKEYREVOKED) {
						errs <- fmt.Errorf("call %s: error %v, want EKEYREVOKED", msg, err)
					}
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("call %s: %w", msg, err)
				} else if string(out) != "out:"+msg {
					errs <- fmt.Errorf("call %s: got %q", msg, out)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.calls.counts.calls.Load(); n != callers*each {
		t.Errorf("%d calls went over the stream, want %d", n, callers*each)
	}
	if r.calls.counts.sent.Load() == 0 || r.calls.counts.received.Load() == 0 {
		t.Error("no message counted on the stream")
	}
}

func errorIs(err error, c provider.Code) bool {
	code, ok := provider.CodeOf(err)
	return ok && code == c
}

// TestCallStreamServerRefusesDuplicateID: a call whose id is in flight
// already is EINVAL; an operation the plugin does not know is
// UNIMPLEMENTED (ENOTSUP for the daemon); both without ending the stream.
func TestCallStreamServerRefusesDuplicateID(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	fake := newFake(func(_ context.Context, msg []byte) ([]byte, error) {
		if string(msg) == "block" {
			<-block
		}
		return []byte("sig"), nil
	})
	r := testRemote(t, &grpcPlugin{impl: fake, stub: testStub})
	st, err := r.rpc.Calls(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ref := refToWire(signRef(t, "fake"))
	sign := func(id uint64, msg string) *providerpb.Call {
		return &providerpb.Call{Id: id, Op: &providerpb.Call_Sign{Sign: &providerpb.SignRequest{Ref: ref, Handle: []byte("h"), Message: []byte(msg)}}}
	}
	if err := st.Send(&providerpb.CallBatch{Calls: []*providerpb.Call{sign(1, "block"), sign(1, "m"), {Id: 2}}}); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]codes.Code{}
	for len(got) < 2 {
		rb, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, rep := range rb.GetReplies() {
			got[rep.GetId()] = status.Convert(replyStatus(rep.GetStatus())).Code()
		}
	}
	if got[1] != codes.InvalidArgument || got[2] != codes.Unimplemented {
		t.Errorf("replies %v, want id 1 InvalidArgument (duplicate) and id 2 Unimplemented", got)
	}
	close(block)
	rb, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if reps := rb.GetReplies(); len(reps) != 1 || reps[0].GetId() != 1 || string(reps[0].GetOutput()) != "sig" {
		t.Errorf("reply to the blocked call = %v", reps)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// TestCallStreamLargeCalls: concurrent MAC calls of the largest message
// (1 MiB) mixed with smaller ones (100 KiB) all go through: a message
// never holds more calls than the plugin's receive bound allows (a large
// call after small ones waits for the next message), and a call alone
// may be larger than a message's budget.
func TestCallStreamLargeCalls(t *testing.T) {
	t.Parallel()
	tag := make([]byte, 32)
	r := testRemote(t, &grpcPlugin{impl: newFake(func(context.Context, []byte) ([]byte, error) { return tag, nil }), stub: testStub})
	if r.calls == nil {
		t.Fatal("the plugin announces no call stream")
	}
	large, small := make([]byte, provider.MaxMACMessage), make([]byte, 100<<10)
	const callers, each = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for w := range callers {
		wg.Go(func() {
			for i := range each {
				msg := small
				if (w+i)%2 == 0 {
					msg = large
				}
				if _, err := r.MAC(t.Context(), macKeyRef(t), provider.Handle("h"), msg); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.calls.counts.calls.Load(); n != callers*each {
		t.Errorf("%d calls on the stream, want %d", n, callers*each)
	}
}

// FuzzReplyStatus: whatever bytes a plugin puts in a reply's status, the
// daemon gets an error whose code is not OK, and never a panic.
func FuzzReplyStatus(f *testing.F) {
	seeds := [][]byte{
		encodeStatus(status.Error(codes.Unimplemented, "x")),
		encodeStatus(status.Error(codes.OK, "")),
		unencodableStatus,
		{0xff},
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := replyStatus(b)
		if err == nil || status.Code(err) == codes.OK {
			t.Fatalf("replyStatus(%x) = %v, want an error that is not OK", b, err)
		}
	})
}

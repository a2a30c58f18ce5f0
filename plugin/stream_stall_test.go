package plugin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// stalledRPC opens call streams whose Send blocks until the stream ends,
// as gRPC's does when the plugin stops reading (HTTP/2 flow control), and
// whose Recv never gets a reply.
type stalledRPC struct {
	providerpb.ProviderClient
}

func (stalledRPC) Calls(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[providerpb.CallBatch, providerpb.ReplyBatch], error) {
	return stalledStream{ctx: ctx}, nil
}

type stalledStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s stalledStream) Send(*providerpb.CallBatch) error {
	<-s.ctx.Done()
	return s.ctx.Err()
}

func (s stalledStream) Recv() (*providerpb.ReplyBatch, error) {
	<-s.ctx.Done()
	return nil, s.ctx.Err()
}

// TestCallStreamStalledPluginCallsStillTimeOut: a plugin that stops reading
// the call stream (a malicious one, or one whose 1024 calls hang in a
// provider that ignores cancellation, so its Calls loop waits for a slot)
// blocks the daemon's writer in Send. Each call that times out before the
// writer took it leaves its (emptied) item in the send queue, so after
// about 2*streamMaxInFlight of them the queue is full; every later call
// must still end at its timeout (do's contract), not block for ever on
// the queue holding a slot.
func TestCallStreamStalledPluginCallsStillTimeOut(t *testing.T) {
	t.Parallel()
	cs := newCallStreams(stalledRPC{}, DefaultMaxReply, nil)
	deadline := time.Now().Add(20 * time.Second)
	for i := range 2*streamMaxInFlight + 100 {
		done := make(chan error, 1)
		go func() {
			call := &streamCall{}
			call.Op = &providerpb.Call_Mac{Mac: &providerpb.MacRequest{}}
			_, err := cs.do(t.Context(), call, time.Millisecond)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("call %d on a stalled stream succeeded", i)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("call %d with a 1 ms timeout has not returned after 2 s: blocked on the full send queue of a stalled stream", i)
		}
		if time.Now().After(deadline) {
			t.Fatal("too slow")
		}
	}
}

// TestCallStreamHungProviderCallsStillTimeOut is the same stall through
// the real plugin server and gRPC: an honest plugin whose provider hangs
// and ignores cancellation (a wedged HSM) holds its 1024 call slots, so
// its Calls loop stops reading; gRPC's flow control then blocks the
// daemon's writer in Send. Every daemon call must still end within its
// call timeout.
func TestCallStreamHungProviderCallsStillTimeOut(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	fake := newFake(func(context.Context, []byte) ([]byte, error) {
		<-hang // ignores its context
		return make([]byte, 32), nil
	})
	cfg := testStub
	cfg.callTimeout = 20 * time.Millisecond
	r := testRemote(t, &grpcPlugin{impl: fake, stub: cfg})
	if r.calls == nil {
		t.Fatal("the plugin announces no call stream")
	}
	r.cfg.callTimeout = cfg.callTimeout
	msg := make([]byte, 64<<10)
	ref := macKeyRef(t)
	const callers, each = 64, 80
	errs := make(chan error, callers)
	for range callers {
		go func() {
			for range each {
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = r.MAC(t.Context(), ref, provider.Handle("h"), msg)
				}()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					errs <- fmt.Errorf("a MAC with a %s call timeout has not returned after 5 s", cfg.callTimeout)
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestCallStreamStalledQueueRetainsNoGivenUpCalls: calls that gave up on
// a stalled stream (the plugin stopped reading; the writer is blocked in
// Send) have returned, and their requests' memory was released from the
// daemon's in-flight budget (docs/security.md, 96 MiB for all uids); the
// stream must not keep their messages queued. Each queue slot holds a
// whole call, so 2048 given-up 1 MiB MACs would keep 2 GiB alive.
func TestCallStreamStalledQueueRetainsNoGivenUpCalls(t *testing.T) {
	t.Parallel()
	cs := newCallStreams(stalledRPC{}, DefaultMaxReply, nil)
	const calls = 64
	for range calls {
		msg := make([]byte, provider.MaxMACMessage)
		call := &streamCall{}
		call.Op = &providerpb.Call_Mac{Mac: &providerpb.MacRequest{Message: msg}}
		if _, err := cs.do(t.Context(), call, time.Millisecond); err == nil {
			t.Fatal("a call on a stalled stream succeeded")
		}
	}
	cs.mu.Lock()
	s := cs.cur
	cs.mu.Unlock()
	retained := 0
	for range len(s.sendq) {
		o := <-s.sendq
		if o.call != nil {
			retained += len(o.call.GetMac().GetMessage())
		}
	}
	if retained > 2*streamBatchBytes {
		t.Errorf("after %d calls of 1 MiB gave up and returned, the stalled stream's send queue still holds %d MiB of their messages", calls, retained>>20)
	}
}

package plugin

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// The call stream (Provider.Calls): many Sign, SignDigest and Mac calls
// over one long-lived bidirectional gRPC stream, multiplexed by id. A
// unary call costs an HTTP/2 stream (headers both ways, trailers, a
// server goroutine, TLS records of its own); on the stream, the calls
// that are waiting when a writer gets to send go out together in one
// message, and so do the replies that are ready together. Each side keeps
// the unary path's checks, bounds and error statuses.
const (
	// streamMaxInFlight bounds the calls in flight on one stream, on each
	// side: a daemon caller past it waits for a slot (or its context); a
	// plugin past it stops reading until a call finishes.
	streamMaxInFlight = 1024
	// streamBatchBytes bounds the encoded size of the calls (or replies)
	// sent together; a single larger one (within the receive bounds) is
	// sent alone.
	streamBatchBytes = 256 << 10
	// maxYields bounds how many times a writer lets other goroutines run
	// to gather more calls (replies) into the message it is about to
	// send.
	maxYields = 8
	// itemOverhead is more than the framing one item adds to its batch
	// (field tag and length).
	itemOverhead = 16
)

// Errors of the call stream that the unary path reports the same way.
var (
	errStreamEnded = status.Error(codes.Unavailable, "the plugin ended the call stream")
	// errStreamStalled: the send queue stayed full, so the plugin does not
	// read the stream (the writer is blocked in Send).
	errStreamStalled = status.Error(codes.Unavailable, "the plugin does not read the call stream")
)

// callStreams is the daemon side of the call stream of one connection: a
// stream opened on first use and again after one failed.
type callStreams struct {
	rpc      providerpb.ProviderClient
	maxReply int
	opts     []grpc.CallOption
	slots    chan struct{} // a token per call in flight, across streams

	// disabled: the plugin announced the stream but does not serve it.
	disabled atomic.Bool

	mu  sync.Mutex
	cur *callStream // nil before the first call and after a failure

	counts streamCounts
}

// streamCounts counts the messages of a connection's call streams and
// the calls and replies they carried (the benchmarks report calls per
// message).
type streamCounts struct {
	sent, calls, received, replies atomic.Int64
}

func newCallStreams(rpc providerpb.ProviderClient, maxReply int, opts []grpc.CallOption) *callStreams {
	return &callStreams{rpc: rpc, maxReply: maxReply, opts: opts, slots: make(chan struct{}, streamMaxInFlight)}
}

// callStream is one open call stream.
type callStream struct {
	counts *streamCounts
	stream providerpb.Provider_CallsClient
	cancel context.CancelFunc
	sendq  chan outgoing // calls and cancellations for the writer

	mu      sync.Mutex
	pending map[uint64]chan *providerpb.Reply
	next    uint64
	dead    chan struct{} // closed when the stream failed
	err     error         // why; set before dead is closed
}

// outgoing is a call to send, or (call nil) the cancellation of id.
type outgoing struct {
	call *streamCall
	id   uint64
}

// streamCall is a call for the stream. Whoever claims it first owns it:
// the writer, to send it, or its caller, giving up before the writer got
// to it — the caller then drops its request (Op), so that a queue the
// writer does not drain (a plugin that stopped reading) holds no given-up
// call's message, and nothing is sent or cancelled for it.
type streamCall struct {
	providerpb.Call
	claimed atomic.Bool
}

// claim reports whether the caller (or the writer) now owns c.
func (c *streamCall) claim() bool { return c.claimed.CompareAndSwap(false, true) }

// get returns the open stream, opening one if there is none.
func (cs *callStreams) get() (*callStream, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if s := cs.cur; s != nil {
		select {
		case <-s.dead:
		default:
			return s, nil
		}
	}
	// The stream outlives every call: it ends when the connection does,
	// or when it fails.
	ctx, cancel := context.WithCancel(context.Background())
	st, err := cs.rpc.Calls(ctx, cs.opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &callStream{
		counts:  &cs.counts,
		stream:  st,
		cancel:  cancel,
		sendq:   make(chan outgoing, 2*streamMaxInFlight),
		pending: map[uint64]chan *providerpb.Reply{},
		dead:    make(chan struct{}),
	}
	cs.cur = s
	go s.write(uint32(cs.maxReply))
	go s.read()
	return s, nil
}

// replyChans recycles the one-reply channels of calls, and timers the
// timers that bound them.
var (
	replyChans = sync.Pool{New: func() any { return make(chan *providerpb.Reply, 1) }}
	timers     = sync.Pool{New: func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}}
)

// errNoStream says that the plugin announced the call stream but does not
// serve it (the stream failed UNIMPLEMENTED before any call ran): the call
// goes unary, as every later one.
var errNoStream = errors.New("the plugin does not serve the call stream")

// do sends call (its id and timeout are set here) and waits for its
// output, the end of ctx or of timeout, or the stream's failure. Its
// errors are gRPC statuses, as a unary call's: DeadlineExceeded or
// Canceled, the stream's error, or the status the reply carries; or
// errNoStream.
func (cs *callStreams) do(ctx context.Context, call *streamCall, timeout time.Duration) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		// As gRPC: a call with a context already done is not sent.
		return nil, status.FromContextError(err).Err()
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		return nil, status.Error(codes.DeadlineExceeded, "call deadline passed before the call was sent")
	}
	t := timers.Get().(*time.Timer)
	t.Reset(timeout)
	defer func() {
		t.Stop()
		timers.Put(t)
	}()
	select {
	case cs.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		return nil, status.Error(codes.DeadlineExceeded, "no call stream slot within the call timeout")
	}
	defer func() { <-cs.slots }()
	s, err := cs.get()
	if err != nil {
		return nil, err
	}
	ch := replyChans.Get().(chan *providerpb.Reply)
	s.mu.Lock()
	select {
	case <-s.dead:
		s.mu.Unlock()
		replyChans.Put(ch)
		return nil, cs.failed(s.err)
	default:
	}
	s.next++
	id := s.next
	call.Id = id
	call.TimeoutNs = int64(timeout)
	s.pending[id] = ch
	s.mu.Unlock()
	// The queue has room for a call and a cancellation per slot, but the
	// items of calls that gave up (their requests dropped: streamCall)
	// stay in it while the writer is blocked in Send (a plugin that
	// stopped reading: HTTP/2 flow control), so a call waits for room no
	// longer than its context and timeout; a queue still full at its
	// timeout fails the stream.
	var gaveUp error
	select {
	case s.sendq <- outgoing{call: call}:
	case <-ctx.Done():
		gaveUp = status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		gaveUp = status.Error(codes.DeadlineExceeded, "call timeout")
		if len(s.sendq) == cap(s.sendq) {
			s.fail(errStreamStalled)
		}
	case <-s.dead:
		return nil, cs.failed(s.err)
	}
	if gaveUp == nil {
		select {
		case rep := <-ch:
			replyChans.Put(ch)
			if b := rep.GetStatus(); len(b) > 0 {
				return nil, replyStatus(b)
			}
			return rep.GetOutput(), nil
		case <-ctx.Done():
			gaveUp = status.FromContextError(ctx.Err()).Err()
		case <-t.C:
			gaveUp = status.Error(codes.DeadlineExceeded, "call timeout")
		case <-s.dead:
			return nil, cs.failed(s.err)
		}
	}
	// Given up. A call the writer has not claimed was never sent: drop
	// its request from the queue's item, and cancel nothing.
	sent := !call.claim()
	if !sent {
		call.Op = nil
	}
	s.mu.Lock()
	_, waiting := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if waiting {
		// The reader will not send on ch: it can be reused.
		replyChans.Put(ch)
	}
	if waiting && sent {
		select {
		case s.sendq <- outgoing{id: id}:
		default:
			// Full: the writer is stuck behind calls that gave up.
			s.fail(errStreamStalled)
		}
	}
	return nil, gaveUp
}

// failed returns the error of a call on a stream that failed with err:
// err, or errNoStream (and no stream from now on) when the plugin does
// not serve the stream: the calls on it never ran.
func (cs *callStreams) failed(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unimplemented && !hasReason(st) {
		cs.disabled.Store(true)
		return errNoStream
	}
	return err
}

// replyStatus decodes a reply's error status. A status that does not
// decode, or says OK, is the plugin's fault (Internal, no reason: EIO).
func replyStatus(b []byte) error {
	var st spb.Status
	if err := proto.Unmarshal(b, &st); err != nil {
		return status.Error(codes.Internal, "the plugin replied with an undecodable status")
	}
	if st.GetCode() == int32(codes.OK) {
		return status.Error(codes.Internal, "the plugin replied with an error status of code OK")
	}
	return status.ErrorProto(&st)
}

// write sends what the queue holds, as many calls together as are
// waiting (up to streamBatchBytes), until the stream fails.
func (s *callStream) write(maxReply uint32) {
	batch := &providerpb.CallBatch{MaxReply: maxReply}
	var carry *outgoing // taken from the queue, too large for the last batch
	for {
		var o outgoing
		if carry != nil {
			o, carry = *carry, nil
		} else {
			select {
			case o = <-s.sendq:
			case <-s.dead:
				return
			}
			if o.call != nil && !o.call.claim() {
				continue // its caller gave up before it was sent
			}
		}
		size := 0
		itemSize := func(o outgoing) int {
			if o.call == nil {
				return 10
			}
			return proto.Size(&o.call.Call) + itemOverhead
		}
		add := func(o outgoing, n int) {
			if o.call == nil {
				batch.Cancel = append(batch.Cancel, o.id)
			} else {
				batch.Calls = append(batch.Calls, &o.call.Call)
			}
			size += n
		}
		add(o, itemSize(o))
		// drain adds what the queue holds while it fits in
		// streamBatchBytes (a call alone may be larger: it is within the
		// plugin's receive bound, a batch of it and others might not be)
		// and reports whether it added anything.
		drain := func() bool {
			added := false
			for carry == nil {
				select {
				case o := <-s.sendq:
					if o.call != nil && !o.call.claim() {
						continue // its caller gave up before it was sent
					}
					n := itemSize(o)
					if size+n > streamBatchBytes {
						carry = &o
						return added
					}
					add(o, n)
					added = true
				default:
					return added
				}
			}
			return added
		}
		// Callers woken by the same reply batch are about to queue their
		// next calls: let them run first, so their calls share this
		// message, for as long as that brings more.
		for range maxYields {
			runtime.Gosched()
			if !drain() {
				break
			}
		}
		s.counts.sent.Add(1)
		s.counts.calls.Add(int64(len(batch.Calls)))
		err := s.stream.Send(batch)
		clear(batch.Calls)
		batch.Calls, batch.Cancel, batch.MaxReply = batch.Calls[:0], batch.Cancel[:0], 0
		if err != nil {
			// io.EOF: the stream failed; read sees why.
			if !errors.Is(err, io.EOF) {
				s.fail(err)
			}
			return
		}
	}
}

// read hands each reply to its call until the stream fails. A reply for
// no call in flight (a late one, after a cancellation) is dropped.
func (s *callStream) read() {
	for {
		rb, err := s.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errStreamEnded
			}
			s.fail(err)
			return
		}
		s.counts.received.Add(1)
		s.counts.replies.Add(int64(len(rb.GetReplies())))
		s.mu.Lock()
		for _, rep := range rb.GetReplies() {
			if ch, ok := s.pending[rep.GetId()]; ok {
				delete(s.pending, rep.GetId())
				ch <- rep
			}
		}
		s.mu.Unlock()
	}
}

// fail ends the stream with err: every call in flight on it fails with
// err, and the next call opens another stream.
func (s *callStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.dead:
		return
	default:
	}
	s.err = err
	clear(s.pending)
	close(s.dead)
	s.cancel()
}

// Calls implements the plugin side of the call stream: each call runs as
// the unary method would run it (its checks, its panic recovery, its
// status), with a context cancelled by the daemon's cancellation of it or
// the stream's end.
func (s *server) Calls(stream providerpb.Provider_CallsServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ss := &serverStream{
		srv:      s,
		ctx:      ctx,
		slots:    make(chan struct{}, streamMaxInFlight),
		replies:  make(chan *providerpb.Reply, streamMaxInFlight),
		jobs:     make(chan job),
		cancels:  map[uint64]*callCtx{},
		maxReply: DefaultMaxReply,
	}
	for range streamWorkers {
		go ss.work()
	}
	sendErr := make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendErr <- ss.send(stream)
	}()
	// Send must not run once the handler has returned; the calls in
	// flight end with the stream.
	defer func() {
		cancel()
		<-sent
		ss.mu.Lock()
		for _, c := range ss.cancels {
			c.cancel(context.Canceled)
		}
		ss.mu.Unlock()
	}()
	first := true
	for {
		batch, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if first {
			first = false
			if m := int(batch.GetMaxReply()); m > 0 && m < ss.maxReply {
				ss.maxReply = m
			}
		}
		ss.mu.Lock()
		for _, id := range batch.GetCancel() {
			if c, ok := ss.cancels[id]; ok {
				// The daemon gave up: its caller cancelled, or the
				// deadline passed.
				err := context.Canceled
				if d, ok := c.Deadline(); ok && !time.Now().Before(d) {
					err = context.DeadlineExceeded
				}
				c.cancel(err)
			}
		}
		ss.mu.Unlock()
		for _, call := range batch.GetCalls() {
			select {
			case ss.slots <- struct{}{}:
			case err := <-sendErr:
				return err
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
			ss.start(call)
		}
	}
}

// start runs call on a worker (or a goroutine of its own when every
// worker is busy: calls that take long, or hang, as a unary call would
// get), with a context the daemon's cancellation of it cancels. A call
// whose id is in flight already is refused.
func (ss *serverStream) start(call *providerpb.Call) {
	ctx := newCallCtx(ss.ctx, call.GetTimeoutNs())
	ss.mu.Lock()
	_, dup := ss.cancels[call.GetId()]
	if !dup {
		ss.cancels[call.GetId()] = ctx
	}
	ss.mu.Unlock()
	if dup {
		ss.reply(&providerpb.Reply{Id: call.GetId(), Status: encodeStatus(rpcerr.ToStatus(
			provider.Errorf(provider.EINVAL, "call id %d is already in flight", call.GetId())))})
		return
	}
	j := job{ctx: ctx, call: call}
	select {
	case ss.jobs <- j:
	default:
		go ss.run(j)
	}
}

// callCtx is the context of one call on the stream: the stream's values,
// the deadline the daemon sent, cancelled by the daemon's cancellation of
// the call or, for every call in flight, by the stream's end (Calls
// cancels them all). It costs a channel, where context.WithTimeout costs
// a timer and a registration with the stream's context; the daemon
// enforces the deadline itself and sends the cancellation when it passes.
type callCtx struct {
	context.Context // the stream's: its values
	deadline        time.Time
	done            chan struct{}
	once            sync.Once
	err             atomic.Pointer[error]
}

func newCallCtx(stream context.Context, timeoutNs int64) *callCtx {
	c := &callCtx{Context: stream, done: make(chan struct{})}
	if timeoutNs > 0 {
		c.deadline = time.Now().Add(time.Duration(timeoutNs))
	}
	if d, ok := stream.Deadline(); ok && (c.deadline.IsZero() || d.Before(c.deadline)) {
		c.deadline = d
	}
	return c
}

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }
func (c *callCtx) Done() <-chan struct{}       { return c.done }

func (c *callCtx) Err() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

// cancel ends the call's context with err (context.Canceled or
// context.DeadlineExceeded); later calls do nothing.
func (c *callCtx) cancel(err error) {
	c.once.Do(func() {
		c.err.Store(&err)
		close(c.done)
	})
}

// serverStream is the plugin side of one call stream.
type serverStream struct {
	srv      *server
	ctx      context.Context
	slots    chan struct{}          // a token per call in flight
	replies  chan *providerpb.Reply // finished calls, for send
	jobs     chan job
	maxReply int // the largest reply batch the daemon accepts

	mu      sync.Mutex
	cancels map[uint64]*callCtx // calls in flight
}

type job struct {
	ctx  *callCtx
	call *providerpb.Call
}

// work runs calls until the stream ends. A long-lived worker's stack has
// already grown to what signing needs.
func (ss *serverStream) work() {
	for {
		select {
		case j := <-ss.jobs:
			ss.run(j)
		case <-ss.ctx.Done():
			return
		}
	}
}

// run runs one call and queues its reply.
func (ss *serverStream) run(j job) {
	id := j.call.GetId()
	rep := &providerpb.Reply{Id: id}
	s := ss.srv
	var err error
	switch op := j.call.GetOp().(type) {
	case *providerpb.Call_Sign:
		var resp *providerpb.SignResponse
		if resp, err = s.Sign(j.ctx, op.Sign); err == nil {
			rep.Output = resp.GetSignature()
		}
	case *providerpb.Call_SignDigest:
		var resp *providerpb.SignResponse
		if resp, err = s.SignDigest(j.ctx, op.SignDigest); err == nil {
			rep.Output = resp.GetSignature()
		}
	case *providerpb.Call_Mac:
		var resp *providerpb.MacResponse
		if resp, err = s.Mac(j.ctx, op.Mac); err == nil {
			rep.Output = resp.GetTag()
		}
	default:
		// An operation of a later protocol: what gRPC answers for an
		// unknown method (the daemon reports ENOTSUP).
		err = status.Error(codes.Unimplemented, "unknown call on the call stream")
	}
	if err != nil {
		rep.Status = encodeStatus(err)
	}
	j.ctx.cancel(context.Canceled)
	ss.mu.Lock()
	delete(ss.cancels, id)
	ss.mu.Unlock()
	ss.reply(rep)
}

// reply queues rep (checked against the daemon's bound: a reply too large
// to send becomes the status a unary call over the bound gets) and gives
// back the call's slot.
func (ss *serverStream) reply(rep *providerpb.Reply) {
	if proto.Size(rep)+itemOverhead > ss.maxReply {
		rep.Output, rep.Status = nil, encodeStatus(status.Errorf(codes.ResourceExhausted, "reply larger than the daemon's bound of %d bytes", ss.maxReply))
	}
	// Never blocks: at most a reply per call in flight.
	select {
	case ss.replies <- rep:
	case <-ss.ctx.Done():
	}
	<-ss.slots
}

// send sends the replies that are ready together, until the stream ends.
func (ss *serverStream) send(stream providerpb.Provider_CallsServer) error {
	batch := &providerpb.ReplyBatch{}
	var carry *providerpb.Reply
	for {
		rep := carry
		carry = nil
		if rep == nil {
			select {
			case rep = <-ss.replies:
			case <-ss.ctx.Done():
				return nil
			}
		}
		budget := min(streamBatchBytes, ss.maxReply)
		size := proto.Size(rep) + itemOverhead
		batch.Replies = append(batch.Replies, rep)
		drain := func() {
			for size < budget && carry == nil {
				select {
				case rep := <-ss.replies:
					n := proto.Size(rep) + itemOverhead
					if size+n > budget {
						carry = rep
						return
					}
					batch.Replies = append(batch.Replies, rep)
					size += n
				default:
					return
				}
			}
		}
		drain()
		// Calls still running finish soon (they are signatures): let
		// them, so their replies share this message. len(slots) counts
		// the calls whose reply is not queued yet.
		for i := 0; i < maxYields && len(ss.slots) > 0 && size < budget && carry == nil; i++ {
			runtime.Gosched()
			drain()
		}
		err := stream.Send(batch)
		clear(batch.Replies)
		batch.Replies = batch.Replies[:0]
		if err != nil {
			return err
		}
	}
}

// unencodableStatus is the encoded status that replaces one that does not
// encode: Internal, which the daemon reports as EIO.
var unencodableStatus = []byte{0x08, byte(codes.Internal)}

// encodeStatus is a reply's error: err's status, encoded.
func encodeStatus(err error) []byte {
	b, merr := proto.Marshal(status.Convert(err).Proto())
	if merr != nil {
		// A status always encodes (rpcerr keeps its message valid
		// UTF-8); should one not, the daemon still gets an error.
		b = unencodableStatus
	}
	return b
}

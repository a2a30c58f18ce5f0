package server

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// rpcCall is the per-request state the stats handler attaches to every
// call's context: the operation, its start, and whether the interceptor
// took charge of the audit record. A call the interceptor never sees
// (refused by the transport: oversized message, unknown method) gets its
// record from the stats handler when it ends.
type rpcCall struct {
	op      string
	start   time.Time
	handled atomic.Bool
}

type callKey struct{}

func callFrom(ctx context.Context) *rpcCall {
	c, _ := ctx.Value(callKey{}).(*rpcCall)
	return c
}

type callerKey struct{}

// callerOf returns the caller the interceptor established, or nil when a
// handler runs without the interceptor (then every handler refuses).
func callerOf(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// coreCaller returns the core's view of c.
func (c *Caller) coreCaller() core.Caller {
	return core.Caller{App: c.App, Operator: c.Operator, UID: int64(c.UID), PID: int64(c.PID)}
}

// caller resolves the identity of the peer of ctx. Without kernel
// credentials (which the server's transport credentials always provide)
// the caller is denied.
func (s *Server) caller(ctx context.Context) Caller {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(PeerInfo); ok {
			return s.live.Load().identity.Resolve(info)
		}
	}
	return Caller{UID: noID, GID: noID, PID: -1, Denied: true}
}

// noID marks a uid or gid the transport could not establish.
const noID = ^uint32(0)

func auditCaller(c Caller) audit.Caller {
	ac := audit.Caller{UID: int64(c.UID), GID: int64(c.GID), PID: int64(c.PID), App: c.App, Operator: c.Operator}
	if c.UID == noID {
		ac.UID, ac.GID = -1, -1
	}
	return ac
}

var insecureMD = metadata.Pairs(InsecureHeader, "true")

// intercept is the unary interceptor every RPC passes through: it
// establishes the caller from the kernel credentials, refuses denied
// callers and malformed messages, runs the handler with a request-scoped
// audit summary, and writes exactly one audit record. If that record cannot
// be written, the call fails with EIO and returns no output.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c := callFrom(ctx)
	if c == nil {
		c = &rpcCall{op: OpName(info.FullMethod), start: time.Now()}
	}
	c.handled.Store(true)
	if s.insecure {
		if err := grpc.SetHeader(ctx, insecureMD); err != nil {
			s.log.Warn("could not set the insecure header", "op", c.op, "err", err)
		}
	}
	caller := s.caller(ctx)
	sum := &summary{}
	sum.commitAhead = func(ctx context.Context) (audit.Record, error) {
		return s.appendRecord(ctx, c.op, caller, sum, "ok", "")
	}
	var (
		resp any
		err  error
	)
	bad := s.codec.malformed(req)
	switch {
	case caller.Denied:
		err = provider.Errorf(provider.EPERM, "uid %d is not mapped to an app", uint64(caller.UID))
	case bad != nil:
		err = bad
	default:
		resp, err = handler(context.WithValue(withSummary(ctx, sum), callerKey{}, &caller), req)
	}
	result := codeName(err)
	if aerr := s.finishRecord(ctx, c.op, caller, sum, result); aerr != nil {
		scrub(resp)
		resp = nil
		err = provider.Errorf(provider.EIO, "audit log unavailable; request refused")
		result = provider.EIO.String()
	}
	s.metrics.observe(c.op, result, time.Since(c.start))
	s.log.Debug("request", "op", c.op, "uid", caller.UID, "app", caller.App, "result", result)
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return resp, nil
}

// finishRecord writes the request's audit record once its result is
// known. A request that changed state wrote its record ahead (result "ok")
// before the change; if it then failed after all (or, in a batch, items
// failed or more keys changed), a second record with the real result and
// counts, marked as the outcome of the first, completes it.
func (s *Server) finishRecord(ctx context.Context, op string, caller Caller, sum *summary, result string) error {
	if r, ok := sum.writtenAhead(); ok {
		if result == "ok" && sum.settled(r) {
			return nil
		}
		_, err := s.appendRecord(ctx, op, caller, sum, result, "outcome of seq "+strconv.FormatUint(r.Seq, 10))
		return err
	}
	_, err := s.appendRecord(ctx, op, caller, sum, result, "")
	return err
}

// appendRecord builds a request's audit record from its summary and writes
// it; detail, when given, replaces the summary's.
func (s *Server) appendRecord(ctx context.Context, op string, caller Caller, sum *summary, result, detail string) (audit.Record, error) {
	key, v, sumDetail, multi := sum.snapshot()
	items, failed, note := sum.batch()
	switch {
	case detail != "":
	case note != "":
		detail = note
	case multi && sumDetail == "":
		detail = "several keys"
	default:
		detail = sumDetail
	}
	rec := audit.Record{
		Time:    s.clock.Now(),
		Caller:  auditCaller(caller),
		Op:      op,
		Key:     key,
		Version: uint32(v),
		Result:  result,
		Items:   items,
		Failed:  failed,
		Detail:  detail,
	}
	// A cancelled request is still audited.
	r, err := s.audit.Append(context.WithoutCancel(ctx), rec)
	if err != nil {
		s.log.Error("audit record not written; request refused", "op", op, "uid", caller.UID, "err", err)
		return audit.Record{}, err
	}
	return r, nil
}

// codeName is "ok" for nil, else the name of err's code (EIO for an error
// without one, EUNAVAILABLE for a context error), as rpcerr.ToStatus
// reports it.
func codeName(err error) string {
	if err == nil {
		return "ok"
	}
	return codeOf(err).String()
}

func codeOf(err error) provider.Code {
	if c, ok := provider.CodeOf(err); ok {
		return c
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return provider.EUNAVAILABLE
	}
	return provider.EIO
}

// scrub clears plaintext in a response that will not be sent.
func scrub(resp any) {
	switch r := resp.(type) {
	case *keystorev1.UnsealResponse:
		clear(r.GetPlaintext())
	case *keystorev1.UnsealBatchResponse:
		for _, item := range r.GetResults() {
			clear(item.GetResponse().GetPlaintext())
		}
	}
}

// unknown answers calls to methods keystore.v1 does not have (ENOTSUP);
// the stats handler writes their audit record.
func (s *Server) unknown(any, grpc.ServerStream) error {
	return rpcerr.ToStatus(provider.Errorf(provider.ENOTSUP, "unknown method"))
}

// statsHandler tags every call with its rpcCall and, when a call ends
// without having reached the interceptor, writes its audit record.
type statsHandler struct{ s *Server }

func (h *statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, callKey{}, &rpcCall{op: OpName(info.FullMethodName), start: time.Now()})
}

func (h *statsHandler) HandleRPC(ctx context.Context, st stats.RPCStats) {
	end, ok := st.(*stats.End)
	if !ok {
		return
	}
	c := callFrom(ctx)
	if c == nil || c.handled.Swap(true) {
		return
	}
	caller := h.s.caller(ctx)
	result := "ok"
	if end.Error != nil {
		result = codeName(rpcerr.FromStatus(end.Error))
	}
	if _, err := h.s.appendRecord(ctx, c.op, caller, &summary{}, result, ""); err != nil {
		result = provider.EIO.String()
	}
	h.s.metrics.observe(c.op, result, time.Since(c.start))
}

func (h *statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (h *statsHandler) HandleConn(context.Context, stats.ConnStats) {}

// requestCodec is the proto codec, except that a request that does not
// decode is not refused by the transport (which would answer Internal
// before any interceptor runs): it is reset, remembered as malformed, and
// the interceptor refuses it with EINVAL and audits it like any request.
// A batch request's items are counted on the wire before it is decoded: a
// batch of more than MaxBatchItems is refused the same way (EINVAL)
// without building its items, so that a request within the transport's
// byte limit cannot make the daemon allocate millions of empty items.
type requestCodec struct {
	bad *sync.Map // request message pointer → the error that refuses it
}

// protoCodec is gRPC's proto codec (package grpc registers it).
var protoCodec = encoding.GetCodecV2(protoenc.Name)

func (requestCodec) Name() string { return protoenc.Name }

func (requestCodec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

var errMalformed = provider.Errorf(provider.EINVAL, "malformed request message")

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	var err error
	switch v.(type) {
	case *keystorev1.SignBatchRequest, *keystorev1.SealBatchRequest, *keystorev1.UnsealBatchRequest:
		err = c.unmarshalBatch(data, v.(proto.Message))
	default:
		err = protoCodec.Unmarshal(data, v)
	}
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	proto.Reset(m)
	if code, typed := provider.CodeOf(err); !typed || code != provider.EINVAL {
		err = errMalformed
	}
	c.bad.Store(v, err)
	return nil
}

// unmarshalBatch decodes a batch request after counting its items (field
// 1) on the wire.
func (requestCodec) unmarshalBatch(data mem.BufferSlice, m proto.Message) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if n := countItems(b); n > MaxBatchItems {
		return checkBatch(n, m)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return errMalformed
	}
	return nil
}

// countItems counts the top-level length-delimited fields numbered 1 (a
// batch's items) of a wire-format message without decoding them; it
// returns -1 for malformed wire data (which the decoder then refuses).
func countItems(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return -1
		}
		b = b[l:]
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return -1
		}
		b = b[l:]
		if num == 1 && typ == protowire.BytesType {
			n++
		}
	}
	return n
}

// malformed returns (once) the error that refuses a request that failed
// to decode (or was refused while decoding), or nil.
func (c requestCodec) malformed(req any) error {
	v, bad := c.bad.LoadAndDelete(req)
	if !bad {
		return nil
	}
	if err, ok := v.(error); ok {
		return err
	}
	return errMalformed
}

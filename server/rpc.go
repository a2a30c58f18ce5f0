package server

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

type callerKey struct{}

// callerOf returns the caller serve admitted, or nil when a handler runs
// without serve (then every handler refuses).
func callerOf(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// tenantOf is the fair scheduler's tenant of a call: the app serve
// admitted (from the kernel's peer credentials, never from the request),
// or the shared anonymous queue ("") for provider calls made outside a
// request.
func tenantOf(ctx context.Context) string {
	if c := callerOf(ctx); c != nil {
		return c.App
	}
	return ""
}

// coreCaller returns the core's view of c.
func (c *Caller) coreCaller() core.Caller {
	return core.Caller{App: c.App, Operator: c.Operator, UID: int64(c.UID), PID: int64(c.PID)}
}

// caller resolves the identity of the peer of ctx. Without kernel
// credentials (which the server's transport credentials always provide)
// the caller is denied.
func (s *Server) caller(ctx context.Context) Caller {
	if info, ok := peerInfo(ctx); ok {
		return s.live.Load().identity.Resolve(info)
	}
	return Caller{UID: noID, GID: noID, PID: -1, Denied: true}
}

// peerInfo returns the kernel credentials of ctx's connection.
func peerInfo(ctx context.Context) (PeerInfo, bool) {
	if p, ok := peer.FromContext(ctx); ok {
		info, ok := p.AuthInfo.(PeerInfo)
		return info, ok
	}
	return PeerInfo{}, false
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

// wrapService returns desc with every method's handler running through
// serve.
func (s *Server) wrapService(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, md := range desc.Methods {
		op, h := OpName("/"+desc.ServiceName+"/"+md.MethodName), md.Handler
		d.Methods[i] = grpc.MethodDesc{MethodName: md.MethodName,
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				return s.serve(ctx, op, srv, dec, h, icpt)
			}}
	}
	return &d
}

// serve runs one call of a keystore.v1 method: h is the generated handler,
// dec reads the request from the transport. It refuses denied callers and
// malformed messages, runs the handler with the request's state in its
// context, and writes exactly one audit record (call.finish). If that
// record cannot be written, the call fails with EIO and returns no output.
//
// The request is decoded by requestCodec into a decodeInto, so that a
// message that does not decode reaches this function as an error of
// ours (EINVAL, audited like any refusal) rather than as the transport's
// Internal status; a transport error (a message over the size limit, a
// cancelled stream) ends the call with the transport's status.
//
// icpt, when not nil, is a unary interceptor installed in front of the
// handler (by a registrar wrapping the services, e.g. client/clienttest);
// it runs inside the daemon's checks and audit, around the handler.
func (s *Server) serve(ctx context.Context, op string, srv any, dec func(any) error, h grpc.MethodHandler, icpt grpc.UnaryServerInterceptor) (any, error) {
	c := callFrom(ctx)
	if c == nil {
		c = s.newCall(op, s.caller(ctx))
		ctx = withCall(ctx, c)
	}
	if !c.enter() {
		return nil, errAbandoned
	}
	if s.insecure {
		if err := grpc.SetHeader(ctx, insecureMD); err != nil {
			s.log.Warn("could not set the insecure header", "op", op, "err", err)
		}
	}
	var bad error
	decode := func(m any) error {
		msg, ok := m.(proto.Message)
		if !ok {
			return dec(m)
		}
		d := &decodeInto{m: msg}
		if err := dec(d); err != nil {
			return err
		}
		bad = d.err
		return nil
	}
	ours := false // err is the handler's (a provider error), not the transport's status
	resp, err := h(srv, ctx, decode, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ours = true
		switch {
		case c.caller.Denied:
			return nil, provider.Errorf(provider.EPERM, "uid %d is not mapped to an app", uint64(c.caller.UID))
		case bad != nil:
			return nil, bad
		}
		ctx = context.WithValue(ctx, callerKey{}, &c.caller)
		if icpt != nil {
			return icpt(ctx, req, info, handler)
		}
		return handler(ctx, req)
	})
	if !ours && err != nil {
		c.finish(ctx, codeOf(rpcerr.FromStatus(err)))
		return nil, err
	}
	if !c.finish(ctx, codeOf(err)) {
		scrub(resp)
		return nil, rpcerr.ToStatus(provider.Errorf(provider.EIO, "audit log unavailable; request refused"))
	}
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return resp, nil
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
	case *keystorev1.GenerateDataKeyResponse:
		clear(r.GetPlaintext())
	case *keystorev1.DecryptResponse:
		clear(r.GetPlaintext())
	}
}

// unknown answers calls to methods keystore.v1 does not have (ENOTSUP),
// with their audit record.
func (s *Server) unknown(_ any, stream grpc.ServerStream) error {
	ctx := stream.Context()
	c := callFrom(ctx)
	if c != nil && !c.enter() {
		return errAbandoned
	}
	if c != nil && !c.finish(ctx, provider.ENOTSUP) {
		return rpcerr.ToStatus(provider.Errorf(provider.EIO, "audit log unavailable; request refused"))
	}
	return rpcerr.ToStatus(provider.Errorf(provider.ENOTSUP, "unknown method"))
}

// Every call's state is started by the transport's tap (admit) and
// finished by the handler that answers it: serve for keystore.v1,
// finishingRegistrar's wrappers for the probes, unknown for other
// methods. The daemon installs no grpc.StatsHandler: one makes gRPC
// allocate a stats object for every event of every call (and copy its
// metadata) whether the handler looks at it or not. What a handler never
// sees — a request gRPC refuses between the tap and the handler (a
// compressor the daemon does not have; a deadline already passed) — is
// finished when the daemon writes the stream's end (endUnanswered), or
// when its client resets the stream or closes the connection first
// (abandon: a handler that starts after that does nothing).

// errAbandoned answers a call its client ended before a handler took it
// (call.abandon recorded it): nobody reads the answer.
var errAbandoned = rpcerr.ToStatus(provider.Errorf(provider.EUNAVAILABLE, "request ended by its client before it was handled"))

// finishingRegistrar registers services whose every handler finishes its
// call (the probes: health and reflection, which serve does not wrap).
type finishingRegistrar struct {
	grpc.ServiceRegistrar
}

// RegisterService registers desc with every method and stream handler
// finishing its call with the handler's result.
func (r finishingRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		h := d.Methods[i].Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			if c := callFrom(ctx); c != nil && !c.enter() {
				return nil, errAbandoned
			}
			resp, err := h(srv, ctx, dec, icpt)
			if c := callFrom(ctx); c != nil {
				c.finish(ctx, codeOf(rpcerr.FromStatus(err)))
			}
			return resp, err
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		h := d.Streams[i].Handler
		d.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error {
			if c := callFrom(stream.Context()); c != nil && !c.enter() {
				return errAbandoned
			}
			err := h(srv, stream)
			if c := callFrom(stream.Context()); c != nil {
				c.finish(stream.Context(), codeOf(rpcerr.FromStatus(err)))
			}
			return err
		}
	}
	r.ServiceRegistrar.RegisterService(&d, impl)
}

// endUnanswered finishes the call of a stream whose end the daemon has
// written (metered connections: flow.go) if no handler finished it: gRPC
// refused the request between the tap and the handler, which it does
// (Unimplemented) for a compressor the daemon does not have: ENOTSUP. (A
// deadline already passed, gRPC's other refusal there, is the tap's:
// admit refuses it.) The record is written on a goroutine of its own,
// not on the connection's writer.
//
// A call a handler took (enter) is that handler's to finish, even if the
// stream's end is written before the handler's record (a handler that
// refuses a request writes its status, then its record): only a call no
// handler took and no abandon finished is finished here, once.
func (c *call) endUnanswered() {
	c.mu.Lock()
	take := !c.done && !c.entered && !c.abandoned
	if take {
		c.abandoned = true // a handler starting now does nothing (enter)
	}
	c.mu.Unlock()
	if take {
		go c.finish(context.Background(), provider.ENOTSUP)
	}
}

// requestCodec is the proto codec, except for a decodeInto: serve asks
// for the request that way, so that a request that does not decode is
// refused by serve (EINVAL, audited) instead of by the transport (which
// would answer Internal). A batch request's items are counted on the wire
// before it is decoded: a batch of more than MaxBatchItems is refused
// without building its items, so that a request within the byte limit
// cannot make the daemon allocate millions of empty items.
type requestCodec struct{}

// decodeInto asks requestCodec to decode into m and to keep the error
// that refuses the request in err instead of returning it.
type decodeInto struct {
	m   proto.Message
	err error
}

// protoCodec is gRPC's proto codec (package grpc registers it).
var protoCodec = encoding.GetCodecV2(protoenc.Name)

func (requestCodec) Name() string { return protoenc.Name }

func (requestCodec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

func (requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	d, ok := v.(*decodeInto)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	d.err = decodeRequest(data, d.m)
	return nil
}

var errMalformed = provider.Errorf(provider.EINVAL, "malformed request message")

// decodeRequest decodes a request, counting a batch's items (field 1) on
// the wire first; the error refuses it (EINVAL).
func decodeRequest(data mem.BufferSlice, m proto.Message) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	switch m.(type) {
	case *keystorev1.SignBatchRequest, *keystorev1.SealBatchRequest, *keystorev1.UnsealBatchRequest,
		*keystorev1.MacBatchRequest, *keystorev1.VerifyMacBatchRequest:
		if n := countItems(b); n > MaxBatchItems {
			return checkBatch(n, m)
		}
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

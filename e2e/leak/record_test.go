package leak

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// recorder keeps every byte the daemon sent back to the workload: each
// response message as it came off the wire (before decoding), every
// header and trailer value, and every error status (message and details,
// as the wire encodes them).
type recorder struct {
	mu        sync.Mutex
	responses [][]byte
	metadata  [][]byte
	statuses  [][]byte
	calls     int
	methods   map[string]int // calls per full method name
}

func (r *recorder) add(dst *[][]byte, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*dst = append(*dst, b)
}

// sinks returns what was recorded, by kind.
func (r *recorder) sinks() map[string][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	join := func(parts [][]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
			out = append(out, '\n')
		}
		return out
	}
	return map[string][]byte{
		"response bodies":  join(r.responses),
		"response headers": join(r.metadata),
		"error statuses":   join(r.statuses),
	}
}

// rawFrame is a request sent as these exact bytes (a malformed message),
// or a response kept as its bytes.
type rawFrame struct{ b []byte }

// recordingCodec is gRPC's proto codec that records every message it
// decodes and passes rawFrame through as bytes.
type recordingCodec struct{ r *recorder }

var protoCodec = encoding.GetCodecV2(protoenc.Name)

func (recordingCodec) Name() string { return protoenc.Name }

func (c recordingCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*rawFrame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
	}
	return protoCodec.Marshal(v)
}

func (c recordingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b := data.Materialize()
	c.r.add(&c.r.responses, b)
	if f, ok := v.(*rawFrame); ok {
		f.b = b
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return errors.New("recordingCodec: not a proto message")
	}
	return proto.Unmarshal(b, m)
}

// intercept records the headers, trailers and error status of every call.
func (r *recorder) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var hdr, trl metadata.MD
	opts = append(opts, grpc.Header(&hdr), grpc.Trailer(&trl))
	err := invoker(ctx, method, req, reply, cc, opts...)
	r.mu.Lock()
	r.calls++
	if r.methods == nil {
		r.methods = map[string]int{}
	}
	r.methods[method]++
	r.mu.Unlock()
	for _, md := range []metadata.MD{hdr, trl} {
		for k, vs := range md {
			for _, v := range vs {
				r.add(&r.metadata, []byte(k+": "+v))
			}
		}
	}
	if err != nil {
		st := status.Convert(err)
		b, merr := proto.Marshal(st.Proto())
		if merr != nil {
			return merr
		}
		r.add(&r.statuses, append([]byte(err.Error()+"\n"), b...))
	}
	return err
}

// dialRecorded connects to the socket with every response recorded by r.
func dialRecorded(t testing.TB, socket string, r *recorder) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(recordingCodec{r: r}), grpc.MaxCallRecvMsgSize(32<<20)),
		grpc.WithUnaryInterceptor(r.intercept))
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil && !strings.Contains(err.Error(), "already closed") {
			t.Errorf("closing the connection: %v", err)
		}
	})
	return conn
}

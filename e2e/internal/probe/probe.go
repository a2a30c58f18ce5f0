// Package probe makes raw keystore.v1 calls for the end-to-end security
// tests: a request is its protobuf wire bytes (so a test can send what
// the typed client would refuse to build), a result is the full gRPC
// status, kept as bytes so that two refusals can be compared byte for
// byte.
//
// The same code runs as a separate process under another uid: a test
// binary whose TestMain starts with
//
//	if probe.Enabled() { os.Exit(probe.Main(os.Stdin, os.Stdout)) }
//
// becomes, when run with $KEYSTORED_PROBE_SOCKET set, a probe that reads a
// JSON list of Calls on stdin, makes them in order over one connection to
// that socket, and prints the JSON list of Results on stdout. Run it with
// SysProcAttr.Credential and the daemon sees that uid (SO_PEERCRED).
package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nexus-os/keystored/internal/rpcerr"
)

// EnvSocket names the environment variable that switches a test binary
// into a probe and gives it the daemon's socket path.
const EnvSocket = "KEYSTORED_PROBE_SOCKET"

// MaxInput bounds the call list a probe reads.
const MaxInput = 256 << 20

// Call is one RPC: a full method name ("/keystore.v1.Keys/Sign") and the
// request's wire bytes.
type Call struct {
	Method  string `json:"method"`
	Request []byte `json:"request"`
	// Metadata is sent as the call's gRPC metadata (headers): the daemon
	// must ignore anything a caller says there about who it is.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Compressor, if set, names the registered gRPC compressor the
	// request is sent with.
	Compressor string `json:"compressor,omitempty"`
}

// NewCall marshals req into a Call. It fails for a message that does not
// marshal (a proto3 string that is not UTF-8): build such requests by
// hand.
func NewCall(method string, req proto.Message) (Call, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return Call{}, fmt.Errorf("probe: marshal %s request: %w", method, err)
	}
	return Call{Method: method, Request: b}, nil
}

// Result is the outcome of one Call.
type Result struct {
	// Code is the gRPC status code (OK on success).
	Code codes.Code `json:"code"`
	// Reason is "ok" on success, the keystored ErrorInfo reason ("EPERM")
	// of an error, or "" for an error whose status carries none.
	Reason string `json:"reason"`
	// Message is the status message.
	Message string `json:"message"`
	// Status is the marshalled google.rpc.Status of an error (code,
	// message and details, exactly as received); nil on success.
	Status []byte `json:"status,omitempty"`
	// Response is the response's wire bytes on success.
	Response []byte `json:"response,omitempty"`
}

// OK reports whether the call succeeded.
func (r Result) OK() bool { return r.Code == codes.OK }

// Err returns the call's error as the typed client sees it (an error
// wrapping a provider Code, rebuilt by rpcerr.FromStatus), or nil.
func (r Result) Err() error {
	if r.OK() {
		return nil
	}
	return rpcerr.FromStatus(r.GRPCStatus().Err())
}

// GRPCStatus returns the status the call ended with.
func (r Result) GRPCStatus() *status.Status {
	if r.OK() {
		return status.New(codes.OK, "")
	}
	var sp spb.Status
	if err := proto.Unmarshal(r.Status, &sp); err != nil {
		return status.New(r.Code, r.Message)
	}
	return status.FromProto(&sp)
}

// Decode unmarshals the response into m.
func (r Result) Decode(m proto.Message) error {
	if !r.OK() {
		return fmt.Errorf("probe: no response: %s (%s)", r.Message, r.Reason)
	}
	return proto.Unmarshal(r.Response, m)
}

// rawCodec sends and receives wire bytes unchanged: requests are []byte,
// responses are read into *[]byte.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("probe: raw codec cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("probe: raw codec cannot unmarshal into %T", v)
	}
	*p = data.Materialize()
	return nil
}

// MaxResponse is the largest response a probe accepts.
const MaxResponse = 64 << 20

// Invoke makes one call with the raw request bytes.
func Invoke(ctx context.Context, conn grpc.ClientConnInterface, c Call) Result {
	var resp []byte
	if len(c.Metadata) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.New(c.Metadata))
	}
	opts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(MaxResponse), grpc.MaxCallSendMsgSize(1 << 30)}
	if c.Compressor != "" {
		opts = append(opts, grpc.UseCompressor(c.Compressor))
	}
	err := conn.Invoke(ctx, c.Method, c.Request, &resp, opts...)
	if err == nil {
		return Result{Code: codes.OK, Reason: "ok", Response: resp}
	}
	st := status.Convert(err)
	r := Result{Code: st.Code(), Message: st.Message()}
	if b, merr := proto.Marshal(st.Proto()); merr == nil {
		r.Status = b
	}
	r.Reason, _ = rpcerr.Reason(st)
	return r
}

// Dial connects to the keystored socket at path.
func Dial(path string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Enabled reports whether this process was started as a probe.
func Enabled() bool { return os.Getenv(EnvSocket) != "" }

// Main is the probe process: calls from in, results to out. It returns
// the exit status: 0 when every call was made (whatever its outcome), 2
// when the input or the connection failed.
func Main(in io.Reader, out io.Writer) int {
	if err := run(in, out); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	return 0
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(io.LimitReader(in, MaxInput+1))
	if err != nil {
		return err
	}
	if len(data) > MaxInput {
		return errors.New("call list over MaxInput")
	}
	var calls []Call
	if err := json.Unmarshal(data, &calls); err != nil {
		return fmt.Errorf("reading calls: %w", err)
	}
	conn, err := Dial(os.Getenv(EnvSocket))
	if err != nil {
		return err
	}
	results := make([]Result, 0, len(calls))
	ctx := context.Background()
	for _, c := range calls {
		results = append(results, Invoke(ctx, conn, c))
	}
	if err := conn.Close(); err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(results)
}

package plugin

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/coredump"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// Serve serves p as a keystored provider plugin over go-plugin's gRPC
// protocol, under Handshake, speaking wire protocol version 1. It is all a
// plugin's main needs to call once it has built its provider; it returns
// when the daemon tells the plugin to stop.
//
// Started by hand (without the handshake cookie), the binary says that it
// is a plugin and exits 1. Started without automatic mutual TLS (no client
// certificate from the daemon) it refuses to serve and exits 1: keystored
// never talks to a provider over an unauthenticated channel.
//
// Serve first turns core dumps off for the process (RLIMIT_CORE 0 and, on
// Linux, PR_SET_DUMPABLE 0: the KEK and keys in its memory never reach a
// core file or a same-uid debugger); if the kernel refuses, it exits 1.
//
// Serve never logs requests or replies. go-plugin's own log lines (start,
// address, shutdown) go to stderr as JSON, which the daemon forwards into
// its log; so does anything else the plugin writes to stderr or stdout, so
// a provider must not print payloads or key material.
func Serve(p provider.Provider) {
	// First: the provider's memory (its KEK, unwrapped keys) must never
	// land in a core file or be read by a same-uid debugger. The dumpable
	// flag is reset by execve, so the daemon's own setting does not carry
	// over. (A main that reads a key file before it calls Serve calls
	// DisableCoreDumps itself, first.)
	if err := DisableCoreDumps(); err != nil {
		fmt.Fprintln(os.Stderr, "keystored plugin: refusing to serve:", err)
		os.Exit(1)
	}
	if p == nil {
		fmt.Fprintln(os.Stderr, "keystored plugin: plugin.Serve called without a provider")
		os.Exit(1)
	}
	launchedByDaemon := os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
	if launchedByDaemon && os.Getenv("PLUGIN_CLIENT_CERT") == "" {
		fmt.Fprintln(os.Stderr, "keystored plugin: refusing to serve without automatic mutual TLS "+
			"(no client certificate in PLUGIN_CLIENT_CERT); the daemon always enables it")
		os.Exit(1)
	}
	// Without the cookie, go-plugin prints that this binary is a plugin
	// and exits.
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(&grpcPlugin{impl: p}),
		GRPCServer:       newGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "keystored-plugin",
			Level:      hclog.Info,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}

// DisableCoreDumps keeps the process's memory out of core dumps and away
// from same-uid debuggers: RLIMIT_CORE 0 (soft and hard) and, on Linux,
// PR_SET_DUMPABLE 0. Serve calls it; a plugin's main that loads secrets
// (a KEK file, a PIN) before it calls Serve should call it first thing.
// Plugins in other languages do the same with prctl(2) and setrlimit(2)
// (docs/providers.md).
func DisableCoreDumps() error {
	if err := coredump.Disable(); err != nil {
		return fmt.Errorf("cannot keep key material out of core dumps: %w", err)
	}
	return nil
}

// streamWorkers is the number of long-lived goroutines that run calls
// (more concurrent calls get a goroutine each, as without workers).
const streamWorkers = 64

// newGRPCServer makes the plugin's gRPC server (go-plugin adds its TLS
// credentials to opts), with message sizes bounded by the protocol.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.MaxRecvMsgSize(maxRequest),
		grpc.MaxSendMsgSize(DefaultMaxReply),
		// Long-lived workers instead of a goroutine per call: a worker's
		// stack has already grown to what signing needs, so calls do not
		// pay for stack copying.
		grpc.NumStreamWorkers(streamWorkers),
	)
	return grpc.NewServer(opts...)
}

// server adapts a provider.Provider to the gRPC service. It rebuilds and
// checks every key reference and bound before the provider sees a request,
// passes the call's context through (a cancelled call cancels the
// provider's work), and turns errors into statuses through rpcerr.
type server struct {
	providerpb.UnimplementedProviderServer
	p provider.Provider
}

// recovered turns a provider panic into EIO, so that one bad request does
// not take the plugin down. The panic value is not reported: it might
// hold request data.
func recovered(op string, err *error) {
	if r := recover(); r != nil {
		*err = rpcerr.ToStatus(provider.Errorf(provider.EIO, "provider panicked during %s", op))
	}
}

func (s *server) Info(ctx context.Context, _ *providerpb.InfoRequest) (_ *providerpb.InfoResponse, err error) {
	defer recovered("info", &err)
	info, err := s.p.Info(ctx)
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	if err := info.Check(); err != nil {
		return nil, rpcerr.ToStatus(provider.Errorf(provider.EIO, "provider Info is invalid: %w", err))
	}
	w := infoToWire(info)
	_, w.KekRotation = s.p.(provider.KEKRotator)
	w.CallStream = true
	return w, nil
}

func (s *server) Generate(ctx context.Context, req *providerpb.GenerateRequest) (_ *providerpb.GenerateResponse, err error) {
	defer recovered("generate", &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("generate", "", err))
	}
	g, err := s.p.Generate(ctx, ref)
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.GenerateResponse{PublicKey: g.PublicKey, Handle: g.Handle}, nil
}

func (s *server) Sign(ctx context.Context, req *providerpb.SignRequest) (_ *providerpb.SignResponse, err error) {
	defer recovered("sign", &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("sign", "", err))
	}
	if err := checkSign(ref, req.GetHandle(), req.GetMessage()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	sig, err := s.p.Sign(ctx, ref, req.GetHandle(), req.GetMessage())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.SignResponse{Signature: sig}, nil
}

func (s *server) SignDigest(ctx context.Context, req *providerpb.SignDigestRequest) (_ *providerpb.SignResponse, err error) {
	defer recovered("sign digest", &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("sign digest", "", err))
	}
	hash, err := provider.ParseHash(req.GetDigestHash())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("sign digest", ref.String(), err))
	}
	if _, err := checkSignDigest(ref, req.GetHandle(), hash, req.GetDigest()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	sig, err := s.p.SignDigest(ctx, ref, req.GetHandle(), hash, req.GetDigest())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.SignResponse{Signature: sig}, nil
}

func (s *server) Mac(ctx context.Context, req *providerpb.MacRequest) (_ *providerpb.MacResponse, err error) {
	defer recovered("mac", &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("mac", "", err))
	}
	if err := checkMAC(ref, req.GetHandle(), req.GetMessage()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	tag, err := s.p.MAC(ctx, ref, req.GetHandle(), req.GetMessage())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.MacResponse{Tag: tag}, nil
}

func (s *server) Decrypt(ctx context.Context, req *providerpb.DecryptRequest) (_ *providerpb.DecryptResponse, err error) {
	const op = "decrypt"
	defer recovered(op, &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp(op, "", err))
	}
	if err := checkDecrypt(ref, req.GetHandle(), req.GetEnc(), req.GetCiphertext(), req.GetInfo(), req.GetAad()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	out, err := s.p.Decrypt(ctx, ref, req.GetHandle(), req.GetEnc(), req.GetCiphertext(), req.GetInfo(), req.GetAad())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.DecryptResponse{Plaintext: out}, nil
}

func (s *server) NewImportKey(ctx context.Context, req *providerpb.GenerateRequest) (_ *providerpb.GenerateResponse, err error) {
	const op = "new import key"
	defer recovered(op, &err)
	wrap, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp(op, "", err))
	}
	g, err := s.p.NewImportKey(ctx, wrap)
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.GenerateResponse{PublicKey: g.PublicKey, Handle: g.Handle}, nil
}

func (s *server) Import(ctx context.Context, req *providerpb.ImportRequest) (_ *providerpb.GenerateResponse, err error) {
	const op = "import"
	defer recovered(op, &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp(op, "", err))
	}
	wrap, err := refFromWire(req.GetWrap())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp(op, ref.String(), provider.Errorf(provider.EINVAL, "import wrapping key ref: %w", err)))
	}
	if err := checkImport(ref, wrap, req.GetWrapHandle(), req.GetEnc(), req.GetWrapped()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	g, err := s.p.Import(ctx, ref, wrap, req.GetWrapHandle(), req.GetEnc(), req.GetWrapped())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.GenerateResponse{PublicKey: g.PublicKey, Handle: g.Handle}, nil
}

func (s *server) Seal(ctx context.Context, req *providerpb.SealRequest) (_ *providerpb.SealResponse, err error) {
	defer recovered("seal", &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("seal", "", err))
	}
	if err := checkSeal(ref, req.GetHandle(), req.GetPlaintext(), req.GetAad()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	out, err := s.p.Seal(ctx, ref, req.GetHandle(), req.GetPlaintext(), req.GetAad())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.SealResponse{Sealed: out}, nil
}

func (s *server) Open(ctx context.Context, req *providerpb.OpenRequest) (_ *providerpb.OpenResponse, err error) {
	defer recovered("open", &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("open", "", err))
	}
	if err := checkOpen(ref, req.GetHandle(), req.GetSealed(), req.GetAad()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	out, err := s.p.Open(ctx, ref, req.GetHandle(), req.GetSealed(), req.GetAad())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.OpenResponse{Plaintext: out}, nil
}

func (s *server) Destroy(ctx context.Context, req *providerpb.DestroyRequest) (_ *providerpb.DestroyResponse, err error) {
	defer recovered("destroy", &err)
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("destroy", "", err))
	}
	if err := checkHandle("destroy", ref, req.GetHandle()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	if err := s.p.Destroy(ctx, ref, req.GetHandle()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.DestroyResponse{}, nil
}

// rotator returns the served provider as a provider.KEKRotator, or
// ENOTSUP when it is not one (and the plugin does not announce
// kek_rotation).
func (s *server) rotator(op string) (provider.KEKRotator, error) {
	rot, ok := s.p.(provider.KEKRotator)
	if !ok {
		return nil, provider.WithOp(op, "", provider.Errorf(provider.ENOTSUP, "this plugin's provider cannot rotate its KEK (it does not announce kek_rotation)"))
	}
	return rot, nil
}

func (s *server) BeginKEKRotation(ctx context.Context, _ *providerpb.BeginKEKRotationRequest) (_ *providerpb.BeginKEKRotationResponse, err error) {
	defer recovered("begin KEK rotation", &err)
	rot, err := s.rotator("begin KEK rotation")
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	next, err := rot.BeginKEKRotation(ctx)
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	if err := provider.CheckKEKFingerprint(next); err != nil {
		return nil, rpcerr.ToStatus(provider.Errorf(provider.EIO, "provider's BeginKEKRotation returned an invalid next KEK: %w", err))
	}
	return &providerpb.BeginKEKRotationResponse{NextKek: next}, nil
}

func (s *server) RewrapHandle(ctx context.Context, req *providerpb.RewrapHandleRequest) (_ *providerpb.RewrapHandleResponse, err error) {
	defer recovered("rewrap handle", &err)
	rot, err := s.rotator("rewrap handle")
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	ref, err := refFromWire(req.GetRef())
	if err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("rewrap handle", "", err))
	}
	if err := checkHandle("rewrap handle", ref, req.GetHandle()); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	h, err := rot.RewrapHandle(ctx, ref, req.GetHandle())
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	if err := checkReturnedHandle(h); err != nil {
		return nil, rpcerr.ToStatus(provider.WithOp("rewrap handle", ref.String(), provider.Errorf(provider.EIO, "provider returned %w", err)))
	}
	return &providerpb.RewrapHandleResponse{Handle: h}, nil
}

func (s *server) CommitKEKRotation(ctx context.Context, _ *providerpb.CommitKEKRotationRequest) (_ *providerpb.CommitKEKRotationResponse, err error) {
	defer recovered("commit KEK rotation", &err)
	rot, err := s.rotator("commit KEK rotation")
	if err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	if err := rot.CommitKEKRotation(ctx); err != nil {
		return nil, rpcerr.ToStatus(err)
	}
	return &providerpb.CommitKEKRotationResponse{}, nil
}

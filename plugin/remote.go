package plugin

import (
	"context"
	"crypto"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// stubConfig is what the daemon side of a connection needs to know.
type stubConfig struct {
	label       string        // "plugin <name>", for messages
	callTimeout time.Duration // per call
	maxReply    int           // largest reply message accepted
	onLost      func()        // called when the connection is lost; may be nil
}

// stub is the gRPC client of one connection to one plugin process, before
// the plugin's Info is known.
type stub struct {
	rpc  providerpb.ProviderClient
	cfg  stubConfig
	opts []grpc.CallOption
	// callStream is InfoResponse.call_stream as last read: the plugin
	// serves the call stream.
	callStream atomic.Bool
}

func newStub(rpc providerpb.ProviderClient, cfg stubConfig) *stub {
	return &stub{
		rpc: rpc,
		cfg: cfg,
		opts: []grpc.CallOption{
			grpc.MaxCallRecvMsgSize(cfg.maxReply),
			grpc.MaxCallSendMsgSize(maxRequest),
		},
	}
}

// fetchInfo asks the plugin for its Info and checks it; rotates is
// InfoResponse.kek_rotation (the plugin serves the KEK rotation RPCs).
func (s *stub) fetchInfo(ctx context.Context) (_ provider.Info, rotates bool, _ error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.callTimeout)
	defer cancel()
	w, err := s.rpc.Info(cctx, &providerpb.InfoRequest{}, s.opts...)
	if err != nil {
		return provider.Info{}, false, s.callError(ctx, "info", "", err)
	}
	info, err := infoFromWire(w)
	if err != nil {
		return provider.Info{}, false, err
	}
	if w.GetKekRotation() && len(info.KEKs) == 0 {
		return provider.Info{}, false, provider.Errorf(provider.EIO, "%s announces KEK rotation but no KEK", s.cfg.label)
	}
	s.callStream.Store(w.GetCallStream())
	return info, w.GetKekRotation(), nil
}

// callError turns the error of a call into a keystored error. ctx is the
// caller's context (without the call timeout), to tell a cancellation by
// the caller from a plugin that did not answer.
func (s *stub) callError(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return provider.WithOp(op, key, provider.Errorf(provider.EUNAVAILABLE, "call cancelled: %w", cerr))
	}
	st, ok := status.FromError(err)
	if !ok {
		return provider.WithOp(op, key, rpcerr.FromStatus(err))
	}
	if hasReason(st) {
		// The provider's own error, with its code.
		return rpcerr.FromStatus(err)
	}
	// No keystored reason: the failure is the transport's or the client's.
	switch st.Code() {
	case codes.DeadlineExceeded:
		return provider.WithOp(op, key, provider.Errorf(provider.EUNAVAILABLE, "%s did not answer within %s", s.cfg.label, s.cfg.callTimeout))
	case codes.ResourceExhausted:
		// Requests are bounded before they are sent, so this is the reply
		// over MaxCallRecvMsgSize.
		return provider.WithOp(op, key, provider.Errorf(provider.EIO, "%s reply over %d bytes refused", s.cfg.label, s.cfg.maxReply))
	case codes.Unimplemented:
		// A plugin built before the method (SignDigest, Mac; Decrypt,
		// NewImportKey, Import): gRPC answers for it, without a reason.
		return provider.WithOp(op, key, provider.Errorf(provider.ENOTSUP, "%s does not serve %s (built before it?)", s.cfg.label, op))
	case codes.Unavailable, codes.Canceled:
		if s.cfg.onLost != nil {
			s.cfg.onLost()
		}
		return provider.WithOp(op, key, provider.Errorf(provider.EUNAVAILABLE, "lost the connection to %s: %w", s.cfg.label, errors.New(st.Message())))
	}
	return provider.WithOp(op, key, rpcerr.FromStatus(err))
}

// hasReason reports whether st carries a keystored ErrorInfo.
func hasReason(st *status.Status) bool {
	_, ok := rpcerr.Reason(st)
	return ok
}

// remote is a provider.Provider over one connection to one plugin. It
// checks requests before sending them (key reference, announced
// algorithm, bounds), bounds every call by the call timeout and checks
// every reply against the contract's bounds. When the plugin announces
// kek_rotation, rotatingRemote adds provider.KEKRotator.
type remote struct {
	*stub
	rotates bool // InfoResponse.kek_rotation, as announced at the start
	// info is the Info the plugin announced at the start, with the KEKs
	// it announced after the last Begin or Commit of a KEK rotation.
	info atomic.Pointer[provider.Info]
	// calls is the call stream that carries Sign, SignDigest and MAC when
	// the plugin announced call_stream at the start; nil otherwise (one
	// unary call per operation).
	calls *callStreams
}

// newRemote returns the remote of a plugin that announced info and
// rotates.
func newRemote(s *stub, info provider.Info, rotates bool) *remote {
	r := &remote{stub: s, rotates: rotates}
	if s.callStream.Load() {
		r.calls = newCallStreams(s.rpc, s.cfg.maxReply, s.opts)
	}
	r.info.Store(&info)
	return r
}

// sign makes a Sign or SignDigest call (one of req, dreq), over the call
// stream when there is one, bounded by the call timeout.
func (r *remote) sign(ctx context.Context, req *providerpb.SignRequest, dreq *providerpb.SignDigestRequest) ([]byte, error) {
	if r.calls != nil && !r.calls.disabled.Load() {
		call := &streamCall{}
		if req != nil {
			call.Op = &providerpb.Call_Sign{Sign: req}
		} else {
			call.Op = &providerpb.Call_SignDigest{SignDigest: dreq}
		}
		out, err := r.calls.do(ctx, call, r.cfg.callTimeout)
		if !errors.Is(err, errNoStream) {
			return out, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	var resp *providerpb.SignResponse
	var err error
	if req != nil {
		resp, err = r.rpc.Sign(cctx, req, r.opts...)
	} else {
		resp, err = r.rpc.SignDigest(cctx, dreq, r.opts...)
	}
	return resp.GetSignature(), err
}

// mac makes a Mac call, over the call stream when there is one, bounded
// by the call timeout.
func (r *remote) mac(ctx context.Context, req *providerpb.MacRequest) ([]byte, error) {
	if r.calls != nil && !r.calls.disabled.Load() {
		call := &streamCall{}
		call.Op = &providerpb.Call_Mac{Mac: req}
		out, err := r.calls.do(ctx, call, r.cfg.callTimeout)
		if !errors.Is(err, errNoStream) {
			return out, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.Mac(cctx, req, r.opts...)
	return resp.GetTag(), err
}

// current returns the plugin's Info as last read. The caller must not
// modify its slices.
func (r *remote) current() provider.Info { return *r.info.Load() }

// asProvider returns r as the provider.Provider it serves: with
// provider.KEKRotator when the plugin announced kek_rotation.
func (r *remote) asProvider() provider.Provider {
	if r.rotates {
		return rotatingRemote{r}
	}
	return r
}

// badReply is the error for a reply outside the contract.
func (r *remote) badReply(op string, ref provider.KeyRef, what string) error {
	return provider.WithOp(op, ref.String(), provider.Errorf(provider.EIO, "%s returned %s", r.cfg.label, what))
}

// checkRef checks ref before a call: well formed, and of an algorithm the
// plugin announced.
func (r *remote) checkRef(op string, ref provider.KeyRef) error {
	if err := ref.Check(); err != nil {
		return provider.WithOp(op, "", err)
	}
	if info := r.current(); !info.Supports(ref.Algorithm) {
		return provider.WithOp(op, ref.String(), provider.Errorf(provider.ENOTSUP, "%s does not announce algorithm %q", r.cfg.label, string(ref.Algorithm)))
	}
	return nil
}

// Info returns the Info the plugin announced when it started, with the
// KEKs it holds since the last step of a KEK rotation.
func (r *remote) Info(context.Context) (provider.Info, error) {
	return copyInfo(r.current()), nil
}

// copyInfo returns a copy of i that shares no slice with it.
func copyInfo(i provider.Info) provider.Info {
	i.Algorithms = append([]provider.Algorithm(nil), i.Algorithms...)
	i.KEKs = append([]string(nil), i.KEKs...)
	return i
}

// Generate implements provider.Provider.
func (r *remote) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	if err := r.checkRef("generate", ref); err != nil {
		return provider.Generated{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.Generate(cctx, &providerpb.GenerateRequest{Ref: refToWire(ref)}, r.opts...)
	if err != nil {
		return provider.Generated{}, r.callError(ctx, "generate", ref.String(), err)
	}
	g := provider.Generated{PublicKey: resp.GetPublicKey(), Handle: resp.GetHandle()}
	switch {
	case len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle:
		return provider.Generated{}, r.badReply("generate", ref, "a handle of "+strconv.Itoa(len(g.Handle))+" bytes")
	case len(g.PublicKey) > provider.MaxPublicKey:
		return provider.Generated{}, r.badReply("generate", ref, "a public key of "+strconv.Itoa(len(g.PublicKey))+" bytes")
	}
	return g, nil
}

// Sign implements provider.Provider.
func (r *remote) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if err := r.checkRef("sign", ref); err != nil {
		return nil, err
	}
	if err := checkSign(ref, h, msg); err != nil {
		return nil, err
	}
	sig, err := r.sign(ctx, &providerpb.SignRequest{Ref: refToWire(ref), Handle: h, Message: msg}, nil)
	if err != nil {
		return nil, r.callError(ctx, "sign", ref.String(), err)
	}
	if len(sig) == 0 || len(sig) > provider.MaxSignature {
		return nil, r.badReply("sign", ref, "a signature of "+strconv.Itoa(len(sig))+" bytes")
	}
	return sig, nil
}

// SignDigest implements provider.Provider.
func (r *remote) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	const op = "sign digest"
	if err := r.checkRef(op, ref); err != nil {
		return nil, err
	}
	name, err := checkSignDigest(ref, h, hash, digest)
	if err != nil {
		return nil, err
	}
	sig, err := r.sign(ctx, nil, &providerpb.SignDigestRequest{Ref: refToWire(ref), Handle: h, DigestHash: name, Digest: digest})
	if err != nil {
		return nil, r.callError(ctx, op, ref.String(), err)
	}
	if len(sig) == 0 || len(sig) > provider.MaxSignature {
		return nil, r.badReply(op, ref, "a signature of "+strconv.Itoa(len(sig))+" bytes")
	}
	return sig, nil
}

// MAC implements provider.Provider.
func (r *remote) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	const op = "mac"
	if err := r.checkRef(op, ref); err != nil {
		return nil, err
	}
	if err := checkMAC(ref, h, msg); err != nil {
		return nil, err
	}
	tag, err := r.mac(ctx, &providerpb.MacRequest{Ref: refToWire(ref), Handle: h, Message: msg})
	if err != nil {
		return nil, r.callError(ctx, op, ref.String(), err)
	}
	if len(tag) == 0 || len(tag) > provider.MaxMAC {
		return nil, r.badReply(op, ref, "a tag of "+strconv.Itoa(len(tag))+" bytes")
	}
	return tag, nil
}

// Decrypt implements provider.Provider. The reply's plaintext must be
// exactly the ciphertext less the AEAD tag; anything else is EIO.
func (r *remote) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ciphertext, info, aad []byte) ([]byte, error) {
	const op = "decrypt"
	if err := r.checkRef(op, ref); err != nil {
		return nil, err
	}
	if err := checkDecrypt(ref, h, enc, ciphertext, info, aad); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.Decrypt(cctx, &providerpb.DecryptRequest{Ref: refToWire(ref), Handle: h, Enc: enc, Ciphertext: ciphertext, Info: info, Aad: aad}, r.opts...)
	if err != nil {
		return nil, r.callError(ctx, op, ref.String(), err)
	}
	out := resp.GetPlaintext()
	if len(ciphertext) < hpkeTagSize || len(out) != len(ciphertext)-hpkeTagSize {
		clear(out)
		return nil, r.badReply(op, ref, "a plaintext of "+strconv.Itoa(len(out))+" bytes for a ciphertext of "+strconv.Itoa(len(ciphertext)))
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// NewImportKey implements provider.Provider. wrap's algorithm need not be
// one the plugin announces for keys (the contract's rule), so only its
// form is checked before the call; the reply must hold a public key and a
// handle within their bounds.
func (r *remote) NewImportKey(ctx context.Context, wrap provider.KeyRef) (provider.Generated, error) {
	const op = "new import key"
	if err := checkWrapRef(op, wrap); err != nil {
		return provider.Generated{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.NewImportKey(cctx, &providerpb.GenerateRequest{Ref: refToWire(wrap)}, r.opts...)
	if err != nil {
		return provider.Generated{}, r.callError(ctx, op, wrap.String(), err)
	}
	g := provider.Generated{PublicKey: resp.GetPublicKey(), Handle: resp.GetHandle()}
	switch {
	case len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle:
		return provider.Generated{}, r.badReply(op, wrap, "a handle of "+strconv.Itoa(len(g.Handle))+" bytes")
	case len(g.PublicKey) == 0 || len(g.PublicKey) > provider.MaxPublicKey:
		return provider.Generated{}, r.badReply(op, wrap, "a wrapping public key of "+strconv.Itoa(len(g.PublicKey))+" bytes")
	}
	return g, nil
}

// Import implements provider.Provider. The reply is checked as
// Generate's.
func (r *remote) Import(ctx context.Context, ref provider.KeyRef, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	const op = "import"
	if err := r.checkRef(op, ref); err != nil {
		return provider.Generated{}, err
	}
	if err := checkImport(ref, wrap, wh, enc, wrapped); err != nil {
		return provider.Generated{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.Import(cctx, &providerpb.ImportRequest{Ref: refToWire(ref), Wrap: refToWire(wrap), WrapHandle: wh, Enc: enc, Wrapped: wrapped}, r.opts...)
	if err != nil {
		return provider.Generated{}, r.callError(ctx, op, ref.String(), err)
	}
	g := provider.Generated{PublicKey: resp.GetPublicKey(), Handle: resp.GetHandle()}
	switch {
	case len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle:
		return provider.Generated{}, r.badReply(op, ref, "a handle of "+strconv.Itoa(len(g.Handle))+" bytes")
	case len(g.PublicKey) > provider.MaxPublicKey:
		return provider.Generated{}, r.badReply(op, ref, "a public key of "+strconv.Itoa(len(g.PublicKey))+" bytes")
	}
	return g, nil
}

// Seal implements provider.Provider.
func (r *remote) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	if err := r.checkRef("seal", ref); err != nil {
		return nil, err
	}
	if err := checkSeal(ref, h, plaintext, aad); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.Seal(cctx, &providerpb.SealRequest{Ref: refToWire(ref), Handle: h, Plaintext: plaintext, Aad: aad}, r.opts...)
	if err != nil {
		return nil, r.callError(ctx, "seal", ref.String(), err)
	}
	out := resp.GetSealed()
	if len(out) <= len(plaintext) || len(out) > len(plaintext)+provider.MaxSealOverhead {
		return nil, r.badReply("seal", ref, "a sealed blob of "+strconv.Itoa(len(out))+" bytes for a plaintext of "+strconv.Itoa(len(plaintext)))
	}
	return out, nil
}

// Open implements provider.Provider.
func (r *remote) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	if err := r.checkRef("open", ref); err != nil {
		return nil, err
	}
	if err := checkOpen(ref, h, sealed, aad); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.Open(cctx, &providerpb.OpenRequest{Ref: refToWire(ref), Handle: h, Sealed: sealed, Aad: aad}, r.opts...)
	if err != nil {
		return nil, r.callError(ctx, "open", ref.String(), err)
	}
	out := resp.GetPlaintext()
	if len(out) >= len(sealed) || len(out) > provider.MaxSealPlaintext {
		return nil, r.badReply("open", ref, "a plaintext of "+strconv.Itoa(len(out))+" bytes for a sealed blob of "+strconv.Itoa(len(sealed)))
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// Destroy implements provider.Provider. It also forgets an import
// wrapping key (NewImportKey's wrap ref and handle), whose HPKE suite the
// plugin need not announce: a ref of use asymmetric-decrypt is checked for
// its form only.
func (r *remote) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	check := r.checkRef
	if ref.Use == provider.UseAsymmetricDecrypt {
		check = checkWrapRef
	}
	if err := check("destroy", ref); err != nil {
		return err
	}
	if err := checkHandle("destroy", ref, h); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	if _, err := r.rpc.Destroy(cctx, &providerpb.DestroyRequest{Ref: refToWire(ref), Handle: h}, r.opts...); err != nil {
		return r.callError(ctx, "destroy", ref.String(), err)
	}
	return nil
}

// rotatingRemote is a remote whose plugin announced kek_rotation: it is
// a provider.KEKRotator.
type rotatingRemote struct{ *remote }

var _ provider.KEKRotator = rotatingRemote{}

// BeginKEKRotation implements provider.KEKRotator.
func (r rotatingRemote) BeginKEKRotation(ctx context.Context) (string, error) {
	return r.beginKEKRotation(ctx)
}

// RewrapHandle implements provider.KEKRotator.
func (r rotatingRemote) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return r.rewrapHandle(ctx, ref, h)
}

// CommitKEKRotation implements provider.KEKRotator.
func (r rotatingRemote) CommitKEKRotation(ctx context.Context) error {
	return r.commitKEKRotation(ctx)
}

// beginKEKRotation calls BeginKEKRotation, then reads the plugin's Info
// again and adopts its KEKs, which must now start with the next KEK.
func (r *remote) beginKEKRotation(ctx context.Context) (string, error) {
	const op = "begin KEK rotation"
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.BeginKEKRotation(cctx, &providerpb.BeginKEKRotationRequest{}, r.opts...)
	if err != nil {
		return "", r.callError(ctx, op, "", err)
	}
	next := resp.GetNextKek()
	if err := provider.CheckKEKFingerprint(next); err != nil {
		return "", provider.WithOp(op, "", provider.Errorf(provider.EIO, "%s returned an invalid next KEK: %w", r.cfg.label, err))
	}
	err = r.refresh(ctx, op, func(keks []string) bool { return len(keks) > 0 && keks[0] == next })
	if err != nil {
		return "", err
	}
	return next, nil
}

// rewrapHandle calls RewrapHandle.
func (r *remote) rewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	const op = "rewrap handle"
	if err := r.checkRef(op, ref); err != nil {
		return nil, err
	}
	if err := checkHandle(op, ref, h); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	resp, err := r.rpc.RewrapHandle(cctx, &providerpb.RewrapHandleRequest{Ref: refToWire(ref), Handle: h}, r.opts...)
	if err != nil {
		return nil, r.callError(ctx, op, ref.String(), err)
	}
	nh := resp.GetHandle()
	if err := checkReturnedHandle(nh); err != nil {
		return nil, r.badReply(op, ref, "a handle of "+strconv.Itoa(len(nh))+" bytes")
	}
	return nh, nil
}

// commitKEKRotation calls CommitKEKRotation, then reads the plugin's
// Info again and adopts its KEKs, which must now be the first KEK alone
// (the pending one, or the only one when none was pending).
func (r *remote) commitKEKRotation(ctx context.Context) error {
	const op = "commit KEK rotation"
	was := r.current().KEKs
	cctx, cancel := context.WithTimeout(ctx, r.cfg.callTimeout)
	defer cancel()
	if _, err := r.rpc.CommitKEKRotation(cctx, &providerpb.CommitKEKRotationRequest{}, r.opts...); err != nil {
		return r.callError(ctx, op, "", err)
	}
	return r.refresh(ctx, op, func(keks []string) bool { return len(was) > 0 && slices.Equal(keks, was[:1]) })
}

// refresh reads the plugin's Info again after op and adopts its KEKs when
// ok accepts them and nothing else changed; otherwise it is EIO (the
// reply is outside the contract) and the KEKs stay as they were.
func (r *remote) refresh(ctx context.Context, op string, ok func(keks []string) bool) error {
	info, rotates, err := r.fetchInfo(ctx)
	if err != nil {
		return provider.WithOp(op, "", err)
	}
	was := r.current()
	if !sameDescription(was, info) || !rotates {
		return provider.WithOp(op, "", provider.Errorf(provider.EIO, "%s describes itself differently after it (provider %q, kek_rotation %s)",
			r.cfg.label, info.Name, strconv.FormatBool(rotates)))
	}
	if !ok(info.KEKs) {
		return provider.WithOp(op, "", provider.Errorf(provider.EIO, "%s holds KEKs [%s] after it, which the contract does not allow (held [%s] before)",
			r.cfg.label, strings.Join(info.KEKs, " "), strings.Join(was.KEKs, " ")))
	}
	was.KEKs = info.KEKs
	r.info.Store(&was)
	return nil
}

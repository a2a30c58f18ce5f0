package plugin

import (
	"bytes"
	"context"
	"crypto"
	"slices"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
	"github.com/nexus-os/keystored/providers/testseed"
)

// replyClient is a providerpb.ProviderClient whose every reply is made
// from fuzz input: the reply message decoded from bytes (or, with a size,
// one whose payload field has that many bytes), or an error status decoded
// from bytes. It is what a buggy or hostile plugin can send back.
type replyClient struct {
	reply    []byte // the reply message's wire bytes
	size     int    // > 0: the payload field has this many bytes instead
	asStatus bool   // reply is a google.rpc.Status: the call fails
}

// result returns the error of the call, if the input is an error.
func (c *replyClient) result() error {
	if !c.asStatus {
		return nil
	}
	var st spb.Status
	if proto.Unmarshal(c.reply, &st) != nil {
		return status.Error(13, "undecodable status")
	}
	// A status with code OK is no error: the call then "succeeds" with an
	// empty reply, as a real connection would give an empty message.
	return status.ErrorProto(&st)
}

func (c *replyClient) decode(m proto.Message) error {
	if err := c.result(); err != nil {
		return err
	}
	if !c.asStatus {
		if err := proto.Unmarshal(c.reply, m); err != nil {
			// The real client refuses an undecodable reply as Internal.
			return status.Error(13, "grpc: failed to unmarshal the received message")
		}
	}
	return nil
}

func (c *replyClient) payload() []byte { return bytes.Repeat([]byte{0xa5}, c.size) }

func (c *replyClient) Info(context.Context, *providerpb.InfoRequest, ...grpc.CallOption) (*providerpb.InfoResponse, error) {
	var r providerpb.InfoResponse
	return &r, c.decode(&r)
}

func (c *replyClient) Generate(context.Context, *providerpb.GenerateRequest, ...grpc.CallOption) (*providerpb.GenerateResponse, error) {
	var r providerpb.GenerateResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Handle = c.payload()
		r.PublicKey = c.payload()
	}
	return &r, nil
}

// Calls is never reached: the fuzzed remote is made without the call
// stream, so every call is a unary one whose reply the input makes.
func (c *replyClient) Calls(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[providerpb.CallBatch, providerpb.ReplyBatch], error) {
	return nil, status.Error(12, "the fuzzed client has no call stream")
}

func (c *replyClient) Sign(context.Context, *providerpb.SignRequest, ...grpc.CallOption) (*providerpb.SignResponse, error) {
	var r providerpb.SignResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Signature = c.payload()
	}
	return &r, nil
}

func (c *replyClient) SignDigest(context.Context, *providerpb.SignDigestRequest, ...grpc.CallOption) (*providerpb.SignResponse, error) {
	var r providerpb.SignResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Signature = c.payload()
	}
	return &r, nil
}

func (c *replyClient) Mac(context.Context, *providerpb.MacRequest, ...grpc.CallOption) (*providerpb.MacResponse, error) {
	var r providerpb.MacResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Tag = c.payload()
	}
	return &r, nil
}

func (c *replyClient) Decrypt(context.Context, *providerpb.DecryptRequest, ...grpc.CallOption) (*providerpb.DecryptResponse, error) {
	var r providerpb.DecryptResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Plaintext = c.payload()
	}
	return &r, nil
}

func (c *replyClient) NewImportKey(context.Context, *providerpb.GenerateRequest, ...grpc.CallOption) (*providerpb.GenerateResponse, error) {
	return c.Generate(context.Background(), nil)
}

func (c *replyClient) Import(context.Context, *providerpb.ImportRequest, ...grpc.CallOption) (*providerpb.GenerateResponse, error) {
	return c.Generate(context.Background(), nil)
}

func (c *replyClient) Seal(context.Context, *providerpb.SealRequest, ...grpc.CallOption) (*providerpb.SealResponse, error) {
	var r providerpb.SealResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Sealed = c.payload()
	}
	return &r, nil
}

func (c *replyClient) Open(context.Context, *providerpb.OpenRequest, ...grpc.CallOption) (*providerpb.OpenResponse, error) {
	var r providerpb.OpenResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Plaintext = c.payload()
	}
	return &r, nil
}

func (c *replyClient) Destroy(context.Context, *providerpb.DestroyRequest, ...grpc.CallOption) (*providerpb.DestroyResponse, error) {
	var r providerpb.DestroyResponse
	return &r, c.decode(&r)
}

func (c *replyClient) BeginKEKRotation(context.Context, *providerpb.BeginKEKRotationRequest, ...grpc.CallOption) (*providerpb.BeginKEKRotationResponse, error) {
	var r providerpb.BeginKEKRotationResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.NextKek = string(c.payload())
	}
	return &r, nil
}

func (c *replyClient) RewrapHandle(context.Context, *providerpb.RewrapHandleRequest, ...grpc.CallOption) (*providerpb.RewrapHandleResponse, error) {
	var r providerpb.RewrapHandleResponse
	if err := c.decode(&r); err != nil {
		return nil, err
	}
	if c.size > 0 {
		r.Handle = c.payload()
	}
	return &r, nil
}

func (c *replyClient) CommitKEKRotation(context.Context, *providerpb.CommitKEKRotationRequest, ...grpc.CallOption) (*providerpb.CommitKEKRotationResponse, error) {
	var r providerpb.CommitKEKRotationResponse
	return &r, c.decode(&r)
}

// The operations FuzzPluginReplies drives.
const (
	opGenerate = iota
	opSign
	opSeal
	opOpen
	opDestroy
	opInfo
	opBeginKEK
	opRewrap
	opCommitKEK
	opSignDigest
	opMAC
	opDecrypt
	opNewImportKey
	opImport
	numOps
)

// FuzzPluginReplies feeds arbitrary replies (messages of any content and
// payload size, and error statuses with any code, message and details) to
// the daemon side of the plugin protocol for every operation: the result
// is a typed error (a valid keystored code) or a value within the
// contract's bounds, never a panic. The corpus is seeded from the replies
// of the testseed provider for the golden refs and from keystored error
// statuses of every code.
func FuzzPluginReplies(f *testing.F) {
	seeds := 0
	add := func(op uint8, reply []byte, size uint32, asStatus bool, inLen uint16) {
		f.Add(op, reply, size, asStatus, inLen)
		seeds++
	}
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	// Genuine replies of a real provider, through the wire types.
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range []provider.Algorithm{provider.Ed25519, provider.MLDSA44, provider.ECDSAP256, provider.RSA2048PKCS1,
		provider.Ed25519ph, provider.HMACSHA256, provider.HMACSHA512, provider.XChaCha20Poly1305, provider.AES256GCM} {
		ref := fuzzRef(f, a)
		ref.Provider = testseed.Name
		g, err := p.Generate(ctx, ref)
		if err != nil {
			f.Fatal(err)
		}
		add(opGenerate, marshal(&providerpb.GenerateResponse{PublicKey: g.PublicKey, Handle: g.Handle}), 0, false, 0)
		switch ref.Use {
		case provider.UseSign:
			sig, err := p.Sign(ctx, ref, g.Handle, []byte("message"))
			if err != nil {
				f.Fatal(err)
			}
			add(opSign, marshal(&providerpb.SignResponse{Signature: sig}), 0, false, 7)
			if s, err := alg.Default().Lookup(a); err == nil && s.Hash != 0 {
				sig, err := p.SignDigest(ctx, ref, g.Handle, s.Hash, digestOf(s.Hash, []byte("message")))
				if err != nil {
					f.Fatal(err)
				}
				add(opSignDigest, marshal(&providerpb.SignResponse{Signature: sig}), 0, false, 0)
			}
			continue
		case provider.UseMAC:
			tag, err := p.MAC(ctx, ref, g.Handle, []byte("message"))
			if err != nil {
				f.Fatal(err)
			}
			add(opMAC, marshal(&providerpb.MacResponse{Tag: tag}), 0, false, 7)
			continue
		}
		sealed, err := p.Seal(ctx, ref, g.Handle, []byte("plaintext"), []byte("aad"))
		if err != nil {
			f.Fatal(err)
		}
		add(opSeal, marshal(&providerpb.SealResponse{Sealed: sealed}), 0, false, 9)
		add(opOpen, marshal(&providerpb.OpenResponse{Plaintext: []byte("plaintext")}), 0, false, uint16(len(sealed)))
	}
	// HPKE decryption and import: well-formed replies (a plaintext of the
	// ciphertext less its tag; a wrapping key's X25519 public key and
	// handle; an imported key's handle).
	add(opDecrypt, marshal(&providerpb.DecryptResponse{Plaintext: []byte("plaintext")}), 0, false, 9+hpkeTagSize)
	add(opDecrypt, marshal(&providerpb.DecryptResponse{}), 0, false, hpkeTagSize)
	add(opNewImportKey, marshal(&providerpb.GenerateResponse{PublicKey: bytes.Repeat([]byte{9}, 32), Handle: []byte("KSI1 sixteen bytes..")}), 0, false, 0)
	add(opImport, marshal(&providerpb.GenerateResponse{Handle: []byte("imported handle")}), 0, false, 0)
	info, err := p.Info(ctx)
	if err != nil {
		f.Fatal(err)
	}
	add(opInfo, marshal(infoToWire(info)), 0, false, 0)
	add(opDestroy, nil, 0, false, 0)
	// KEK rotation: a next KEK (whose bytes, read again as an Info, name
	// no provider: refused), a handle, a commit.
	add(opBeginKEK, marshal(&providerpb.BeginKEKRotationResponse{NextKek: "fedcba9876543210"}), 0, false, 0)
	add(opRewrap, marshal(&providerpb.RewrapHandleResponse{Handle: []byte("rewrapped handle")}), 0, false, 0)
	add(opCommitKEK, nil, 0, false, 0)
	// Error statuses of every code, as a plugin's Serve sends them.
	for _, c := range provider.Codes() {
		st, ok := status.FromError(rpcerr.ToStatus(provider.Errorf(c, "plugin says no")))
		if !ok {
			f.Fatal("ToStatus did not give a status")
		}
		add(uint8(c)%numOps, marshal(st.Proto()), 0, true, 16)
	}
	// Payload sizes at the bounds.
	add(opSign, nil, provider.MaxSignature, false, 1)
	add(opSign, nil, provider.MaxSignature+1, false, 1)
	add(opGenerate, nil, provider.MaxHandle+1, false, 0)
	add(opRewrap, nil, provider.MaxHandle, false, 0)
	add(opRewrap, nil, provider.MaxHandle+1, false, 0)
	add(opBeginKEK, nil, provider.MaxKEKFingerprint+1, false, 0)
	add(opSeal, nil, 16+provider.MaxSealOverhead, false, 16)
	add(opSeal, nil, 16+provider.MaxSealOverhead+1, false, 16)
	add(opOpen, nil, 100, false, 100)
	add(opSignDigest, nil, provider.MaxSignature, false, 0)
	add(opSignDigest, nil, provider.MaxSignature+1, false, 0)
	add(opMAC, nil, provider.MaxMAC, false, 1)
	add(opMAC, nil, provider.MaxMAC+1, false, 1)
	add(opMAC, nil, 0, false, uint16(provider.MaxMACMessage%(1<<16)))
	add(opDecrypt, nil, 100-hpkeTagSize, false, 100)
	add(opDecrypt, nil, 100-hpkeTagSize+1, false, 100)
	add(opDecrypt, nil, 1, false, hpkeTagSize-1)
	add(opNewImportKey, nil, provider.MaxHandle, false, 0)
	add(opNewImportKey, nil, provider.MaxHandle+1, false, 0)
	add(opImport, nil, provider.MaxPublicKey+1, false, 0)
	if seeds == 0 {
		f.Fatal("empty seed set")
	}
	f.Fuzz(func(t *testing.T, op uint8, reply []byte, size uint32, asStatus bool, inLen uint16) {
		c := &replyClient{reply: reply, size: int(size % (2*provider.MaxSealed + 2)), asStatus: asStatus}
		stubCfg := stubConfig{label: "plugin fuzz", callTimeout: time.Minute, maxReply: DefaultMaxReply}
		const kek = "0123456789abcdef"
		r := newRemote(newStub(c, stubCfg), provider.Info{Name: "fuzz", Version: "1", Secure: true,
			Algorithms: []provider.Algorithm{provider.Ed25519, provider.XChaCha20Poly1305, provider.ECDSAP256, provider.HMACSHA256, provider.HPKEX25519},
			KEKs:       []string{kek}}, true)
		signRef, sealRef := fuzzRef(t, provider.Ed25519), fuzzRef(t, provider.XChaCha20Poly1305)
		digestRef, macRef := fuzzRef(t, provider.ECDSAP256), fuzzRef(t, provider.HMACSHA256)
		// The wrapping key's suite is not announced: it need not be.
		hpkeRef, wrapRef := fuzzRef(t, provider.HPKEX25519), fuzzRef(t, provider.HPKEMLKEM768X25519)
		in := bytes.Repeat([]byte{'i'}, int(inLen)%(provider.MaxSealed+1))
		h := provider.Handle("handle")
		var (
			out []byte
			err error
		)
		switch op % numOps {
		case opGenerate:
			var g provider.Generated
			g, err = r.Generate(ctx, signRef)
			if err == nil && (len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle || len(g.PublicKey) > provider.MaxPublicKey) {
				t.Fatalf("accepted a handle of %d bytes and a public key of %d", len(g.Handle), len(g.PublicKey))
			}
		case opSign:
			msg := in[:min(len(in), provider.MaxSignMessage)]
			out, err = r.Sign(ctx, signRef, h, msg)
			if err == nil && (len(out) == 0 || len(out) > provider.MaxSignature) {
				t.Fatalf("accepted a signature of %d bytes", len(out))
			}
		case opSeal:
			pt := in[:min(len(in), provider.MaxSealPlaintext)]
			out, err = r.Seal(ctx, sealRef, h, pt, []byte("aad"))
			if err == nil && (len(out) <= len(pt) || len(out) > len(pt)+provider.MaxSealOverhead) {
				t.Fatalf("accepted a sealed blob of %d bytes for %d of plaintext", len(out), len(pt))
			}
		case opOpen:
			out, err = r.Open(ctx, sealRef, h, in, []byte("aad"))
			if err == nil && (out == nil || len(out) >= len(in) || len(out) > provider.MaxSealPlaintext) {
				t.Fatalf("accepted a plaintext of %d bytes (nil %v) for %d sealed", len(out), out == nil, len(in))
			}
		case opDestroy:
			err = r.Destroy(ctx, signRef, h)
		case opInfo:
			var i provider.Info
			i, _, err = r.stub.fetchInfo(ctx)
			if err == nil {
				if cerr := i.Check(); cerr != nil {
					t.Fatalf("accepted an Info that fails Check: %v", cerr)
				}
			}
		case opBeginKEK:
			var next string
			next, err = r.beginKEKRotation(ctx)
			if keks := r.current().KEKs; err == nil && (provider.CheckKEKFingerprint(next) != nil || keks[0] != next) {
				t.Fatalf("accepted a next KEK %q with KEKs %q after it", next, keks)
			}
			if err != nil && !slices.Equal(r.current().KEKs, []string{kek}) {
				t.Fatalf("a failed Begin changed the KEKs to %q", r.current().KEKs)
			}
		case opRewrap:
			out, err = r.rewrapHandle(ctx, signRef, h)
			if err == nil && (len(out) == 0 || len(out) > provider.MaxHandle) {
				t.Fatalf("accepted a rewrapped handle of %d bytes", len(out))
			}
		case opSignDigest:
			out, err = r.SignDigest(ctx, digestRef, h, crypto.SHA256, bytes.Repeat([]byte{'d'}, 32))
			if err == nil && (len(out) == 0 || len(out) > provider.MaxSignature) {
				t.Fatalf("accepted a digest signature of %d bytes", len(out))
			}
		case opMAC:
			msg := in[:min(len(in), provider.MaxMACMessage)]
			out, err = r.MAC(ctx, macRef, h, msg)
			if err == nil && (len(out) == 0 || len(out) > provider.MaxMAC) {
				t.Fatalf("accepted a tag of %d bytes", len(out))
			}
		case opDecrypt:
			ct := in[:min(len(in), provider.MaxHPKECiphertext)]
			out, err = r.Decrypt(ctx, hpkeRef, h, bytes.Repeat([]byte{'e'}, 32), ct, []byte("info"), []byte("aad"))
			if err == nil && (out == nil || len(out) != len(ct)-hpkeTagSize) {
				t.Fatalf("accepted a plaintext of %d bytes (nil %v) for a ciphertext of %d", len(out), out == nil, len(ct))
			}
		case opNewImportKey:
			var g provider.Generated
			g, err = r.NewImportKey(ctx, wrapRef)
			if err == nil && (len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle || len(g.PublicKey) == 0 || len(g.PublicKey) > provider.MaxPublicKey) {
				t.Fatalf("accepted a wrapping key handle of %d bytes and a public key of %d", len(g.Handle), len(g.PublicKey))
			}
		case opImport:
			var g provider.Generated
			g, err = r.Import(ctx, sealRef, wrapRef, h, bytes.Repeat([]byte{'e'}, 32), in[:min(len(in), provider.MaxImportWrapped)])
			if err == nil && (len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle || len(g.PublicKey) > provider.MaxPublicKey) {
				t.Fatalf("accepted an imported handle of %d bytes and a public key of %d", len(g.Handle), len(g.PublicKey))
			}
		case opCommitKEK:
			err = r.commitKEKRotation(ctx)
			if keks := r.current().KEKs; !slices.Equal(keks, []string{kek}) {
				t.Fatalf("KEKs after a commit (error %v) = %q; want [%s]", err, keks, kek)
			}
		}
		if err != nil {
			code, ok := provider.CodeOf(err)
			if !ok || !code.Valid() {
				t.Fatalf("error %q has no valid keystored code", err)
			}
			if len(err.Error()) > 4*rpcerr.MaxMessage {
				t.Fatalf("error message of %d bytes: a plugin's message must be bounded", len(err.Error()))
			}
			if out != nil {
				t.Fatal("output returned with an error")
			}
			return
		}
		if asStatus {
			var st spb.Status
			if proto.Unmarshal(reply, &st) != nil || st.GetCode() != 0 {
				t.Fatal("a failed call was accepted")
			}
		}
	})
}

// fuzzRef returns a ref of algorithm a for provider "fuzz".
func fuzzRef(t testing.TB, a provider.Algorithm) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID("app", "fuzz", "key")
	if err != nil {
		t.Fatal(err)
	}
	use := provider.UseSign
	if s, err := alg.Default().Lookup(a); err == nil {
		use = s.Use
	}
	return provider.KeyRef{ID: id, Version: 1, Algorithm: a, Use: use, Provider: "fuzz"}
}

// digestOf returns the digest of msg under h.
func digestOf(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	_, _ = d.Write(msg) // a hash.Hash's Write never fails
	return d.Sum(nil)
}

package client

import (
	"context"
	"crypto"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// rawServerCodec hands the fake daemon's replies to the wire as they are.
type rawServerCodec struct{}

type rawBytes struct{ b []byte }

func (rawServerCodec) Name() string { return "proto" }

func (rawServerCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawBytes).b)}, nil
}

func (rawServerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawBytes).b = data.Materialize()
	return nil
}

// replyDaemon is a fake daemon on a Unix socket that answers every call
// with the reply set last: message bytes, or an error status decoded from
// bytes, plus header metadata.
type replyDaemon struct {
	mu       sync.Mutex
	reply    []byte
	asStatus bool
	insecure bool
}

func (d *replyDaemon) set(reply []byte, asStatus, insecure bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reply, d.asStatus, d.insecure = reply, asStatus, insecure
}

func (d *replyDaemon) handle(_ any, stream grpc.ServerStream) error {
	var req rawBytes
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	d.mu.Lock()
	reply, asStatus, insec := d.reply, d.asStatus, d.insecure
	d.mu.Unlock()
	if insec {
		if err := stream.SetHeader(metadata.Pairs(InsecureHeader, "true")); err != nil {
			return err
		}
	}
	if asStatus {
		var st spb.Status
		if proto.Unmarshal(reply, &st) != nil {
			return status.Error(13, "undecodable status")
		}
		if err := status.ErrorProto(&st); err != nil {
			return err
		}
		// A status with code OK: an empty reply.
		reply = nil
	}
	return stream.SendMsg(&rawBytes{b: reply})
}

// startReplyDaemon starts a replyDaemon and returns it with a client
// connected to it; both stop when tb ends.
func startReplyDaemon(tb testing.TB) (*replyDaemon, *Client) {
	tb.Helper()
	d := &replyDaemon{}
	dir, err := os.MkdirTemp("", "kcf")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			tb.Error(err)
		}
	})
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawServerCodec{}), grpc.UnknownServiceHandler(d.handle))
	served := make(chan error, 1)
	go func() { served <- gs.Serve(l) }()
	tb.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			tb.Error(err)
		}
	})
	c, err := Dial(context.Background(), sock, WithDialTimeout(30*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return d, c
}

// FuzzResponses answers every client call with arbitrary bytes (as the
// response message, or as an error status with any code, message and
// details) and checks what the client makes of them: a typed error (a
// valid keystored code), or a result that keeps the API's promises
// (non-empty signatures and sealed data, versions not 0, one batch result
// per item, states within their enums), never a panic. Seeded with the
// genuine responses of every call and keystored statuses of every code.
func FuzzResponses(f *testing.F) {
	d, c := startReplyDaemon(f)
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	ts := timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	meta := &keystorev1.KeyMetadata{Id: "app/sig/k", Algorithm: "ed25519", Uses: []string{"sign"}, State: keystorev1.KeyState_KEY_STATE_ACTIVE,
		CurrentVersion: 1, Provider: "software", Created: ts, Versions: []*keystorev1.KeyVersion{
			{Version: 1, State: keystorev1.VersionState_VERSION_STATE_PRIMARY, PublicKey: make([]byte, 32), Created: ts}}}
	genuine := [][]byte{
		marshal(&keystorev1.CreateKeyResponse{Key: meta}),
		marshal(&keystorev1.ListKeysResponse{Keys: []*keystorev1.KeyMetadata{meta}, NextPageToken: "app/sig/k",
			Unreadable: []*keystorev1.UnreadableKey{{Id: "app/sig/bad", Error: &keystorev1.ErrorDetail{Reason: "EIO", Message: "corrupted (EIO)"}}}}),
		marshal(&keystorev1.PublicKeyResponse{Key: "app/sig/k", Version: 1, Algorithm: "ed25519", PublicKey: make([]byte, 32)}),
		marshal(&keystorev1.SignResponse{Key: "app/sig/k", Version: 1, Signature: make([]byte, 64)}),
		marshal(&keystorev1.VerifyResponse{Valid: true}),
		marshal(&keystorev1.SealResponse{Sealed: make([]byte, 60), Version: 2}),
		marshal(&keystorev1.UnsealResponse{Plaintext: []byte("pt"), Version: 2}),
		marshal(&keystorev1.SignBatchResponse{Results: []*keystorev1.SignResult{
			{Response: &keystorev1.SignResponse{Key: "app/sig/k", Version: 1, Signature: make([]byte, 64)}},
			{Error: &keystorev1.ErrorDetail{Reason: "ENOENT", Message: "no key (ENOENT)"}}}}),
		marshal(&keystorev1.SealBatchResponse{Results: []*keystorev1.SealResult{
			{Response: &keystorev1.SealResponse{Sealed: make([]byte, 60), Version: 1}}, {}}}),
		marshal(&keystorev1.UnsealBatchResponse{Results: []*keystorev1.UnsealResult{
			{Response: &keystorev1.UnsealResponse{Version: 1}}, {Error: &keystorev1.ErrorDetail{Reason: "EBADMSG"}}}}),
		marshal(&keystorev1.GetValueResponse{Value: []byte("value")}),
		marshal(&keystorev1.ListValuesResponse{Names: []string{"a", "b"}, NextPageToken: "b"}),
		marshal(&keystorev1.ListAnchorsResponse{Anchors: []*keystorev1.TrustAnchor{{Name: "release", Algorithm: "ed25519", PublicKey: make([]byte, 32), Fingerprint: "sha256:00"}}}),
		marshal(&keystorev1.VerifyAnchorResponse{Valid: true}),
		marshal(&keystorev1.MacResponse{Key: "app/mac/k", Version: 1, Tag: make([]byte, 32)}),
		marshal(&keystorev1.VerifyMacResponse{Valid: true}),
		marshal(&keystorev1.MacBatchResponse{Results: []*keystorev1.MacResult{
			{Response: &keystorev1.MacResponse{Key: "app/mac/k", Version: 1, Tag: make([]byte, 32)}},
			{Error: &keystorev1.ErrorDetail{Reason: "EPERM", Message: "not a mac key (EPERM)"}}}}),
		marshal(&keystorev1.VerifyMacBatchResponse{Results: []*keystorev1.VerifyMacResult{
			{Response: &keystorev1.VerifyMacResponse{Valid: true}}, {Response: &keystorev1.VerifyMacResponse{}}}}),
		marshal(&keystorev1.PublicKeyResponse{Key: "app/sig/ec", Version: 2, Algorithm: "ecdsa-p256-sha256", PublicKey: append([]byte{4}, make([]byte, 64)...)}),
		marshal(&keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Plaintext: make([]byte, 32), Sealed: make([]byte, 90)}),
		marshal(&keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Sealed: make([]byte, 90)}),
		marshal(&keystorev1.DecryptResponse{Key: "app/inbox/k", Version: 1, Plaintext: []byte("pt")}),
		marshal(&keystorev1.PublicKeyResponse{Key: "app/inbox/k", Version: 1, Algorithm: "hpke-x25519-sha256-chacha20poly1305", PublicKey: x25519Point, KemId: 0x20, KdfId: 1, AeadId: 3}),
		marshal(&keystorev1.GetImportParametersResponse{Key: "app/box/k", Algorithm: "aes-256-gcm", Token: "kit1.AAAAAAAAAAAAAAAAAAAAAA",
			WrappingAlgorithm: "hpke-x25519-sha256-chacha20poly1305", KemId: 0x20, KdfId: 1, AeadId: 3, PublicKey: x25519Point,
			Info: []byte("keystored import v1\x00app/box/k\x00aes-256-gcm"), Expires: ts}),
		marshal(&keystorev1.ImportKeyResponse{Key: meta}),
		nil,
	}
	seeds := 0
	for i, g := range genuine {
		for op := 0; op < numClientOps; op++ {
			f.Add(uint8(op), g, false, i%2 == 0)
			seeds++
		}
	}
	for _, code := range provider.Codes() {
		st, _ := status.FromError(rpcerr.ToStatus(provider.Errorf(code, "daemon says no")))
		f.Add(uint8(code)%numClientOps, marshal(st.Proto()), true, false)
		seeds++
	}
	if seeds == 0 {
		f.Fatal("empty seed set")
	}
	f.Fuzz(func(t *testing.T, op uint8, reply []byte, asStatus, insec bool) {
		d.set(reply, asStatus, insec)
		ctx := context.Background()
		err := clientOp(t, ctx, c, int(op)%numClientOps)
		if err != nil {
			code, ok := provider.CodeOf(err)
			if !ok || !code.Valid() {
				t.Fatalf("op %d: error %q has no valid keystored code", op%numClientOps, err)
			}
		}
		if insec && err == nil && !c.Insecure() {
			t.Fatal("the insecure header was not noticed")
		}
	})
}

// numClientOps is the number of operations clientOp knows.
const numClientOps = 36

// x25519Point is a valid X25519 public key (RFC 7748's Alice).
var x25519Point = []byte{
	0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a,
	0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
}

// clientOp runs client operation op and checks the promises of its result.
func clientOp(t *testing.T, ctx context.Context, c *Client, op int) error {
	checkKey := func(k KeyInfo, err error) error {
		if err != nil {
			return err
		}
		if k.State > KeyDestroyed {
			t.Fatalf("key state %d out of range", k.State)
		}
		for _, v := range k.Versions {
			if v.State > VersionDestroyed {
				t.Fatalf("version state %d out of range", v.State)
			}
		}
		return nil
	}
	switch op {
	case 0:
		return checkKey(c.Create(ctx, "sig/k", CreateOptions{Algorithm: Ed25519}))
	case 1:
		return checkKey(c.Get(ctx, "sig/k"))
	case 2:
		p, err := c.List(ctx, ListOptions{PageSize: 2})
		if err == nil {
			for _, k := range p.Keys {
				if k.State > KeyDestroyed {
					t.Fatalf("listed key state %d out of range", k.State)
				}
			}
			for _, u := range p.Unreadable {
				if code, ok := provider.CodeOf(u.Err); u.Err == nil || !ok || !code.Valid() {
					t.Fatalf("unreadable key %q with error %v", u.ID, u.Err)
				}
			}
		}
		return err
	case 3:
		return checkKey(c.Rotate(ctx, "sig/k"))
	case 4:
		return checkKey(c.Revoke(ctx, "sig/k"))
	case 5:
		return checkKey(c.RevokeVersion(ctx, "sig/k", 1))
	case 6:
		return checkKey(c.Destroy(ctx, "sig/k"))
	case 7:
		return checkKey(c.SetPolicy(ctx, "sig/k", Policy{MinDecryptionVersion: 1}))
	case 8:
		p, err := c.PublicKey(ctx, "sig/k", 0)
		if err == nil && (len(p.Raw) == 0 || p.Version == 0) {
			t.Fatalf("public key %+v accepted", p)
		}
		return err
	case 9:
		s, err := c.Sign(ctx, "sig/k", []byte("m"))
		if err == nil && (len(s.Signature) == 0 || s.Version == 0) {
			t.Fatalf("signature %+v accepted", s)
		}
		return err
	case 10:
		return c.Verify(ctx, "sig/k", 1, []byte("m"), make([]byte, 64))
	case 11:
		s, err := c.Seal(ctx, "box/k", []byte("pt"), nil)
		if err == nil && (len(s.Data) == 0 || s.Version == 0) {
			t.Fatalf("sealed %+v accepted", s)
		}
		return err
	case 12:
		u, err := c.Unseal(ctx, "box/k", make([]byte, 60), nil)
		if err == nil && (u.Plaintext == nil || u.Version == 0) {
			t.Fatalf("unsealed %+v accepted", u)
		}
		return err
	case 13:
		s, err := c.Rewrap(ctx, "box/k", make([]byte, 60), nil)
		if err == nil && (len(s.Data) == 0 || s.Version == 0) {
			t.Fatalf("rewrapped %+v accepted", s)
		}
		return err
	case 14:
		rs, err := c.SignBatch(ctx, []SignItem{{Key: "sig/k", Message: []byte("a")}, {Key: "sig/k", Message: []byte("b")}})
		if err == nil {
			if len(rs) != 2 {
				t.Fatalf("%d results for 2 items", len(rs))
			}
			for _, r := range rs {
				if r.Err == nil && (len(r.Signature.Signature) == 0 || r.Signature.Version == 0) {
					t.Fatalf("batch signature %+v accepted", r.Signature)
				}
				checkItemErr(t, r.Err)
			}
		}
		return err
	case 15:
		rs, err := c.SealBatch(ctx, []SealItem{{Key: "box/k", Plaintext: []byte("a")}, {Key: "box/k", Plaintext: []byte("b")}})
		if err == nil {
			if len(rs) != 2 {
				t.Fatalf("%d results for 2 items", len(rs))
			}
			for _, r := range rs {
				if r.Err == nil && (len(r.Sealed.Data) == 0 || r.Sealed.Version == 0) {
					t.Fatalf("batch sealed %+v accepted", r.Sealed)
				}
				checkItemErr(t, r.Err)
			}
		}
		return err
	case 16:
		rs, err := c.UnsealBatch(ctx, []UnsealItem{{Key: "box/k", Sealed: []byte("a")}, {Key: "box/k", Sealed: []byte("b")}})
		if err == nil {
			if len(rs) != 2 {
				t.Fatalf("%d results for 2 items", len(rs))
			}
			for _, r := range rs {
				if r.Err == nil && (r.Unsealed.Plaintext == nil || r.Unsealed.Version == 0) {
					t.Fatalf("batch unsealed %+v accepted", r.Unsealed)
				}
				checkItemErr(t, r.Err)
			}
		}
		return err
	case 17:
		return c.PutValue(ctx, "v", []byte("x"))
	case 18:
		_, err := c.GetValue(ctx, "v")
		return err
	case 19:
		return c.DeleteValue(ctx, "v")
	case 20:
		_, err := c.ListValues(ctx, 10, "")
		return err
	case 21:
		_, err := c.ListAnchors(ctx)
		return err
	case 22:
		return c.VerifyAnchor(ctx, "release", []byte("m"), make([]byte, 64))
	case 23:
		s, err := c.SignWith(ctx, "sig/k", 2, SignInput{Hash: crypto.SHA256, Digest: make([]byte, 32)})
		if err == nil && (len(s.Signature) == 0 || s.Version != 2) {
			t.Fatalf("signature %+v accepted for version 2", s)
		}
		return err
	case 24:
		m, err := c.MAC(ctx, "mac/k", []byte("m"))
		if err == nil && (len(m.Tag) == 0 || m.Version == 0) {
			t.Fatalf("tag %+v accepted", m)
		}
		return err
	case 25:
		return c.VerifyMAC(ctx, "mac/k", 1, []byte("m"), make([]byte, 32))
	case 26:
		rs, err := c.MACBatch(ctx, []MACItem{{Key: "mac/k", Message: []byte("a")}, {Key: "mac/k", Message: []byte("b")}})
		if err == nil {
			if len(rs) != 2 {
				t.Fatalf("%d results for 2 items", len(rs))
			}
			for _, r := range rs {
				if r.Err == nil && (len(r.Tag) == 0 || r.Version == 0) {
					t.Fatalf("batch tag %+v accepted", r.MACTag)
				}
				checkItemErr(t, r.Err)
			}
		}
		return err
	case 27:
		rs, err := c.VerifyMACBatch(ctx, []VerifyMACItem{{Key: "mac/k", Version: 1}, {Key: "mac/k", Version: 2}})
		if err == nil {
			if len(rs) != 2 {
				t.Fatalf("%d results for 2 items", len(rs))
			}
			for _, r := range rs {
				checkItemErr(t, r)
			}
		}
		return err
	case 28:
		rs, err := c.SignBatch(ctx, []SignItem{{Key: "sig/k", Version: 3, Hash: crypto.SHA256, Digest: make([]byte, 32)}, {Key: "sig/k", Hash: crypto.SHA256}})
		if err == nil {
			if len(rs) != 2 {
				t.Fatalf("%d results for 2 items", len(rs))
			}
			if rs[0].Err == nil && rs[0].Signature.Version != 3 {
				t.Fatalf("batch signature %+v accepted for version 3", rs[0].Signature)
			}
			if rs[1].Err == nil {
				t.Fatal("an item without a digest was signed")
			}
			checkItemErr(t, rs[0].Err)
		}
		return err
	case 29:
		s, err := c.Signer(ctx, "sig/ec")
		if err == nil {
			if s.Public() == nil || s.KeyVersion().Version == 0 {
				t.Fatalf("signer %+v accepted", s.KeyVersion())
			}
			_, err = s.Sign(nil, make([]byte, 32), crypto.SHA256)
		}
		return err
	case 30:
		d, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{}, nil)
		if err == nil && (len(d.Plaintext) != 32 || len(d.Sealed) == 0 || d.Version == 0) {
			t.Fatalf("data key %v accepted", d)
		}
		return err
	case 31:
		d, err := c.GenerateDataKeyWithoutPlaintext(ctx, "box/k", DataKeySpec{Bytes: 16}, nil)
		if err == nil && (d.Plaintext != nil || len(d.Sealed) == 0 || d.Version == 0) {
			t.Fatalf("data key %v accepted", d)
		}
		return err
	case 32:
		d, err := c.Decrypt(ctx, "inbox/k", 1, HPKEMessage{Enc: make([]byte, 32), Ciphertext: make([]byte, 18)})
		if err == nil && (len(d.Plaintext) != 2 || d.Version != 1) {
			t.Fatalf("decrypted %+v accepted", d)
		}
		return err
	case 33:
		p, err := c.PublicKey(ctx, "inbox/k", 0)
		if err == nil {
			_, known := HPKESuiteOf(p.Algorithm)
			u := AlgorithmUse(p.Algorithm)
			partial := !p.Suite.IsZero() && (p.Suite.KEM == 0 || p.Suite.KDF == 0 || p.Suite.AEAD == 0)
			if p.Algorithm == "" || partial || known == p.Suite.IsZero() && u != 0 || u != 0 && u != UseAsymmetricDecrypt && !p.Suite.IsZero() {
				t.Fatalf("public key %+v accepted", p)
			}
		}
		if err == nil && !p.Suite.IsZero() {
			_, _, err = HPKESeal(p, nil, nil, []byte("m"))
		}
		return err
	case 34:
		p, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{})
		if err == nil {
			if p.Token == "" || p.Suite.IsZero() || len(p.PublicKey) == 0 || p.Algorithm != AES256GCM {
				t.Fatalf("import parameters %+v accepted", p)
			}
			_, _, err = WrapForImport(p, make([]byte, 32))
		}
		return err
	case 35:
		return checkKey(c.ImportKey(ctx, "box/k", AES256GCM, make([]byte, 32)))
	}
	t.Fatalf("no operation %d", op)
	return nil
}

func checkItemErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if code, ok := provider.CodeOf(err); !ok || !code.Valid() {
		t.Fatalf("item error %q has no valid code", err)
	}
}

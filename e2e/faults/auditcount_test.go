package faults

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/server"
)

// auditCountRequests is the number of requests of the mixed run (setup
// requests come on top).
const auditCountRequests = 10_240

// tally counts the requests a client made by audit operation and result,
// as the daemon should record them.
type tally struct {
	mu sync.Mutex
	n  map[string]int // "op result"
}

func (ta *tally) add(method string, err error) {
	result := "ok"
	if err != nil {
		code, ok := provider.CodeOf(rpcerr.FromStatus(err))
		if !ok {
			code = provider.EIO
		}
		result = code.String()
	}
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.n[server.OpName(method)+" "+result]++
}

// interceptor counts every call made on the connection.
func (ta *tally) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	ta.add(method, err)
	return err
}

// rawCodec puts raw bytes on the wire, to send malformed messages.
type rawCodec struct{}

type rawMsg struct{ b []byte }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMsg).b = data.Materialize()
	return nil
}

// auditConfig writes a config file mapping this process's uid to app
// "alpha" (not an operator; other uids denied) with one trust anchor,
// and returns its path and the anchor's private key. The uid's rate and
// its budget of bytes in flight are raised out of the run's reach: a
// request refused for either is counted into one record per interval
// (e2e/dos tests that), and the eight workers' batches, each reserving
// up to twice the 8 MiB batch limit while it is received, can pass the
// default 32 MiB per uid.
func auditConfig(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	dir := t.TempDir()
	anchors := filepath.Join(dir, "anchors")
	if err := os.Mkdir(anchors, 0o700); err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(anchors, "release.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("unmapped = \"deny\"\noperators = []\nanchors_dir = %q\n\n[apps]\n%d = \"alpha\"\n\n"+
		"[limits]\ninflight_bytes = %d\ninflight_bytes_per_uid = %d\nrate_per_uid = 1000000\nburst_per_uid = 1000000\n",
		anchors, os.Getuid(), 1<<30, 1<<30)
	path := filepath.Join(dir, "keystored.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, priv
}

// mixed is one kind of request of the mixed run.
type mixed struct {
	weight int
	call   func(ctx context.Context, g *gen) error
}

// gen holds what the mixed requests need.
type gen struct {
	conn    *grpc.ClientConn
	keys    keystorev1.KeysClient
	store   keystorev1.StoreClient
	anchors keystorev1.TrustAnchorsClient
	rng     *rand.Rand
	created *atomic.Int64
	sig     *keystorev1.SignResponse
	sealed  *keystorev1.SealResponse
	tag     *keystorev1.MacResponse
	anchor  ed25519.PrivateKey
}

var msg = []byte("an audited message")

// mix: granted, denied (another app's keys), malformed (names, versions,
// sizes, wire bytes), not found, refused by the lifecycle, batches, an
// unknown method and messages the transport refuses.
var mix = []mixed{
	{20, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Sign(ctx, &keystorev1.SignRequest{Key: keySig, Message: msg})
		return err
	}},
	{8, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Verify(ctx, &keystorev1.VerifyRequest{Key: keySig, Version: int64(g.sig.GetVersion()), Message: msg, Signature: g.sig.GetSignature()})
		return err
	}},
	{10, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Seal(ctx, &keystorev1.SealRequest{Key: keyBox, Plaintext: msg, Aad: []byte("a")})
		return err
	}},
	{8, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: keyBox, Sealed: g.sealed.GetSealed(), Aad: []byte("a")})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error { // tampered: EBADMSG
		s := bytes.Clone(g.sealed.GetSealed())
		s[len(s)-1] ^= 1
		_, err := g.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: keyBox, Sealed: s, Aad: []byte("a")})
		return err
	}},
	{5, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: keySig})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: "p/missing"})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error {
		_, err := g.keys.List(ctx, &keystorev1.ListKeysRequest{})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error {
		_, err := g.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: keySig})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error {
		name := "p/c" + strconv.FormatInt(g.created.Add(1), 10)
		_, err := g.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: name, Algorithm: string(client.Ed25519)})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error { // EALREADY
		_, err := g.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: keySig})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: keyOld})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error { // EKEYREVOKED
		_, err := g.keys.Sign(ctx, &keystorev1.SignRequest{Key: keyGone, Message: msg})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error { // EPERM: a sign key cannot seal
		_, err := g.keys.Seal(ctx, &keystorev1.SealRequest{Key: keySig, Plaintext: msg})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error { // a named version
		_, err := g.keys.Sign(ctx, &keystorev1.SignRequest{Key: keySig, Version: 1, Message: msg})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error { // EPERM: ed25519 signs whole messages only
		d := sha256.Sum256(msg)
		_, err := g.keys.Sign(ctx, &keystorev1.SignRequest{Key: keySig, Digest: d[:], DigestHash: "sha256"})
		return err
	}},
	// MAC.
	{8, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Mac(ctx, &keystorev1.MacRequest{Key: keyMAC, Message: msg})
		return err
	}},
	{5, func(ctx context.Context, g *gen) error { // valid, or (a flipped tag) valid=false: both OK
		tag := bytes.Clone(g.tag.GetTag())
		if g.rng.IntN(3) == 0 {
			tag[0] ^= 1
		}
		_, err := g.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: keyMAC, Version: int64(g.tag.GetVersion()), Message: msg, Tag: tag})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error { // EPERM: a sign key cannot MAC
		_, err := g.keys.Mac(ctx, &keystorev1.MacRequest{Key: keySig, Message: msg})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error { // EMSGSIZE: over 1 MiB
		_, err := g.keys.Mac(ctx, &keystorev1.MacRequest{Key: keyMAC, Message: make([]byte, provider.MaxMACMessage+1)})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error { // EINVAL: no version
		_, err := g.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: keyMAC, Message: msg, Tag: g.tag.GetTag()})
		return err
	}},
	// Denied: another app's keys, whether they exist or not.
	{2, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Mac(ctx, &keystorev1.MacRequest{Key: "beta/p/mac", Message: msg})
		return err
	}},
	{6, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Sign(ctx, &keystorev1.SignRequest{Key: "beta/p/sig", Message: msg})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: "beta/p/x"})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error {
		_, err := g.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: "beta/p/sig"})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error {
		_, err := g.keys.List(ctx, &keystorev1.ListKeysRequest{App: "beta"})
		return err
	}},
	// Malformed.
	{6, func(ctx context.Context, g *gen) error {
		bad := []string{"", "../x", "p/../x", "P/x", "p/x/y/z", "p/x\x00", "p/x\n", "p/%2e%2e", "p/ｘ", strings.Repeat("a", 300)}
		_, err := g.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: bad[g.rng.IntN(len(bad))]})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error {
		versions := []int64{-1, 0, 1 << 32, -(1 << 62)}
		_, err := g.keys.Verify(ctx, &keystorev1.VerifyRequest{Key: keySig, Version: versions[g.rng.IntN(len(versions))], Message: msg, Signature: g.sig.GetSignature()})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error { // EMSGSIZE: over 64 KiB
		_, err := g.keys.Sign(ctx, &keystorev1.SignRequest{Key: keySig, Message: make([]byte, 64<<10+1)})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error { // an unknown algorithm
		_, err := g.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "p/z", Algorithm: "rsa-512"})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error { // wire bytes that are no protobuf message
		wire := [][]byte{{0xff}, {0x0a, 0x05, 'p'}, {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}}
		var out rawMsg
		return g.conn.Invoke(ctx, keystorev1.Keys_Sign_FullMethodName, &rawMsg{b: wire[g.rng.IntN(len(wire))]}, &out, grpc.ForceCodecV2(rawCodec{}))
	}},
	{1, func(ctx context.Context, g *gen) error { // ENOTSUP: no such method
		var out rawMsg
		return g.conn.Invoke(ctx, "/keystore.v1.Keys/Export", &rawMsg{}, &out, grpc.ForceCodecV2(rawCodec{}))
	}},
	// Batches: one record each, whatever their items.
	{4, func(ctx context.Context, g *gen) error {
		_, err := g.keys.SignBatch(ctx, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
			{Key: keySig, Message: msg}, {Key: keyGone, Message: msg}, {Key: "beta/p/sig", Message: msg}, {Key: "../x"},
		}})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error {
		_, err := g.keys.SealBatch(ctx, &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{
			{Key: keyBox, Plaintext: msg}, {Key: keySig, Plaintext: msg},
		}})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error {
		_, err := g.keys.UnsealBatch(ctx, &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{
			{Key: keyBox, Sealed: g.sealed.GetSealed(), Aad: []byte("a")}, {Key: keyBox, Sealed: []byte("junk")},
		}})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error {
		_, err := g.keys.MacBatch(ctx, &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{
			{Key: keyMAC, Message: msg}, {Key: keySig, Message: msg}, {Key: "beta/p/mac", Message: msg},
		}})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error {
		_, err := g.keys.VerifyMacBatch(ctx, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
			{Key: keyMAC, Version: int64(g.tag.GetVersion()), Message: msg, Tag: g.tag.GetTag()}, {Key: keyMAC, Version: 1, Message: msg},
			{Key: "p/missing", Version: 1, Message: msg, Tag: g.tag.GetTag()},
		}})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error { // EINVAL: an empty batch
		_, err := g.keys.SignBatch(ctx, &keystorev1.SignBatchRequest{})
		return err
	}},
	// Store.
	{3, func(ctx context.Context, g *gen) error {
		_, err := g.store.Put(ctx, &keystorev1.PutValueRequest{Name: "n" + strconv.Itoa(g.rng.IntN(8)), Value: msg})
		return err
	}},
	{3, func(ctx context.Context, g *gen) error {
		_, err := g.store.Get(ctx, &keystorev1.GetValueRequest{Name: "n" + strconv.Itoa(g.rng.IntN(8))})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error {
		_, err := g.store.Delete(ctx, &keystorev1.DeleteValueRequest{Name: "n" + strconv.Itoa(g.rng.IntN(8))})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error {
		_, err := g.store.List(ctx, &keystorev1.ListValuesRequest{})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error {
		_, err := g.store.Get(ctx, &keystorev1.GetValueRequest{Name: "../x"})
		return err
	}},
	// Trust anchors.
	{1, func(ctx context.Context, g *gen) error {
		_, err := g.anchors.ListAnchors(ctx, &keystorev1.ListAnchorsRequest{})
		return err
	}},
	{2, func(ctx context.Context, g *gen) error {
		sig := ed25519.Sign(g.anchor, msg)
		if g.rng.IntN(2) == 0 {
			sig[0] ^= 1
		}
		_, err := g.anchors.Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: "release", Message: msg, Signature: sig})
		return err
	}},
	{1, func(ctx context.Context, g *gen) error {
		_, err := g.anchors.Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: "nope", Message: msg, Signature: make([]byte, 64)})
		return err
	}},
}

// Exactly one audit record per request over more than 10^4 mixed
// requests through the real daemon: the records, counted by operation and
// result, are exactly the requests the client made (counted by a client
// interceptor), their seqs run 1..n without a gap and the chain verifies.
func TestAuditOneRecordPerRequest(t *testing.T) {
	ctx := context.Background()
	cfg, anchor := auditConfig(t)
	d := daemontest.Start(t, daemontest.Options{Args: []string{"--config", cfg}})
	ta := &tally{n: map[string]int{}}
	conn, err := grpc.NewClient("unix://"+d.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(ta.interceptor),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20), grpc.MaxCallSendMsgSize(32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	}()
	keys := keystorev1.NewKeysClient(conn)
	for _, k := range []struct{ name, alg string }{{keySig, "ed25519"}, {keyBox, "xchacha20-poly1305"}, {keyOld, "ed25519"}, {keyGone, "ed25519"}, {keyMAC, "hmac-sha256"}} {
		if _, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: k.name, Algorithm: k.alg}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := keys.Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: keyGone}); err != nil {
		t.Fatal(err)
	}
	sig, err := keys.Sign(ctx, &keystorev1.SignRequest{Key: keySig, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := keys.Seal(ctx, &keystorev1.SealRequest{Key: keyBox, Plaintext: msg, Aad: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := keys.Mac(ctx, &keystorev1.MacRequest{Key: keyMAC, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	// Over the transport's 9 MiB bound: refused by the tap (the declared
	// length is over the method's limit), or by the transport inside
	// serve when the length was not seen ahead, and audited either way.
	for range 2 {
		_, err := keys.Sign(ctx, &keystorev1.SignRequest{Key: keySig, Message: make([]byte, server.MaxRequestBytes+1)})
		if err == nil {
			t.Fatal("a message over the transport bound was served")
		}
	}

	total := 0
	for _, m := range mix {
		total += m.weight
	}
	const workers = 8
	var created, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		g := &gen{conn: conn, keys: keys, store: keystorev1.NewStoreClient(conn), anchors: keystorev1.NewTrustAnchorsClient(conn),
			rng: rand.New(rand.NewPCG(uint64(w), 1)), created: &created, sig: sig, sealed: sealed, tag: tag, anchor: anchor}
		wg.Go(func() {
			for range auditCountRequests / workers {
				n := g.rng.IntN(total)
				for _, m := range mix {
					if n < m.weight {
						// The interceptor counts the request and its
						// result; here only how many failed.
						if m.call(ctx, g) != nil {
							failed.Add(1)
						}
						break
					}
					n -= m.weight
				}
			}
		})
	}
	wg.Wait()
	d.Stop() // flushes and closes the log

	records := map[string]int{}
	notes := 0 // keys.applied: the core's records of their own, one per lifecycle change
	// The daemon's own: its signed checkpoints and, at the first start,
	// the create of its audit key (intent and keys.applied).
	own := 0
	f, err := os.Open(auditLogOf(d))
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Walk(f, func(r audit.Record) error {
		if strings.HasPrefix(r.Op, "audit.") || strings.HasPrefix(r.Key, "keystored/") {
			own++
			return nil
		}
		if r.Op == "keys.applied" {
			notes++
			return nil
		}
		records[r.Op+" "+r.Result]++
		return nil
	})
	if cerr := f.Close(); cerr != nil {
		t.Error(cerr)
	}
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	requests := 0
	for _, n := range ta.n {
		requests += n
	}
	if requests < 10_000 {
		t.Fatalf("only %d requests were made", requests)
	}
	if int(res.Records) != requests+notes+own || res.LastSeq != uint64(requests+notes+own) {
		t.Errorf("audit log: %d records, last seq %d; want %d, one per request, %d keys.applied and the daemon's own %d", res.Records, res.LastSeq, requests+notes+own, notes, own)
	}
	if own < 3+requests/1000 {
		t.Errorf("%d of the daemon's own records, want at least the audit key's create and keys.applied, the start checkpoint and one per 1000 records", own)
	}
	var keysSeen []string
	for k := range ta.n {
		keysSeen = append(keysSeen, k)
	}
	for k := range records {
		if _, ok := ta.n[k]; !ok {
			keysSeen = append(keysSeen, k)
		}
	}
	sort.Strings(keysSeen)
	var diffs []string
	for _, k := range keysSeen {
		if ta.n[k] != records[k] {
			diffs = append(diffs, fmt.Sprintf("%s: %d requests, %d records", k, ta.n[k], records[k]))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("requests and audit records differ:\n%s", strings.Join(diffs, "\n"))
	}
	t.Logf("%d requests (%d of the mixed run answered an error, as they were made to), %d records, %d kinds (operation, result): %v", requests, failed.Load(), res.Records, len(keysSeen), keysSeen)
}

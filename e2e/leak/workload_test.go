package leak

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// algorithms are the algorithms the workload creates a key of, each.
var algorithms = []provider.Algorithm{
	provider.Ed25519, provider.Ed448, provider.MLDSA44, provider.MLDSA65, provider.MLDSA87,
	provider.XChaCha20Poly1305, provider.ChaCha20Poly1305, provider.AES256GCM,
}

// canary returns a deterministic, random-looking marker of kind (its
// counter-th), e.g. "CANARY-PLAINTEXT-7f3a…": derived from a fixed label,
// not from OS randomness, so every run is the same.
func canary(kind string, counter int) []byte {
	h := sha256.Sum256([]byte("keystored/e2e/leak/" + kind + "/" + strconv.Itoa(counter)))
	return []byte("CANARY-" + strings.ToUpper(kind) + "-" + hex.EncodeToString(h[:16]))
}

// anchorKey is the trust anchor's key pair (its private half never goes
// near the daemon; it is searched for all the same).
func anchorKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("keystored/e2e/leak/anchor"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// trackedKey is a key the workload created, with its versions.
type trackedKey struct {
	id       provider.KeyID
	alg      provider.Algorithm
	use      provider.Use
	versions provider.Version
	provider string
}

// workload drives every RPC of the four services through a recording
// connection and keeps what the leak search needs.
type workload struct {
	t       *testing.T
	conn    *grpc.ClientConn
	keys    keystorev1.KeysClient
	store   keystorev1.StoreClient
	anchors keystorev1.TrustAnchorsClient
	admin   keystorev1.AdminClient

	tracked  map[string]*trackedKey // by full key ID
	canaries []needle               // plaintexts, AAD, messages
	values   []needle               // Store values
	sealed   map[string][]byte      // the last blob sealed under each AEAD key
	results  map[string]int         // result code → calls
	counter  int
}

func newWorkload(t *testing.T, conn *grpc.ClientConn) *workload {
	return &workload{
		t: t, conn: conn,
		keys:    keystorev1.NewKeysClient(conn),
		store:   keystorev1.NewStoreClient(conn),
		anchors: keystorev1.NewTrustAnchorsClient(conn),
		admin:   keystorev1.NewAdminClient(conn),
		tracked: map[string]*trackedKey{},
		sealed:  map[string][]byte{},
		results: map[string]int{},
	}
}

// next returns a new canary of kind and remembers it.
func (w *workload) next(kind string) []byte {
	w.counter++
	c := canary(kind, w.counter)
	if kind == "value" {
		w.values = append(w.values, needle{what: string(c), b: c})
	} else {
		w.canaries = append(w.canaries, needle{what: string(c), b: c})
	}
	return c
}

// code returns "ok" or the keystored code name of err.
func code(err error) string {
	if err == nil {
		return "ok"
	}
	c, ok := provider.CodeOf(rpcerr.FromStatus(err))
	if !ok {
		return "untyped(" + err.Error() + ")"
	}
	return c.String()
}

// expect checks the result of a call: want is "ok", a code name, or
// "error" (any typed error).
func (w *workload) expect(what string, err error, want string) {
	w.t.Helper()
	got := code(err)
	w.results[got]++
	switch {
	case strings.HasPrefix(got, "untyped"):
		w.t.Errorf("%s: %s, want a typed error", what, got)
	case want == "error" && got == "ok":
		w.t.Errorf("%s: succeeded, want an error", what)
	case want != "error" && got != want:
		w.t.Errorf("%s: %s (%v), want %s", what, got, err, want)
	}
}

// track records a key's metadata (its versions grow with rotations).
func (w *workload) track(m *keystorev1.KeyMetadata) {
	w.t.Helper()
	if m == nil {
		w.t.Fatal("no key metadata in the response")
	}
	id, err := provider.ParseKeyID(m.GetId())
	if err != nil {
		w.t.Fatalf("key ID %q: %v", m.GetId(), err)
	}
	a := provider.Algorithm(m.GetAlgorithm())
	spec, err := alg.Default().Lookup(a)
	if err != nil {
		w.t.Fatal(err)
	}
	k := w.tracked[id.String()]
	if k == nil {
		k = &trackedKey{id: id, alg: a, use: spec.Use}
		w.tracked[id.String()] = k
	}
	k.provider = m.GetProvider()
	for _, v := range m.GetVersions() {
		if provider.Version(v.GetVersion()) > k.versions {
			k.versions = provider.Version(v.GetVersion())
		}
	}
}

// refs returns the KeyRef of every version of every key the workload made.
func (w *workload) refs() []provider.KeyRef {
	var out []provider.KeyRef
	for _, k := range w.tracked {
		for v := provider.Version(1); v <= k.versions; v++ {
			out = append(out, provider.KeyRef{ID: k.id, Version: v, Algorithm: k.alg, Use: k.use, Provider: k.provider})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// keyName is the name of the workload's key of a in app, as the operator
// names it.
func keyName(app string, a provider.Algorithm) string {
	purpose := "box"
	if spec, err := alg.Default().Lookup(a); err == nil && spec.Use == provider.UseSign {
		purpose = "sig"
	}
	return app + "/" + purpose + "/" + string(a)
}

// operatorPhase runs as an operator over the apps "leak" and "other":
// every RPC of Keys, Store, TrustAnchors and Admin with their error
// paths.
func (w *workload) operatorPhase(ctx context.Context) {
	t := w.t
	for _, a := range algorithms {
		r, err := w.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: keyName("leak", a), Algorithm: string(a)})
		w.expect("create "+string(a), err, "ok")
		if err != nil {
			t.FailNow()
		}
		w.track(r.GetKey())
	}
	for _, a := range []provider.Algorithm{provider.Ed25519, provider.XChaCha20Poly1305} {
		r, err := w.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: keyName("other", a), Algorithm: string(a)})
		w.expect("create other "+string(a), err, "ok")
		if err == nil {
			w.track(r.GetKey())
		}
	}
	for _, a := range algorithms {
		name := keyName("leak", a)
		spec, err := alg.Default().Lookup(a)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Use == provider.UseSign {
			w.signKey(ctx, name)
		} else {
			w.sealKey(ctx, name)
		}
	}
	w.lifecycleErrors(ctx)
	_, err := w.keys.Sweep(ctx, &keystorev1.SweepKeysRequest{})
	w.expect("sweep", err, "ok")
	_, err = w.keys.GetUsage(ctx, &keystorev1.GetUsageRequest{App: "other"})
	w.expect("usage of other", err, "ok")
	w.storeCalls(ctx)
	w.anchorCalls(ctx)
	w.adminCalls(ctx)
	w.transportErrors(ctx)
}

// adminCalls reads the KEK status and asks for a KEK rotation, which the
// testseed provider cannot do (ENOTSUP): only fingerprints may travel.
func (w *workload) adminCalls(ctx context.Context) {
	st, err := w.admin.WrappingKeyStatus(ctx, &keystorev1.WrappingKeyStatusRequest{})
	w.expect("KEK status", err, "ok")
	if err == nil && st.GetRotatable() {
		w.t.Error("KEK status: the testseed provider is rotatable")
	}
	_, err = w.admin.RotateWrappingKey(ctx, &keystorev1.RotateWrappingKeyRequest{})
	w.expect("KEK rotation on testseed", err, "ENOTSUP")
}

func (w *workload) signKey(ctx context.Context, name string) {
	t := w.t
	g, err := w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: name})
	w.expect("get "+name, err, "ok")
	_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name})
	w.expect("public key "+name, err, "ok")
	msg := w.next("message")
	s, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: msg})
	w.expect("sign "+name, err, "ok")
	v, err := w.keys.Verify(ctx, &keystorev1.VerifyRequest{Key: name, Version: int64(s.GetVersion()), Message: msg, Signature: s.GetSignature()})
	w.expect("verify "+name, err, "ok")
	if !v.GetValid() {
		t.Errorf("verify %s: valid = false for the daemon's own signature", name)
	}
	bad := bytes.Clone(s.GetSignature())
	if len(bad) > 0 {
		bad[0] ^= 1
	}
	v, err = w.keys.Verify(ctx, &keystorev1.VerifyRequest{Key: name, Version: 1, Message: msg, Signature: bad})
	if err == nil && v.GetValid() {
		t.Errorf("verify %s: a flipped signature is valid", name)
	}
	w.results[code(err)]++
	_, err = w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: w.next("plaintext"), Aad: w.next("aad")})
	w.expect("seal with signing key "+name, err, "error")
	_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: []byte("not sealed"), Aad: w.next("aad")})
	w.expect("unseal with signing key "+name, err, "error")
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: make([]byte, provider.MaxSignMessage+1)})
	w.expect("sign oversize "+name, err, "EMSGSIZE")
	rot, err := w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name})
	w.expect("rotate "+name, err, "ok")
	if err == nil {
		w.track(rot.GetKey())
	}
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: w.next("message")})
	w.expect("sign v2 "+name, err, "ok")
	for _, ver := range []int64{1, 2} {
		_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name, Version: ver})
		w.expect("public key v"+strconv.FormatInt(ver, 10)+" "+name, err, "ok")
	}
	for _, ver := range []int64{-1, 3, 1 << 32, 1<<63 - 1} {
		_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name, Version: ver})
		w.expect("public key bad version "+strconv.FormatInt(ver, 10)+" "+name, err, "error")
	}
	_, err = w.keys.SignBatch(ctx, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
		{Key: name, Message: w.next("message")},
		{Key: "leak/sig/missing", Message: w.next("message")},
		{Key: "../../etc", Message: w.next("message")},
		{Key: keyName("other", provider.Ed25519), Message: w.next("message")},
	}})
	w.expect("sign batch "+name, err, "ok")
	r, err := w.keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: name, Version: 1})
	w.expect("revoke v1 "+name, err, "ok")
	if err == nil {
		w.track(r.GetKey())
	}
	_, err = w.keys.Verify(ctx, &keystorev1.VerifyRequest{Key: name, Version: 1, Message: msg, Signature: s.GetSignature()})
	w.expect("verify revoked v1 "+name, err, "error")
	_, err = w.keys.SetPolicy(ctx, &keystorev1.SetKeyPolicyRequest{Key: name, Policy: &keystorev1.KeyPolicy{MinDecryptionVersion: 2}})
	w.expect("set policy "+name, err, "ok")
	_, err = w.keys.SetPolicy(ctx, &keystorev1.SetKeyPolicyRequest{Key: name, Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: -5}})
	w.expect("set bad policy "+name, err, "EINVAL")
	if g != nil {
		w.track(g.GetKey())
	}
}

func (w *workload) sealKey(ctx context.Context, name string) {
	t := w.t
	pt, aad := w.next("plaintext"), w.next("aad")
	s, err := w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: pt, Aad: aad})
	w.expect("seal "+name, err, "ok")
	blob := s.GetSealed()
	u, err := w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: blob, Aad: aad})
	w.expect("unseal "+name, err, "ok")
	if !bytes.Equal(u.GetPlaintext(), pt) {
		t.Errorf("unseal %s: plaintext differs", name)
	}
	_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: blob, Aad: w.next("aad")})
	w.expect("unseal wrong AAD "+name, err, "EBADMSG")
	for i := range []int{0, 1, 2} {
		bad := bytes.Clone(blob)
		switch i {
		case 0:
			bad[len(bad)-1] ^= 0x80
		case 1:
			bad[len(bad)/2] ^= 1
		case 2:
			bad = bad[:len(bad)-1]
		}
		_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: bad, Aad: aad})
		w.expect("unseal tampered "+name, err, "error")
	}
	_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: nil, Aad: aad})
	w.expect("unseal empty "+name, err, "error")
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: w.next("message")})
	w.expect("sign with sealing key "+name, err, "error")
	_, err = w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: make([]byte, provider.MaxSealPlaintext+1), Aad: w.next("aad")})
	w.expect("seal oversize "+name, err, "EMSGSIZE")
	_, err = w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: w.next("plaintext"), Aad: make([]byte, provider.MaxAAD+1)})
	w.expect("seal oversize AAD "+name, err, "EMSGSIZE")
	_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name})
	w.expect("public key of an AEAD key "+name, err, "error")
	rot, err := w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name})
	w.expect("rotate "+name, err, "ok")
	if err == nil {
		w.track(rot.GetKey())
	}
	rw, err := w.keys.Rewrap(ctx, &keystorev1.RewrapRequest{Key: name, Sealed: blob, Aad: aad})
	w.expect("rewrap "+name, err, "ok")
	_, err = w.keys.Rewrap(ctx, &keystorev1.RewrapRequest{Key: name, Sealed: blob, Aad: w.next("aad")})
	w.expect("rewrap wrong AAD "+name, err, "EBADMSG")
	pt2, aad2 := w.next("plaintext"), w.next("aad")
	sb, err := w.keys.SealBatch(ctx, &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{
		{Key: name, Plaintext: pt2, Aad: aad2},
		{Key: name, Plaintext: w.next("plaintext"), Aad: make([]byte, provider.MaxAAD+1)},
		{Key: "leak/box/missing", Plaintext: w.next("plaintext"), Aad: w.next("aad")},
	}})
	w.expect("seal batch "+name, err, "ok")
	var blob2 []byte
	if len(sb.GetResults()) > 0 {
		blob2 = sb.GetResults()[0].GetResponse().GetSealed()
	}
	ub, err := w.keys.UnsealBatch(ctx, &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{
		{Key: name, Sealed: blob2, Aad: aad2},
		{Key: name, Sealed: blob2, Aad: w.next("aad")},
		{Key: name, Sealed: rw.GetSealed(), Aad: aad},
		{Key: name, Sealed: []byte{1, 2, 3}, Aad: aad},
	}})
	w.expect("unseal batch "+name, err, "ok")
	if res := ub.GetResults(); len(res) != 4 || !bytes.Equal(res[0].GetResponse().GetPlaintext(), pt2) ||
		res[1].GetError() == nil || !bytes.Equal(res[2].GetResponse().GetPlaintext(), pt) || res[3].GetError() == nil {
		t.Errorf("unseal batch %s: unexpected results %v", name, res)
	}
	r, err := w.keys.SetPolicy(ctx, &keystorev1.SetKeyPolicyRequest{Key: name, Policy: &keystorev1.KeyPolicy{MinDecryptionVersion: 2}})
	w.expect("set policy "+name, err, "ok")
	if err == nil {
		w.track(r.GetKey())
	}
	_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: blob, Aad: aad})
	w.expect("unseal v1 under min_decryption_version 2 "+name, err, "error")
	w.sealed[name] = blob2
}

// badNames are key names every RPC must refuse.
var badNames = []string{
	"", "/", "//", "a//b", "../p/k", "leak/../k", "leak/p/..", "leak/p/k/x", "LEAK/p/k", "leak/p/k\x00",
	"leak/p/k\n", "leak/p/\u043a", "leak/p/k\u200b", "%2e%2e/p/k", "leak/p/" + strings.Repeat("k", provider.MaxSegment+1),
	strings.Repeat("a/", 200), "leak/p/k ", "leak/p/.k",
}

func (w *workload) lifecycleErrors(ctx context.Context) {
	t := w.t
	for _, n := range badNames {
		_, err := w.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: n, Algorithm: "ed25519"})
		w.expect("create bad name "+strconv.Quote(n), err, "EINVAL")
		_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: n, Message: w.next("message")})
		w.expect("sign bad name "+strconv.Quote(n), err, "EINVAL")
	}
	_, err := w.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: keyName("leak", provider.Ed25519), Algorithm: "ed25519"})
	w.expect("create duplicate", err, "EALREADY")
	for _, a := range []string{"rsa-2048", "ED25519", "ed25519\x00", " ed25519", "ml-dsa-1024"} {
		_, err = w.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "leak/sig/bad-alg", Algorithm: a})
		w.expect("create algorithm "+strconv.Quote(a), err, "error")
	}
	_, err = w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: "leak/sig/missing"})
	w.expect("get missing", err, "ENOENT")
	var token string
	for pages := 0; ; pages++ {
		l, err := w.keys.List(ctx, &keystorev1.ListKeysRequest{PageSize: 3, PageToken: token})
		w.expect("list", err, "ok")
		if err != nil || l.GetNextPageToken() == "" || pages > 20 {
			break
		}
		token = l.GetNextPageToken()
	}
	_, err = w.keys.List(ctx, &keystorev1.ListKeysRequest{App: "other"})
	w.expect("list app other", err, "ok")
	_, err = w.keys.List(ctx, &keystorev1.ListKeysRequest{App: "../x"})
	w.expect("list bad app", err, "EINVAL")
	_, err = w.keys.List(ctx, &keystorev1.ListKeysRequest{PageToken: "\x00garbage/../x"})
	w.expect("list bad token", err, "error")
	_, err = w.keys.List(ctx, &keystorev1.ListKeysRequest{PageSize: -1})
	w.expect("list negative page", err, "error")

	// Revoke and destroy one signing and one sealing key, then use them.
	for _, a := range []provider.Algorithm{provider.Ed448, provider.AES256GCM} {
		name := keyName("leak", a)
		r, err := w.keys.Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: name})
		w.expect("revoke "+name, err, "ok")
		if err == nil {
			w.track(r.GetKey())
		}
		if a == provider.Ed448 {
			_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: w.next("message")})
		} else {
			_, err = w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: w.next("plaintext"), Aad: w.next("aad")})
		}
		w.expect("use revoked "+name, err, "EKEYREVOKED")
		_, err = w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name})
		w.expect("rotate revoked "+name, err, "EKEYREVOKED")
		_, err = w.keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: name})
		w.expect("destroy "+name, err, "ok")
		_, err = w.keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: name})
		w.results[code(err)]++
		if a == provider.AES256GCM {
			_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: w.sealed[name], Aad: w.next("aad")})
			w.expect("unseal destroyed "+name, err, "error")
		}
		_, err = w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: name})
		w.results[code(err)]++
	}
	_, err = w.keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: keyName("leak", provider.MLDSA44)})
	w.expect("destroy an active key", err, "error")
	t.Logf("lifecycle errors done")
}

func (w *workload) storeCalls(ctx context.Context) {
	t := w.t
	v1, v2 := w.next("value"), w.next("value")
	_, err := w.store.Put(ctx, &keystorev1.PutValueRequest{Name: "config", Value: v1})
	w.expect("put config", err, "ok")
	_, err = w.store.Put(ctx, &keystorev1.PutValueRequest{Name: "token", Value: v2})
	w.expect("put token", err, "ok")
	g, err := w.store.Get(ctx, &keystorev1.GetValueRequest{Name: "config"})
	w.expect("get config", err, "ok")
	if !bytes.Equal(g.GetValue(), v1) {
		t.Error("get config: value differs")
	}
	_, err = w.store.List(ctx, &keystorev1.ListValuesRequest{PageSize: 1})
	w.expect("list values", err, "ok")
	_, err = w.store.Delete(ctx, &keystorev1.DeleteValueRequest{Name: "token"})
	w.expect("delete token", err, "ok")
	_, err = w.store.Get(ctx, &keystorev1.GetValueRequest{Name: "token"})
	w.expect("get deleted", err, "ENOENT")
	_, err = w.store.Delete(ctx, &keystorev1.DeleteValueRequest{Name: "token"})
	w.expect("delete deleted", err, "ENOENT")
	for _, n := range []string{"", "../config", "a/b", "config\x00", "CONFIG", strings.Repeat("n", 65)} {
		_, err = w.store.Put(ctx, &keystorev1.PutValueRequest{Name: n, Value: w.next("value")})
		w.expect("put bad name "+strconv.Quote(n), err, "EINVAL")
		_, err = w.store.Get(ctx, &keystorev1.GetValueRequest{Name: n})
		w.expect("get bad name "+strconv.Quote(n), err, "EINVAL")
	}
	big := append(w.next("value"), make([]byte, 64<<10)...)
	_, err = w.store.Put(ctx, &keystorev1.PutValueRequest{Name: "big", Value: big})
	w.expect("put oversize", err, "EMSGSIZE")
	_, err = w.store.List(ctx, &keystorev1.ListValuesRequest{PageToken: "../x"})
	w.results[code(err)]++
}

func (w *workload) anchorCalls(ctx context.Context) {
	t := w.t
	l, err := w.anchors.ListAnchors(ctx, &keystorev1.ListAnchorsRequest{})
	w.expect("list anchors", err, "ok")
	if len(l.GetAnchors()) != 1 {
		t.Errorf("list anchors: %d anchors, want 1", len(l.GetAnchors()))
	}
	msg := w.next("message")
	sig := ed25519.Sign(anchorKey(), msg)
	v, err := w.anchors.Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: "release", Message: msg, Signature: sig})
	w.expect("verify anchor", err, "ok")
	if !v.GetValid() {
		t.Error("verify anchor: valid = false for a good signature")
	}
	sig[3] ^= 4
	v, err = w.anchors.Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: "release", Message: msg, Signature: sig})
	if err == nil && v.GetValid() {
		t.Error("verify anchor: a flipped signature is valid")
	}
	w.results[code(err)]++
	_, err = w.anchors.Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: "missing", Message: w.next("message"), Signature: sig})
	w.expect("verify unknown anchor", err, "ENOENT")
	_, err = w.anchors.Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: "../release", Message: w.next("message"), Signature: sig})
	w.expect("verify bad anchor name", err, "error")
}

// transportErrors sends what the transport or the codec refuses: a frame
// over the daemon's message bound, a message that does not decode, and
// methods that do not exist.
func (w *workload) transportErrors(ctx context.Context) {
	huge := append(w.next("message"), make([]byte, 10<<20)...)
	_, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: keyName("leak", provider.Ed25519), Message: huge})
	w.expect("a 10 MiB request (over the transport's bound)", err, "EMSGSIZE")
	for _, frame := range [][]byte{{0xff, 0xff, 0xff}, {0x0a, 0x7f, 'x'}, append([]byte{0x12, 0x05}, w.next("message")...)} {
		var out rawFrame
		err = w.conn.Invoke(ctx, "/keystore.v1.Keys/Sign", &rawFrame{b: frame}, &out)
		w.expect("malformed sign request", err, "EINVAL")
	}
	for _, m := range []string{"/keystore.v1.Keys/Export", "/keystore.v1.Keys/ExportPrivateKey", "/keystore.v0.Secrets/Get"} {
		var out rawFrame
		err = w.conn.Invoke(ctx, m, &rawFrame{b: w.next("message")}, &out)
		w.expect("unknown method "+m, err, "ENOTSUP")
	}
}

// appPhase runs as the plain app "leak" (not an operator) after a
// restart: its own keys still work; the other app's keys, existing or
// not, are EPERM.
func (w *workload) appPhase(ctx context.Context) {
	_, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: "sig/ed25519", Message: w.next("message")})
	w.expect("app sign own key", err, "ok")
	box := keyName("leak", provider.XChaCha20Poly1305)
	pt, aad := w.next("plaintext"), w.next("aad")
	s, err := w.keys.Seal(ctx, &keystorev1.SealRequest{Key: "box/xchacha20-poly1305", Plaintext: pt, Aad: aad})
	w.expect("app seal own key", err, "ok")
	_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: "box/xchacha20-poly1305", Sealed: s.GetSealed(), Aad: aad})
	w.expect("app unseal own key", err, "ok")
	_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: box, Sealed: w.sealed[box], Aad: w.next("aad")})
	w.expect("app unseal own key, wrong AAD", err, "EBADMSG")
	_, err = w.store.Get(ctx, &keystorev1.GetValueRequest{Name: "config"})
	w.expect("app get own value", err, "ok")

	otherSig, otherBox := keyName("other", provider.Ed25519), keyName("other", provider.XChaCha20Poly1305)
	for _, name := range []string{otherSig, otherBox, "other/sig/missing"} {
		_, err = w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: name})
		w.expect("app get "+name, err, "EPERM")
		_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name})
		w.expect("app public key "+name, err, "EPERM")
		_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: w.next("message")})
		w.expect("app sign "+name, err, "EPERM")
		_, err = w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: w.next("plaintext"), Aad: w.next("aad")})
		w.expect("app seal "+name, err, "EPERM")
		_, err = w.keys.Unseal(ctx, &keystorev1.UnsealRequest{Key: name, Sealed: s.GetSealed(), Aad: aad})
		w.expect("app unseal "+name, err, "EPERM")
		_, err = w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name})
		w.expect("app rotate "+name, err, "EPERM")
		_, err = w.keys.Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: name})
		w.expect("app revoke "+name, err, "EPERM")
		_, err = w.keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: name})
		w.expect("app destroy "+name, err, "EPERM")
	}
	_, err = w.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "other/sig/new", Algorithm: "ed25519"})
	w.expect("app create in other app", err, "EPERM")
	_, err = w.keys.List(ctx, &keystorev1.ListKeysRequest{App: "other"})
	w.expect("app list other app", err, "EPERM")
	_, err = w.keys.Sweep(ctx, &keystorev1.SweepKeysRequest{})
	w.expect("app sweep", err, "EPERM")
	_, err = w.keys.GetUsage(ctx, &keystorev1.GetUsageRequest{})
	w.expect("app usage", err, "ok")
	_, err = w.keys.GetUsage(ctx, &keystorev1.GetUsageRequest{App: "other"})
	w.expect("app usage of other", err, "EPERM")
	_, err = w.keys.SignBatch(ctx, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
		{Key: "sig/ed25519", Message: w.next("message")}, {Key: otherSig, Message: w.next("message")},
	}})
	w.expect("app sign batch", err, "ok")
	_, err = w.admin.WrappingKeyStatus(ctx, &keystorev1.WrappingKeyStatusRequest{})
	w.expect("app KEK status", err, "EPERM")
	_, err = w.admin.RotateWrappingKey(ctx, &keystorev1.RotateWrappingKeyRequest{})
	w.expect("app KEK rotation", err, "EPERM")
}

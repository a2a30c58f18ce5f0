package leak

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"slices"
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
	provider.ECDSAP256, provider.RSA2048PSS, // the cheapest RSA: a key generation per version, in the daemon and in the test
	provider.XChaCha20Poly1305, provider.ChaCha20Poly1305, provider.AES256GCM,
	provider.HMACSHA256,
	provider.HPKEX25519, provider.HPKEP256, provider.HPKEMLKEM768X25519,
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
	// imported are the versions made from imported material (their
	// secrets are the workload's, not testseed's).
	imported map[provider.Version]bool
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
	macked   map[string][]byte      // "<key ID>@<version>" → a message the daemon MACed with it
	results  map[string]int         // result code → calls
	counter  int

	// Issue 12 (issue12_test.go): hpke holds a message to each HPKE key's
	// version 2; datakeys the data keys handed out; imported the forms of
	// imported material; wraps the import wrapping keys handed out.
	hpke     map[string]hpkeMessage
	datakeys []needle
	imported []needle
	wraps    []wrapRecord
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
		macked:  map[string][]byte{},
		results: map[string]int{},
		hpke:    map[string]hpkeMessage{},
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
		k = &trackedKey{id: id, alg: a, use: spec.Use, imported: map[provider.Version]bool{}}
		w.tracked[id.String()] = k
	}
	k.provider = m.GetProvider()
	for _, v := range m.GetVersions() {
		if provider.Version(v.GetVersion()) > k.versions {
			k.versions = provider.Version(v.GetVersion())
		}
		if v.GetOrigin() == "imported" {
			k.imported[provider.Version(v.GetVersion())] = true
		}
	}
}

// isImported reports whether ref is a version made from imported
// material.
func (w *workload) isImported(ref provider.KeyRef) bool {
	k := w.tracked[ref.ID.String()]
	return k != nil && k.imported[ref.Version]
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
// names it: "<app>/sig/<alg>", "<app>/box/<alg>" or "<app>/mac/<alg>".
func keyName(app string, a provider.Algorithm) string {
	purpose := "box"
	if spec, err := alg.Default().Lookup(a); err == nil {
		switch spec.Use {
		case provider.UseSign:
			purpose = "sig"
		case provider.UseMAC:
			purpose = "mac"
		case provider.UseAsymmetricDecrypt:
			purpose = "inbox"
		}
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
	for _, a := range []provider.Algorithm{provider.Ed25519, provider.XChaCha20Poly1305, provider.HMACSHA256, provider.HPKEX25519} {
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
		switch spec.Use {
		case provider.UseSign:
			w.signKey(ctx, name, spec)
		case provider.UseMAC:
			w.macKey(ctx, name)
		case provider.UseAsymmetricDecrypt:
			w.hpkeKey(ctx, name)
		default:
			w.sealKey(ctx, name)
			w.dataKeyCalls(ctx, name)
		}
	}
	w.createByUse(ctx)
	w.importCalls(ctx)
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

// hashOf returns the h digest of b (the hashes a SignRequest may name).
func hashOf(h crypto.Hash, b []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(b)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(b)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(b)
		return d[:]
	}
	return nil
}

// digest returns a new canary message and its h digest, the digest a
// canary too: a caller's digest stands for its message and must not
// reach a log or the audit log either.
func (w *workload) digest(h crypto.Hash) ([]byte, []byte) {
	msg := w.next("message")
	d := hashOf(h, msg)
	w.canaries = append(w.canaries, needle{what: "digest of " + string(msg), b: d})
	return msg, d
}

func (w *workload) signKey(ctx context.Context, name string, spec *alg.Spec) {
	t := w.t
	g, err := w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: name})
	w.expect("get "+name, err, "ok")
	_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name})
	w.expect("public key "+name, err, "ok")
	msg := w.next("message")
	s, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: msg})
	w.expect("sign "+name, err, "ok")
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: 1, Message: w.next("message")})
	w.expect("sign with version 1 named "+name, err, "ok")
	w.signDigests(ctx, name, spec)
	_, err = w.keys.Mac(ctx, &keystorev1.MacRequest{Key: name, Message: w.next("message")})
	w.expect("mac with signing key "+name, err, "EPERM")
	_, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 1, Message: w.next("message"), Tag: make([]byte, 32)})
	w.expect("verify-mac with signing key "+name, err, "EPERM")
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
	// A named version signs while it is primary or retired; one the key
	// never had does not.
	m1 := w.next("message")
	s1, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: 1, Message: m1})
	w.expect("sign with retired version 1 "+name, err, "ok")
	if err == nil && s1.GetVersion() != 1 {
		t.Errorf("sign with version 1 %s: signed with version %d", name, s1.GetVersion())
	}
	v, err = w.keys.Verify(ctx, &keystorev1.VerifyRequest{Key: name, Version: 1, Message: m1, Signature: s1.GetSignature()})
	w.expect("verify retired version 1 "+name, err, "ok")
	if err == nil && !v.GetValid() {
		t.Errorf("verify %s: valid = false for version 1's signature", name)
	}
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: 2, Message: w.next("message")})
	w.expect("sign with version 2 named "+name, err, "ok")
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: 3, Message: w.next("message")})
	w.expect("sign with missing version 3 "+name, err, "ENOENT")
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: -1, Message: w.next("message")})
	w.expect("sign with version -1 "+name, err, "EINVAL")
	for _, ver := range []int64{1, 2} {
		_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name, Version: ver})
		w.expect("public key v"+strconv.FormatInt(ver, 10)+" "+name, err, "ok")
	}
	for _, ver := range []int64{-1, 3, 1 << 32, 1<<63 - 1} {
		_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name, Version: ver})
		w.expect("public key bad version "+strconv.FormatInt(ver, 10)+" "+name, err, "error")
	}
	items := []*keystorev1.SignRequest{
		{Key: name, Message: w.next("message")},
		{Key: name, Version: 1, Message: w.next("message")},
		{Key: "leak/sig/missing", Message: w.next("message")},
		{Key: "../../etc", Message: w.next("message")},
		{Key: keyName("other", provider.Ed25519), Message: w.next("message")},
	}
	if spec.Hash != 0 {
		hash, _ := provider.HashName(spec.Hash) // spec.Hash is one of the three
		_, d := w.digest(spec.Hash)
		_, d2 := w.digest(spec.Hash)
		items = append(items, &keystorev1.SignRequest{Key: name, Digest: d, DigestHash: hash},
			&keystorev1.SignRequest{Key: name, Digest: d2[:len(d2)-1], DigestHash: hash})
	}
	_, err = w.keys.SignBatch(ctx, &keystorev1.SignBatchRequest{Items: items})
	w.expect("sign batch "+name, err, "ok")
	r, err := w.keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: name, Version: 1})
	w.expect("revoke v1 "+name, err, "ok")
	if err == nil {
		w.track(r.GetKey())
	}
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: 1, Message: w.next("message")})
	w.expect("sign with revoked version 1 "+name, err, "EKEYREVOKED")
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

// signDigests signs digests with name (the caller hashed the message):
// a key whose algorithm has a hash signs its digest, the signature
// verifies by digest and by message, and malformed digest requests are
// EINVAL; a key that signs whole messages only refuses digests (EPERM).
func (w *workload) signDigests(ctx context.Context, name string, spec *alg.Spec) {
	t := w.t
	if spec.Hash == 0 {
		_, d := w.digest(crypto.SHA256)
		_, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Digest: d, DigestHash: "sha256"})
		w.expect("sign a digest with a message-only key "+name, err, "EPERM")
		return
	}
	hash, _ := provider.HashName(spec.Hash) // spec.Hash is one of the three
	msg, d := w.digest(spec.Hash)
	s, err := w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Digest: d, DigestHash: hash})
	w.expect("sign digest "+name, err, "ok")
	for _, req := range []*keystorev1.VerifyRequest{
		{Key: name, Version: int64(s.GetVersion()), Digest: d, DigestHash: hash, Signature: s.GetSignature()},
		{Key: name, Version: int64(s.GetVersion()), Message: msg, Signature: s.GetSignature()},
	} {
		v, err := w.keys.Verify(ctx, req)
		w.expect("verify the digest's signature "+name, err, "ok")
		if err == nil && !v.GetValid() {
			t.Errorf("verify %s: valid = false for the signature of a digest (by digest: %v)", name, req.Digest != nil)
		}
	}
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: 1, Digest: d, DigestHash: hash})
	w.expect("sign digest with version 1 named "+name, err, "ok")
	other := crypto.SHA512
	if spec.Hash == crypto.SHA512 {
		other = crypto.SHA256
	}
	otherName, _ := provider.HashName(other)
	_, od := w.digest(other)
	for what, req := range map[string]*keystorev1.SignRequest{
		"a message and a digest": {Key: name, Message: w.next("message"), Digest: d, DigestHash: hash},
		"a short digest":         {Key: name, Digest: d[:len(d)-1], DigestHash: hash},
		"a digest without hash":  {Key: name, Digest: d},
		"an unknown hash":        {Key: name, Digest: d, DigestHash: "md5"},
		"another hash":           {Key: name, Digest: od, DigestHash: otherName},
	} {
		_, err = w.keys.Sign(ctx, req)
		w.expect("sign "+what+" "+name, err, "EINVAL")
		_, err = w.keys.Verify(ctx, &keystorev1.VerifyRequest{Key: name, Version: 1, Message: req.Message, Digest: req.Digest, DigestHash: req.DigestHash, Signature: s.GetSignature()})
		w.expect("verify "+what+" "+name, err, "EINVAL")
	}
}

// macKey drives the MAC RPCs over the HMAC key name, with their error
// paths, a rotation and a revoked version.
func (w *workload) macKey(ctx context.Context, name string) {
	t := w.t
	g, err := w.keys.Get(ctx, &keystorev1.GetKeyRequest{Key: name})
	w.expect("get "+name, err, "ok")
	msg := w.next("message")
	m, err := w.keys.Mac(ctx, &keystorev1.MacRequest{Key: name, Message: msg})
	w.expect("mac "+name, err, "ok")
	w.macked[m.GetKey()+"@"+strconv.FormatUint(uint64(m.GetVersion()), 10)] = msg
	tag := m.GetTag()
	v, err := w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: int64(m.GetVersion()), Message: msg, Tag: tag})
	w.expect("verify-mac "+name, err, "ok")
	if err == nil && !v.GetValid() {
		t.Errorf("verify-mac %s: valid = false for the daemon's own tag", name)
	}
	bad := bytes.Clone(tag)
	if len(bad) > 0 {
		bad[len(bad)-1] ^= 1
	}
	for what, b := range map[string][]byte{"a flipped tag": bad, "a short tag": tag[:len(tag)/2], "no tag": nil} {
		v, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 1, Message: msg, Tag: b})
		w.expect("verify-mac "+what+" "+name, err, "ok")
		if err == nil && v.GetValid() {
			t.Errorf("verify-mac %s: %s is valid", name, what)
		}
	}
	v, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 1, Message: w.next("message"), Tag: tag})
	w.expect("verify-mac another message "+name, err, "ok")
	if err == nil && v.GetValid() {
		t.Errorf("verify-mac %s: the tag is valid for another message", name)
	}
	_, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Message: msg, Tag: tag})
	w.expect("verify-mac without a version "+name, err, "EINVAL")
	_, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 1, Message: msg, Tag: make([]byte, provider.MaxMAC+1)})
	w.expect("verify-mac oversize tag "+name, err, "EMSGSIZE")
	_, err = w.keys.Mac(ctx, &keystorev1.MacRequest{Key: name, Message: append(w.next("message"), make([]byte, provider.MaxMACMessage)...)})
	w.expect("mac oversize "+name, err, "EMSGSIZE")
	_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Message: w.next("message")})
	w.expect("sign with MAC key "+name, err, "EPERM")
	_, err = w.keys.Seal(ctx, &keystorev1.SealRequest{Key: name, Plaintext: w.next("plaintext"), Aad: w.next("aad")})
	w.expect("seal with MAC key "+name, err, "EPERM")
	_, err = w.keys.PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: name})
	w.expect("public key of a MAC key "+name, err, "EPERM")
	rot, err := w.keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: name})
	w.expect("rotate "+name, err, "ok")
	if err == nil {
		w.track(rot.GetKey())
	}
	msg2 := w.next("message")
	m2, err := w.keys.Mac(ctx, &keystorev1.MacRequest{Key: name, Message: msg2})
	w.expect("mac v2 "+name, err, "ok")
	if err == nil && m2.GetVersion() != 2 {
		t.Errorf("mac %s after a rotation: version %d, want 2", name, m2.GetVersion())
	}
	w.macked[m2.GetKey()+"@"+strconv.FormatUint(uint64(m2.GetVersion()), 10)] = msg2
	v, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 1, Message: msg, Tag: tag})
	w.expect("verify-mac retired version 1 "+name, err, "ok")
	if err == nil && !v.GetValid() {
		t.Errorf("verify-mac %s: version 1's tag no longer valid after a rotation", name)
	}
	_, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 3, Message: msg, Tag: tag})
	w.expect("verify-mac missing version 3 "+name, err, "ENOENT")
	mb, err := w.keys.MacBatch(ctx, &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{
		{Key: name, Message: w.next("message")},
		{Key: name, Message: append(w.next("message"), make([]byte, provider.MaxMACMessage)...)},
		{Key: "leak/mac/missing", Message: w.next("message")},
		{Key: "../../etc", Message: w.next("message")},
		{Key: keyName("other", provider.HMACSHA256), Message: w.next("message")},
		{Key: keyName("leak", provider.Ed25519), Message: w.next("message")},
	}})
	w.expect("mac batch "+name, err, "ok")
	// The operator may use the other app's key; a signing key cannot MAC.
	if got, want := batchReasons(mb.GetResults()), []string{"ok", "EMSGSIZE", "ENOENT", "EINVAL", "ok", "EPERM"}; err == nil && !slices.Equal(got, want) {
		t.Errorf("mac batch %s: results %v, want %v", name, got, want)
	}
	if res := mb.GetResults(); len(res) > 0 && len(res[0].GetResponse().GetTag()) != len(tag) {
		t.Errorf("mac batch %s: a %d-byte tag, want %d", name, len(res[0].GetResponse().GetTag()), len(tag))
	}
	vb, err := w.keys.VerifyMacBatch(ctx, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
		{Key: name, Version: 1, Message: msg, Tag: tag},
		{Key: name, Version: 2, Message: msg2, Tag: m2.GetTag()},
		{Key: name, Version: 1, Message: msg, Tag: bad},
		{Key: name, Version: 0, Message: msg, Tag: tag},
		{Key: "leak/mac/missing", Version: 1, Message: msg, Tag: tag},
		{Key: keyName("other", provider.HMACSHA256), Version: 1, Message: msg, Tag: tag},
	}})
	w.expect("verify-mac batch "+name, err, "ok")
	// Valid, valid, a flipped tag, no version, no such key, another key's
	// tag (to the operator, who may use that key).
	if got, want := batchReasons(vb.GetResults()), []string{"valid", "valid", "invalid", "EINVAL", "ENOENT", "invalid"}; err == nil && !slices.Equal(got, want) {
		t.Errorf("verify-mac batch %s: results %v, want %v", name, got, want)
	}
	r, err := w.keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: name, Version: 1})
	w.expect("revoke v1 "+name, err, "ok")
	if err == nil {
		w.track(r.GetKey())
	}
	_, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 1, Message: msg, Tag: tag})
	w.expect("verify-mac revoked v1 "+name, err, "EKEYREVOKED")
	_, err = w.keys.SetPolicy(ctx, &keystorev1.SetKeyPolicyRequest{Key: name, Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}})
	w.expect("set policy "+name, err, "ok")
	if g != nil {
		w.track(g.GetKey())
	}
}

// batchResult is one result of a batch response.
type batchResult interface {
	GetError() *keystorev1.ErrorDetail
}

// batchReasons returns each batch result's error reason, "ok" for a
// success, or "valid"/"invalid" for a verification's answer.
func batchReasons[R batchResult](results []R) []string {
	out := make([]string, len(results))
	for i, r := range results {
		out[i] = "ok"
		if e := r.GetError(); e != nil {
			out[i] = e.GetReason()
			continue
		}
		if v, ok := any(r).(*keystorev1.VerifyMacResult); ok {
			out[i] = "invalid"
			if v.GetResponse().GetValid() {
				out[i] = "valid"
			}
		}
	}
	return out
}

// createByUse creates keys by use alone (CreateKeyRequest.use, no
// algorithm): the provider's default of each use. A use that is none, or
// not the algorithm's, is EINVAL.
func (w *workload) createByUse(ctx context.Context) {
	t := w.t
	for use, want := range map[string]provider.Algorithm{"sign": provider.Ed25519, "mac": provider.HMACSHA256, "decrypt": provider.XChaCha20Poly1305} {
		r, err := w.keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: "leak/by-use/" + use, Use: use})
		w.expect("create by use "+use, err, "ok")
		if err != nil {
			continue
		}
		if got := provider.Algorithm(r.GetKey().GetAlgorithm()); got != want {
			t.Errorf("create by use %s: algorithm %s, want %s", use, got, want)
		}
		w.track(r.GetKey())
	}
	msg := w.next("message")
	m, err := w.keys.Mac(ctx, &keystorev1.MacRequest{Key: "leak/by-use/mac", Message: msg})
	w.expect("mac with the key created by use", err, "ok")
	if err == nil {
		w.macked[m.GetKey()+"@"+strconv.FormatUint(uint64(m.GetVersion()), 10)] = msg
	}
	for _, req := range []*keystorev1.CreateKeyRequest{
		{Key: "leak/by-use/bad", Use: "encrypt"},
		{Key: "leak/by-use/bad", Use: "MAC"},
		{Key: "leak/by-use/bad", Use: "mac", Algorithm: string(provider.Ed25519)},
		{Key: "leak/by-use/bad", Use: "sign", Algorithm: string(provider.HMACSHA256)},
	} {
		_, err := w.keys.Create(ctx, req)
		w.expect("create use "+strconv.Quote(req.Use)+" algorithm "+strconv.Quote(req.Algorithm), err, "EINVAL")
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
	_, err = w.keys.Mac(ctx, &keystorev1.MacRequest{Key: name, Message: w.next("message")})
	w.expect("mac with sealing key "+name, err, "EPERM")
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

	msg := w.next("message")
	m, err := w.keys.Mac(ctx, &keystorev1.MacRequest{Key: "mac/hmac-sha256", Message: msg})
	w.expect("app mac own key", err, "ok")
	v, err := w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: "mac/hmac-sha256", Version: int64(m.GetVersion()), Message: msg, Tag: m.GetTag()})
	w.expect("app verify-mac own key", err, "ok")
	if err == nil && !v.GetValid() {
		w.t.Error("app verify-mac own key: valid = false for the daemon's own tag")
	}

	otherSig, otherBox, otherMAC := keyName("other", provider.Ed25519), keyName("other", provider.XChaCha20Poly1305), keyName("other", provider.HMACSHA256)
	for _, name := range []string{otherSig, otherBox, otherMAC, "other/sig/missing", "other/mac/missing"} {
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
		_, err = w.keys.Mac(ctx, &keystorev1.MacRequest{Key: name, Message: w.next("message")})
		w.expect("app mac "+name, err, "EPERM")
		_, err = w.keys.VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: name, Version: 1, Message: msg, Tag: m.GetTag()})
		w.expect("app verify-mac "+name, err, "EPERM")
		_, err = w.keys.Sign(ctx, &keystorev1.SignRequest{Key: name, Version: 1, Message: w.next("message")})
		w.expect("app sign version 1 "+name, err, "EPERM")
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
	mb, err := w.keys.MacBatch(ctx, &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{
		{Key: "mac/hmac-sha256", Message: w.next("message")}, {Key: otherMAC, Message: w.next("message")},
	}})
	w.expect("app mac batch", err, "ok")
	if got, want := batchReasons(mb.GetResults()), []string{"ok", "EPERM"}; err == nil && !slices.Equal(got, want) {
		w.t.Errorf("app mac batch: results %v, want %v", got, want)
	}
	vb, err := w.keys.VerifyMacBatch(ctx, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
		{Key: "mac/hmac-sha256", Version: int64(m.GetVersion()), Message: msg, Tag: m.GetTag()},
		{Key: otherMAC, Version: 1, Message: msg, Tag: m.GetTag()},
	}})
	w.expect("app verify-mac batch", err, "ok")
	if got, want := batchReasons(vb.GetResults()), []string{"valid", "EPERM"}; err == nil && !slices.Equal(got, want) {
		w.t.Errorf("app verify-mac batch: results %v, want %v", got, want)
	}
	// Issue 12's calls: the app's own keys work, the other app's are
	// EPERM.
	dk, err := w.keys.GenerateDataKey(ctx, &keystorev1.GenerateDataKeyRequest{Key: "box/xchacha20-poly1305", Aad: w.next("aad")})
	w.expect("app data key own key", err, "ok")
	if err == nil {
		w.datakeys = append(w.datakeys, needle{what: "data key of the app phase", b: dk.GetPlaintext()})
	}
	inbox := keyName("leak", provider.HPKEX25519)
	if m, ok := w.hpke[inbox]; ok {
		d, err := w.keys.Decrypt(ctx, m.request("inbox/"+string(provider.HPKEX25519)))
		w.expect("app decrypt own key", err, "ok")
		if err == nil && !bytes.Equal(d.GetPlaintext(), m.plaintext) {
			w.t.Error("app decrypt own key: plaintext differs")
		}
		_, err = w.keys.Decrypt(ctx, m.request(keyName("other", provider.HPKEX25519)))
		w.expect("app decrypt other's key", err, "EPERM")
	} else {
		w.t.Errorf("no message to %s from the operator phase", inbox)
	}
	for _, name := range []string{otherBox, "other/box/missing"} {
		_, err = w.keys.GenerateDataKey(ctx, &keystorev1.GenerateDataKeyRequest{Key: name, Aad: w.next("aad")})
		w.expect("app data key "+name, err, "EPERM")
		_, err = w.keys.GenerateDataKeyWithoutPlaintext(ctx, &keystorev1.GenerateDataKeyRequest{Key: name})
		w.expect("app data key without plaintext "+name, err, "EPERM")
	}
	for _, name := range []string{"other/imp/new", "other/imp/missing"} {
		_, err = w.keys.GetImportParameters(ctx, &keystorev1.GetImportParametersRequest{Key: name, Algorithm: "aes-256-gcm"})
		w.expect("app import parameters "+name, err, "EPERM")
		_, err = w.keys.Import(ctx, &keystorev1.ImportKeyRequest{Key: name, Token: "kit1.AAAAAAAAAAAAAAAAAAAAAA", Enc: make([]byte, 32), Wrapped: w.next("plaintext")})
		w.expect("app import "+name, err, "EPERM")
	}
	_, err = w.admin.WrappingKeyStatus(ctx, &keystorev1.WrappingKeyStatusRequest{})
	w.expect("app KEK status", err, "EPERM")
	_, err = w.admin.RotateWrappingKey(ctx, &keystorev1.RotateWrappingKeyRequest{})
	w.expect("app KEK rotation", err, "EPERM")
}

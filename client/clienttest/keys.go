package clienttest

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudflare/circl/sign/ed448"
	"golang.org/x/crypto/chacha20poly1305"
	"google.golang.org/protobuf/types/known/timestamppb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

type fakeKey struct {
	id        string
	alg       provider.Algorithm
	use       provider.Use
	state     keystorev1.KeyState
	versions  []*fakeVersion // index v-1
	policy    *keystorev1.KeyPolicy
	created   time.Time
	revoked   time.Time
	destroyed time.Time
}

type fakeVersion struct {
	state   keystorev1.VersionState
	pub     []byte
	sign    func(msg []byte) []byte
	verify  func(msg, sig []byte) bool
	aeadKey []byte
	created time.Time
	retired time.Time
	revoked time.Time
}

func (k *fakeKey) current() uint32 { return uint32(len(k.versions)) }

func (k *fakeKey) metadata(insecure bool) *keystorev1.KeyMetadata {
	m := &keystorev1.KeyMetadata{
		Id:             k.id,
		Algorithm:      string(k.alg),
		Uses:           []string{k.use.String()},
		State:          k.state,
		CurrentVersion: k.current(),
		Policy:         k.policy,
		Provider:       "fake",
		Insecure:       insecure,
		Created:        ts(k.created),
		Revoked:        ts(k.revoked),
		Destroyed:      ts(k.destroyed),
	}
	for i, v := range k.versions {
		m.Versions = append(m.Versions, &keystorev1.KeyVersion{
			Version:   uint32(i + 1),
			State:     v.state,
			PublicKey: v.pub,
			Created:   ts(v.created),
			Retired:   ts(v.retired),
			Revoked:   ts(v.revoked),
			Destroyed: ts(k.destroyed),
		})
	}
	return m
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// newVersion generates material for alg. Called with mu held.
func newVersion(alg provider.Algorithm, now time.Time) (*fakeVersion, error) {
	v := &fakeVersion{state: keystorev1.VersionState_VERSION_STATE_PRIMARY, created: now}
	switch alg {
	case provider.Ed25519:
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, provider.Errorf(provider.EIO, "generate: %w", err)
		}
		v.pub = pub
		v.sign = func(msg []byte) []byte { return ed25519.Sign(priv, msg) }
		v.verify = func(msg, sig []byte) bool { return ed25519.Verify(pub, msg, sig) }
	case provider.Ed448:
		pub, priv, err := ed448.GenerateKey(nil)
		if err != nil {
			return nil, provider.Errorf(provider.EIO, "generate: %w", err)
		}
		v.pub = pub
		v.sign = func(msg []byte) []byte { return ed448.Sign(priv, msg, "") }
		v.verify = func(msg, sig []byte) bool { return ed448.Verify(pub, msg, sig, "") }
	case provider.XChaCha20Poly1305:
		k, err := randomBytes(chacha20poly1305.KeySize)
		if err != nil {
			return nil, err
		}
		v.aeadKey = k
	default:
		return nil, provider.Errorf(provider.ENOTSUP, "algorithm %q is not supported by the fake", string(alg))
	}
	return v, nil
}

type keysServer struct {
	keystorev1.UnimplementedKeysServer
	s *Server
}

// lookup resolves name and returns the key. Called with mu held.
func (ks *keysServer) lookup(op, name string) (*fakeKey, error) {
	id, err := ks.s.resolve(op, name)
	if err != nil {
		return nil, err
	}
	if ks.s.unreadable[id] {
		return nil, &provider.Error{Code: provider.EIO, Op: op, Key: id, Msg: "metadata is corrupted"}
	}
	k, ok := ks.s.keys[id]
	if !ok {
		return nil, &provider.Error{Code: provider.ENOENT, Op: op, Key: id}
	}
	return k, nil
}

// usable checks the key may be used at all and has use u.
func usable(op string, k *fakeKey, u provider.Use) error {
	if k.state != keystorev1.KeyState_KEY_STATE_ACTIVE {
		return &provider.Error{Code: provider.EKEYREVOKED, Op: op, Key: k.id}
	}
	if k.use != u {
		return &provider.Error{Code: provider.EPERM, Op: op, Key: k.id, Msg: "key has use " + k.use.String() + ", not " + u.String()}
	}
	return nil
}

// version returns version v for verify/unseal.
func version(op string, k *fakeKey, v int64) (*fakeVersion, error) {
	ref := k.id + "@" + strconv.FormatInt(v, 10)
	if v < 1 || v > int64(provider.MaxVersion) {
		return nil, &provider.Error{Code: provider.EINVAL, Op: op, Key: k.id, Msg: "version must be 1 .. " + provider.MaxVersion.String()}
	}
	if v > int64(len(k.versions)) {
		return nil, &provider.Error{Code: provider.ENOENT, Op: op, Key: ref}
	}
	if (op == "verify" || op == "unseal" || op == "rewrap") && uint32(v) < k.policy.GetMinDecryptionVersion() {
		return nil, &provider.Error{Code: provider.EPERM, Op: op, Key: ref, Msg: "version is below the key's minimum decryption version"}
	}
	fv := k.versions[v-1]
	if fv.state == keystorev1.VersionState_VERSION_STATE_REVOKED || fv.state == keystorev1.VersionState_VERSION_STATE_DESTROYED {
		return nil, &provider.Error{Code: provider.EKEYREVOKED, Op: op, Key: ref}
	}
	return fv, nil
}

func (ks *keysServer) Create(_ context.Context, req *keystorev1.CreateKeyRequest) (*keystorev1.CreateKeyResponse, error) {
	s := ks.s
	id, err := s.resolve("create", req.GetKey())
	if err != nil {
		return nil, err
	}
	alg := provider.Algorithm(req.GetAlgorithm())
	if alg == "" {
		alg = provider.XChaCha20Poly1305
	}
	use := provider.UseSign
	if alg == provider.XChaCha20Poly1305 {
		use = provider.UseDecrypt
	}
	if p := req.GetPolicy().GetRotationPeriodSeconds(); p != 0 && (p < 60 || p > 3153600000) {
		return nil, &provider.Error{Code: provider.EINVAL, Op: "create", Key: id, Msg: "rotation period must be 0 or 60 .. 3153600000 seconds"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[id]; ok {
		return nil, &provider.Error{Code: provider.EALREADY, Op: "create", Key: id}
	}
	now := s.now()
	v, err := newVersion(alg, now)
	if err != nil {
		return nil, provider.WithOp("create", id, err)
	}
	policy := req.GetPolicy()
	if policy == nil {
		policy = &keystorev1.KeyPolicy{}
	}
	k := &fakeKey{id: id, alg: alg, use: use, state: keystorev1.KeyState_KEY_STATE_ACTIVE, versions: []*fakeVersion{v}, policy: policy, created: now}
	s.keys[id] = k
	return &keystorev1.CreateKeyResponse{Key: k.metadata(s.opts.Insecure)}, nil
}

func (ks *keysServer) Get(_ context.Context, req *keystorev1.GetKeyRequest) (*keystorev1.GetKeyResponse, error) {
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	k, err := ks.lookup("get", req.GetKey())
	if err != nil {
		return nil, err
	}
	return &keystorev1.GetKeyResponse{Key: k.metadata(ks.s.opts.Insecure)}, nil
}

func (ks *keysServer) List(_ context.Context, req *keystorev1.ListKeysRequest) (*keystorev1.ListKeysResponse, error) {
	s := ks.s
	app := req.GetApp()
	if app != "" && app != s.opts.App && !s.opts.Operator {
		return nil, &provider.Error{Code: provider.EPERM, Op: "list", Key: app}
	}
	if app == "" && !s.opts.Operator {
		app = s.opts.App
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.keys {
		if app == "" || strings.HasPrefix(id, app+"/") {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	page, next, err := paginate(ids, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, provider.WithOp("list", "", err)
	}
	resp := &keystorev1.ListKeysResponse{NextPageToken: next}
	for _, id := range page {
		if s.unreadable[id] {
			resp.Unreadable = append(resp.Unreadable, &keystorev1.UnreadableKey{Id: id, Error: &keystorev1.ErrorDetail{Reason: "EIO", Message: id + ": metadata is corrupted (EIO)"}})
			continue
		}
		resp.Keys = append(resp.Keys, s.keys[id].metadata(s.opts.Insecure))
	}
	return resp, nil
}

func (ks *keysServer) Rotate(_ context.Context, req *keystorev1.RotateKeyRequest) (*keystorev1.RotateKeyResponse, error) {
	s := ks.s
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := ks.lookup("rotate", req.GetKey())
	if err != nil {
		return nil, err
	}
	if k.state != keystorev1.KeyState_KEY_STATE_ACTIVE {
		return nil, &provider.Error{Code: provider.EKEYREVOKED, Op: "rotate", Key: k.id}
	}
	now := s.now()
	v, err := newVersion(k.alg, now)
	if err != nil {
		return nil, provider.WithOp("rotate", k.id, err)
	}
	for _, old := range k.versions {
		if old.state == keystorev1.VersionState_VERSION_STATE_PRIMARY {
			old.state, old.retired = keystorev1.VersionState_VERSION_STATE_RETIRED, now
		}
	}
	k.versions = append(k.versions, v)
	return &keystorev1.RotateKeyResponse{Key: k.metadata(s.opts.Insecure)}, nil
}

func (ks *keysServer) Revoke(_ context.Context, req *keystorev1.RevokeKeyRequest) (*keystorev1.RevokeKeyResponse, error) {
	s := ks.s
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := ks.lookup("revoke", req.GetKey())
	if err != nil {
		return nil, err
	}
	if k.state != keystorev1.KeyState_KEY_STATE_ACTIVE {
		return nil, &provider.Error{Code: provider.EALREADY, Op: "revoke", Key: k.id, Msg: "key is already revoked"}
	}
	now := s.now()
	k.state, k.revoked = keystorev1.KeyState_KEY_STATE_REVOKED, now
	for _, v := range k.versions {
		if v.state != keystorev1.VersionState_VERSION_STATE_REVOKED {
			v.state, v.revoked = keystorev1.VersionState_VERSION_STATE_REVOKED, now
		}
	}
	return &keystorev1.RevokeKeyResponse{Key: k.metadata(s.opts.Insecure)}, nil
}

func (ks *keysServer) RevokeVersion(_ context.Context, req *keystorev1.RevokeKeyVersionRequest) (*keystorev1.RevokeKeyVersionResponse, error) {
	s := ks.s
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := ks.lookup("revoke-version", req.GetKey())
	if err != nil {
		return nil, err
	}
	v, err := version("revoke-version", k, req.GetVersion())
	if err != nil {
		return nil, err
	}
	if v.state == keystorev1.VersionState_VERSION_STATE_PRIMARY {
		return nil, &provider.Error{Code: provider.EPERM, Op: "revoke-version", Key: k.id, Msg: "the primary version cannot be revoked; rotate first"}
	}
	v.state, v.revoked = keystorev1.VersionState_VERSION_STATE_REVOKED, s.now()
	return &keystorev1.RevokeKeyVersionResponse{Key: k.metadata(s.opts.Insecure)}, nil
}

func (ks *keysServer) Destroy(_ context.Context, req *keystorev1.DestroyKeyRequest) (*keystorev1.DestroyKeyResponse, error) {
	s := ks.s
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := ks.lookup("destroy", req.GetKey())
	if err != nil {
		return nil, err
	}
	switch k.state {
	case keystorev1.KeyState_KEY_STATE_ACTIVE:
		return nil, &provider.Error{Code: provider.EPERM, Op: "destroy", Key: k.id, Msg: "revoke the key first"}
	case keystorev1.KeyState_KEY_STATE_DESTROYED:
		return nil, &provider.Error{Code: provider.EALREADY, Op: "destroy", Key: k.id, Msg: "key is already destroyed"}
	}
	k.state, k.destroyed = keystorev1.KeyState_KEY_STATE_DESTROYED, s.now()
	for _, v := range k.versions {
		v.state, v.sign, v.aeadKey = keystorev1.VersionState_VERSION_STATE_DESTROYED, nil, nil
	}
	return &keystorev1.DestroyKeyResponse{Key: k.metadata(s.opts.Insecure)}, nil
}

func (ks *keysServer) SetPolicy(_ context.Context, req *keystorev1.SetKeyPolicyRequest) (*keystorev1.SetKeyPolicyResponse, error) {
	s := ks.s
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := ks.lookup("set-policy", req.GetKey())
	if err != nil {
		return nil, err
	}
	if k.state != keystorev1.KeyState_KEY_STATE_ACTIVE {
		return nil, &provider.Error{Code: provider.EKEYREVOKED, Op: "set-policy", Key: k.id}
	}
	if req.GetPolicy() != nil {
		k.policy = req.GetPolicy()
	}
	return &keystorev1.SetKeyPolicyResponse{Key: k.metadata(s.opts.Insecure)}, nil
}

func (ks *keysServer) PublicKey(_ context.Context, req *keystorev1.PublicKeyRequest) (*keystorev1.PublicKeyResponse, error) {
	s := ks.s
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := ks.lookup("public-key", req.GetKey())
	if err != nil {
		return nil, err
	}
	if k.use != provider.UseSign {
		return nil, &provider.Error{Code: provider.EPERM, Op: "public-key", Key: k.id, Msg: "not a signing key"}
	}
	n := req.GetVersion()
	if n == 0 {
		n = int64(k.current())
	}
	if _, err := version("public-key", k, n); err != nil {
		return nil, err
	}
	return &keystorev1.PublicKeyResponse{Key: k.id, Version: uint32(n), Algorithm: string(k.alg), PublicKey: k.versions[n-1].pub}, nil
}

func (ks *keysServer) Sign(_ context.Context, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	return ks.sign(req)
}

// sign signs one item. Called with mu held.
func (ks *keysServer) sign(req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	k, err := ks.lookup("sign", req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := usable("sign", k, provider.UseSign); err != nil {
		return nil, err
	}
	if len(req.GetMessage()) > provider.MaxSignMessage {
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: "sign", Key: k.id, Msg: "message over " + strconv.Itoa(provider.MaxSignMessage) + " bytes"}
	}
	v := k.versions[k.current()-1]
	return &keystorev1.SignResponse{Key: k.id, Version: k.current(), Signature: v.sign(req.GetMessage())}, nil
}

func (ks *keysServer) Verify(_ context.Context, req *keystorev1.VerifyRequest) (*keystorev1.VerifyResponse, error) {
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	k, err := ks.lookup("verify", req.GetKey())
	if err != nil {
		return nil, err
	}
	if k.state != keystorev1.KeyState_KEY_STATE_ACTIVE {
		return nil, &provider.Error{Code: provider.EKEYREVOKED, Op: "verify", Key: k.id}
	}
	if k.use != provider.UseSign {
		return nil, &provider.Error{Code: provider.EPERM, Op: "verify", Key: k.id, Msg: "not a signing key"}
	}
	if len(req.GetMessage()) > provider.MaxSignMessage {
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: "verify", Key: k.id, Msg: "message over " + strconv.Itoa(provider.MaxSignMessage) + " bytes"}
	}
	v, err := version("verify", k, req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &keystorev1.VerifyResponse{Valid: v.verify(req.GetMessage(), req.GetSignature())}, nil
}

// The fake's sealed format: version (4 bytes big-endian) ‖ nonce ‖
// ciphertext ‖ tag, with the key ID, the version and the caller's AAD
// authenticated.
func sealAAD(id string, version uint32, aad []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, version)
	b = append(b, id...)
	b = append(b, 0)
	return append(b, aad...)
}

// seal seals one item. Called with mu held.
func (ks *keysServer) seal(op string, req *keystorev1.SealRequest) (*keystorev1.SealResponse, error) {
	k, err := ks.lookup(op, req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := usable(op, k, provider.UseDecrypt); err != nil {
		return nil, err
	}
	switch {
	case len(req.GetPlaintext()) > provider.MaxSealPlaintext:
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: op, Key: k.id, Msg: "plaintext over " + strconv.Itoa(provider.MaxSealPlaintext) + " bytes"}
	case len(req.GetAad()) > provider.MaxAAD:
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: op, Key: k.id, Msg: "AAD over " + strconv.Itoa(provider.MaxAAD) + " bytes"}
	}
	n := k.current()
	aead, err := chacha20poly1305.NewX(k.versions[n-1].aeadKey)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "aead: %w", err)
	}
	nonce, err := randomBytes(aead.NonceSize())
	if err != nil {
		return nil, err
	}
	out := binary.BigEndian.AppendUint32(nil, n)
	out = append(out, nonce...)
	out = aead.Seal(out, nonce, req.GetPlaintext(), sealAAD(k.id, n, req.GetAad()))
	return &keystorev1.SealResponse{Sealed: out, Version: n}, nil
}

// unseal opens one item. Called with mu held.
func (ks *keysServer) unseal(op string, req *keystorev1.UnsealRequest) (*keystorev1.UnsealResponse, error) {
	k, err := ks.lookup(op, req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := usable(op, k, provider.UseDecrypt); err != nil {
		return nil, err
	}
	sealed := req.GetSealed()
	switch {
	case len(sealed) > provider.MaxSealed:
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: op, Key: k.id, Msg: "sealed data over " + strconv.Itoa(provider.MaxSealed) + " bytes"}
	case len(req.GetAad()) > provider.MaxAAD:
		return nil, &provider.Error{Code: provider.EMSGSIZE, Op: op, Key: k.id, Msg: "AAD over " + strconv.Itoa(provider.MaxAAD) + " bytes"}
	case len(sealed) < 4+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead:
		return nil, &provider.Error{Code: provider.EBADMSG, Op: op, Key: k.id, Msg: "malformed sealed data"}
	}
	n := binary.BigEndian.Uint32(sealed)
	v, err := version(op, k, int64(n))
	if err != nil {
		if code, _ := provider.CodeOf(err); code == provider.EINVAL || code == provider.ENOENT {
			return nil, &provider.Error{Code: provider.EBADMSG, Op: op, Key: k.id, Msg: "authentication failed"}
		}
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(v.aeadKey)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "aead: %w", err)
	}
	nonce := sealed[4 : 4+chacha20poly1305.NonceSizeX]
	pt, err := aead.Open(nil, nonce, sealed[4+chacha20poly1305.NonceSizeX:], sealAAD(k.id, n, req.GetAad()))
	if err != nil {
		return nil, &provider.Error{Code: provider.EBADMSG, Op: op, Key: k.id, Msg: "authentication failed"}
	}
	return &keystorev1.UnsealResponse{Plaintext: pt, Version: n}, nil
}

func (ks *keysServer) Seal(_ context.Context, req *keystorev1.SealRequest) (*keystorev1.SealResponse, error) {
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	return ks.seal("seal", req)
}

func (ks *keysServer) Unseal(_ context.Context, req *keystorev1.UnsealRequest) (*keystorev1.UnsealResponse, error) {
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	return ks.unseal("unseal", req)
}

func (ks *keysServer) Rewrap(_ context.Context, req *keystorev1.RewrapRequest) (*keystorev1.RewrapResponse, error) {
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	pt, err := ks.unseal("rewrap", &keystorev1.UnsealRequest{Key: req.GetKey(), Sealed: req.GetSealed(), Aad: req.GetAad()})
	if err != nil {
		return nil, err
	}
	out, err := ks.seal("rewrap", &keystorev1.SealRequest{Key: req.GetKey(), Plaintext: pt.GetPlaintext(), Aad: req.GetAad()})
	if err != nil {
		return nil, err
	}
	return &keystorev1.RewrapResponse{Sealed: out.GetSealed(), Version: out.GetVersion()}, nil
}

// maxBatch is the most items of a batch.
const maxBatch = 1024

func checkBatch(op string, n int) error {
	if n == 0 || n > maxBatch {
		return &provider.Error{Code: provider.EINVAL, Op: op, Msg: "a batch holds 1 .. " + strconv.Itoa(maxBatch) + " items, not " + strconv.Itoa(n)}
	}
	return nil
}

// detail converts an item error.
func detail(err error) *keystorev1.ErrorDetail {
	code, ok := provider.CodeOf(err)
	if !ok {
		code = provider.EIO
	}
	return &keystorev1.ErrorDetail{Reason: code.String(), Message: err.Error()}
}

func (ks *keysServer) SignBatch(_ context.Context, req *keystorev1.SignBatchRequest) (*keystorev1.SignBatchResponse, error) {
	if err := checkBatch("sign-batch", len(req.GetItems())); err != nil {
		return nil, err
	}
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	resp := &keystorev1.SignBatchResponse{}
	for _, it := range req.GetItems() {
		r, err := ks.sign(it)
		if err != nil {
			resp.Results = append(resp.Results, &keystorev1.SignResult{Error: detail(err)})
			continue
		}
		resp.Results = append(resp.Results, &keystorev1.SignResult{Response: r})
	}
	return resp, nil
}

func (ks *keysServer) SealBatch(_ context.Context, req *keystorev1.SealBatchRequest) (*keystorev1.SealBatchResponse, error) {
	if err := checkBatch("seal-batch", len(req.GetItems())); err != nil {
		return nil, err
	}
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	resp := &keystorev1.SealBatchResponse{}
	for _, it := range req.GetItems() {
		r, err := ks.seal("seal", it)
		if err != nil {
			resp.Results = append(resp.Results, &keystorev1.SealResult{Error: detail(err)})
			continue
		}
		resp.Results = append(resp.Results, &keystorev1.SealResult{Response: r})
	}
	return resp, nil
}

func (ks *keysServer) UnsealBatch(_ context.Context, req *keystorev1.UnsealBatchRequest) (*keystorev1.UnsealBatchResponse, error) {
	if err := checkBatch("unseal-batch", len(req.GetItems())); err != nil {
		return nil, err
	}
	ks.s.mu.Lock()
	defer ks.s.mu.Unlock()
	resp := &keystorev1.UnsealBatchResponse{}
	for _, it := range req.GetItems() {
		r, err := ks.unseal("unseal", it)
		if err != nil {
			resp.Results = append(resp.Results, &keystorev1.UnsealResult{Error: detail(err)})
			continue
		}
		resp.Results = append(resp.Results, &keystorev1.UnsealResult{Response: r})
	}
	return resp, nil
}

package conformance_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"strconv"
	"sync"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Broken providers: each wraps a good one and breaks one requirement, so
// the tests can show that the suite notices.

// openIgnoresAAD seals and opens without the caller's AAD.
type openIgnoresAAD struct{ provider.Provider }

func (p openIgnoresAAD) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, pt, _ []byte) ([]byte, error) {
	return p.Provider.Seal(ctx, ref, h, pt, nil)
}

func (p openIgnoresAAD) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, _ []byte) ([]byte, error) {
	return p.Provider.Open(ctx, ref, h, sealed, nil)
}

// signsOtherMessage signs the message with a byte appended.
type signsOtherMessage struct{ provider.Provider }

func (p signsOtherMessage) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return p.Provider.Sign(ctx, ref, h, append(bytes.Clone(msg), 0))
}

// truncatesMessage signs an oversize message's first MaxSignMessage bytes.
type truncatesMessage struct{ provider.Provider }

func (p truncatesMessage) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if len(msg) > provider.MaxSignMessage {
		msg = msg[:provider.MaxSignMessage]
	}
	return p.Provider.Sign(ctx, ref, h, msg)
}

// leaksSecretInHandle appends the key's first known secret to its handle
// (and strips it again on use).
type leaksSecretInHandle struct {
	provider.Provider
	known func(provider.KeyRef) ([][]byte, error)
}

// newLeaksSecretInHandle remembers the known secrets of each ref: for an
// RSA key they cost a key generation, and strip needs them on every call.
func newLeaksSecretInHandle(p provider.Provider, known func(provider.KeyRef) ([][]byte, error)) leaksSecretInHandle {
	var mu sync.Mutex
	memo := map[provider.KeyRef][][]byte{}
	return leaksSecretInHandle{p, func(ref provider.KeyRef) ([][]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if s, ok := memo[ref]; ok {
			return s, nil
		}
		s, err := known(ref)
		if err == nil {
			memo[ref] = s
		}
		return s, err
	}}
}

func (p leaksSecretInHandle) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	g, err := p.Provider.Generate(ctx, ref)
	if err != nil {
		return g, err
	}
	secrets, err := p.known(ref)
	if err != nil || len(secrets) == 0 {
		return provider.Generated{}, provider.Errorf(provider.EIO, "test: no known secret: %w", err)
	}
	g.Handle = append(bytes.Clone(g.Handle), secrets[0]...)
	return g, nil
}

func (p leaksSecretInHandle) strip(ref provider.KeyRef, h provider.Handle) provider.Handle {
	if secrets, err := p.known(ref); err == nil && len(secrets) > 0 && bytes.HasSuffix(h, secrets[0]) {
		return h[:len(h)-len(secrets[0])]
	}
	return h
}

func (p leaksSecretInHandle) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return p.Provider.Sign(ctx, ref, p.strip(ref, h), msg)
}

func (p leaksSecretInHandle) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, pt, aad []byte) ([]byte, error) {
	return p.Provider.Seal(ctx, ref, p.strip(ref, h), pt, aad)
}

func (p leaksSecretInHandle) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	return p.Provider.Open(ctx, ref, p.strip(ref, h), sealed, aad)
}

// uncodedErrors flattens every error to a string without a code.
type uncodedErrors struct{ provider.Provider }

func flatten(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(err.Error())
}

func (p uncodedErrors) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	g, err := p.Provider.Generate(ctx, ref)
	return g, flatten(err)
}

func (p uncodedErrors) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	out, err := p.Provider.Sign(ctx, ref, h, msg)
	return out, flatten(err)
}

func (p uncodedErrors) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, pt, aad []byte) ([]byte, error) {
	out, err := p.Provider.Seal(ctx, ref, h, pt, aad)
	return out, flatten(err)
}

func (p uncodedErrors) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	out, err := p.Provider.Open(ctx, ref, h, sealed, aad)
	return out, flatten(err)
}

func (p uncodedErrors) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	return flatten(p.Provider.Destroy(ctx, ref, h))
}

// repeatsSeals returns the first blob again for the same plaintext and AAD.
type repeatsSeals struct {
	provider.Provider
	mu   *sync.Mutex
	seen map[string][]byte
}

func newRepeatsSeals(p provider.Provider) repeatsSeals {
	return repeatsSeals{Provider: p, mu: &sync.Mutex{}, seen: map[string][]byte{}}
}

func (p repeatsSeals) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, pt, aad []byte) ([]byte, error) {
	key := ref.String() + "\x00" + string(pt) + "\x00" + string(aad)
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.seen[key]; ok {
		return bytes.Clone(b), nil
	}
	b, err := p.Provider.Seal(ctx, ref, h, pt, aad)
	if err == nil {
		p.seen[key] = bytes.Clone(b)
	}
	return b, err
}

// forgetsDestroy does nothing on Destroy.
type forgetsDestroy struct{ provider.Provider }

func (forgetsDestroy) Destroy(context.Context, provider.KeyRef, provider.Handle) error { return nil }

// ignoresVersion serves every ref as version 1 of its key.
type ignoresVersion struct{ provider.Provider }

func v1(ref provider.KeyRef) provider.KeyRef {
	if ref.Version != 0 {
		ref.Version = 1
	}
	return ref
}

func (p ignoresVersion) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return p.Provider.Sign(ctx, v1(ref), h, msg)
}

func (p ignoresVersion) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, pt, aad []byte) ([]byte, error) {
	return p.Provider.Seal(ctx, v1(ref), h, pt, aad)
}

func (p ignoresVersion) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	return p.Provider.Open(ctx, v1(ref), h, sealed, aad)
}

func (p ignoresVersion) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	return p.Provider.Destroy(ctx, v1(ref), h)
}

// ignoresInvalidVersion repairs a zero version instead of refusing it.
type ignoresInvalidVersion struct{ provider.Provider }

func fixVersion(ref provider.KeyRef) provider.KeyRef {
	if ref.Version == 0 {
		ref.Version = 1
	}
	return ref
}

func (p ignoresInvalidVersion) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	return p.Provider.Generate(ctx, fixVersion(ref))
}

func (p ignoresInvalidVersion) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return p.Provider.Sign(ctx, fixVersion(ref), h, msg)
}

// permissionAsInvalid reports EINVAL where the provider says EPERM.
type permissionAsInvalid struct{ provider.Provider }

func recode(err error) error {
	if errors.Is(err, provider.ErrPermission) {
		return provider.Errorf(provider.EINVAL, "wrong use")
	}
	return err
}

func (p permissionAsInvalid) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	out, err := p.Provider.Sign(ctx, ref, h, msg)
	return out, recode(err)
}

func (p permissionAsInvalid) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, pt, aad []byte) ([]byte, error) {
	out, err := p.Provider.Seal(ctx, ref, h, pt, aad)
	return out, recode(err)
}

// ignoresContext replaces the caller's context with a live one.
type ignoresContext struct{ provider.Provider }

func (p ignoresContext) Generate(_ context.Context, ref provider.KeyRef) (provider.Generated, error) {
	return p.Provider.Generate(context.Background(), ref)
}

func (p ignoresContext) Sign(_ context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return p.Provider.Sign(context.Background(), ref, h, msg)
}

// hangsWhenCancelled blocks in Sign when the context is done, until release
// is closed.
type hangsWhenCancelled struct {
	provider.Provider
	release chan struct{}
}

func (p hangsWhenCancelled) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if ctx.Err() != nil {
		<-p.release
	}
	return p.Provider.Sign(ctx, ref, h, msg)
}

// panicsOnShortHandle panics in Sign when the handle is short.
type panicsOnShortHandle struct{ provider.Provider }

func (p panicsOnShortHandle) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	_ = h[8] // index out of range for short handles
	return p.Provider.Sign(ctx, ref, h, msg)
}

// partialOpen returns bytes along with an Open error.
type partialOpen struct{ provider.Provider }

func (p partialOpen) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	out, err := p.Provider.Open(ctx, ref, h, sealed, aad)
	if err != nil {
		return []byte("partial"), err
	}
	return out, nil
}

// infoWrapper rewrites what Info returns.
type infoWrapper struct {
	provider.Provider
	edit func(provider.Info) provider.Info
}

func (p infoWrapper) Info(ctx context.Context) (provider.Info, error) {
	info, err := p.Provider.Info(ctx)
	if err != nil {
		return info, err
	}
	return p.edit(info), nil
}

// unstableInfo reports a different version on every call.
type unstableInfo struct {
	provider.Provider
	mu *sync.Mutex
	n  *int
}

func (p unstableInfo) Info(ctx context.Context) (provider.Info, error) {
	info, err := p.Provider.Info(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	*p.n++
	info.Version += string(rune('a' + *p.n%26))
	return info, err
}

// unstableKEKs announces a different KEK fingerprint on every call.
type unstableKEKs struct {
	provider.Provider
	mu *sync.Mutex
	n  *int
}

func (p unstableKEKs) Info(ctx context.Context) (provider.Info, error) {
	info, err := p.Provider.Info(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	*p.n++
	info.KEKs = []string{strconv.FormatInt(int64(*p.n), 16)}
	return info, err
}

// sharesInfo returns the same Algorithms slice on every call.
type sharesInfo struct {
	provider.Provider
	info *provider.Info
}

func (p sharesInfo) Info(context.Context) (provider.Info, error) { return *p.info, nil }

// sameKey returns the first key of an algorithm for every ref of it.
type sameKey struct {
	provider.Provider
	mu    *sync.Mutex
	first map[provider.Algorithm]provider.Generated
}

func (p sameKey) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g, ok := p.first[ref.Algorithm]; ok {
		return g, nil
	}
	g, err := p.Provider.Generate(ctx, ref)
	if err == nil {
		p.first[ref.Algorithm] = g
	}
	return g, err
}

// shortPublicKey drops the last byte of every public key.
type shortPublicKey struct{ provider.Provider }

func (p shortPublicKey) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	g, err := p.Provider.Generate(ctx, ref)
	if len(g.PublicKey) > 0 {
		g.PublicKey = g.PublicKey[:len(g.PublicKey)-1]
	}
	return g, err
}

// acceptsOtherProvider generates keys for refs of any provider name.
type acceptsOtherProvider struct {
	provider.Provider
	name string
}

func (p acceptsOtherProvider) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	ref.Provider = p.name
	return p.Provider.Generate(ctx, ref)
}

// unsupportedAsInvalid reports EINVAL for algorithms it does not announce.
type unsupportedAsInvalid struct{ provider.Provider }

func (p unsupportedAsInvalid) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	if _, err := alg.Default().Lookup(ref.Algorithm); err != nil {
		return provider.Generated{}, provider.Errorf(provider.EINVAL, "bad algorithm")
	}
	return p.Provider.Generate(ctx, ref)
}

// leaksInFormat keeps the secrets of the keys it generated in a field that
// fmt prints.
type leaksInFormat struct {
	provider.Provider
	known   func(provider.KeyRef) ([][]byte, error)
	mu      sync.Mutex
	secrets [][]byte
}

func (p *leaksInFormat) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	g, err := p.Provider.Generate(ctx, ref)
	if err == nil {
		if s, kerr := p.known(ref); kerr == nil {
			p.mu.Lock()
			p.secrets = append(p.secrets, s...)
			p.mu.Unlock()
		}
	}
	return g, err
}

// echoesPayload puts the plaintext in Open and Seal errors.
type echoesPayload struct{ provider.Provider }

func (p echoesPayload) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	out, err := p.Provider.Open(ctx, ref, h, sealed, aad)
	if err != nil {
		return nil, provider.Errorf(provider.EBADMSG, "open failed for aad %s: %w", string(aad), err)
	}
	return out, nil
}

// lazyCommit rotates its KEK but never drops the old one at the commit.
type lazyCommit struct{ provider.Provider }

func (p lazyCommit) BeginKEKRotation(ctx context.Context) (string, error) {
	return p.Provider.(provider.KEKRotator).BeginKEKRotation(ctx)
}

func (p lazyCommit) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return p.Provider.(provider.KEKRotator).RewrapHandle(ctx, ref, h)
}

func (p lazyCommit) CommitKEKRotation(context.Context) error { return nil }

// noRewrap returns every handle as it was from RewrapHandle.
type noRewrap struct{ provider.Provider }

func (p noRewrap) BeginKEKRotation(ctx context.Context) (string, error) {
	return p.Provider.(provider.KEKRotator).BeginKEKRotation(ctx)
}

func (p noRewrap) RewrapHandle(_ context.Context, _ provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return h, nil
}

func (p noRewrap) CommitKEKRotation(ctx context.Context) error {
	return p.Provider.(provider.KEKRotator).CommitKEKRotation(ctx)
}

// SignDigest, MAC and Destroy of the wrappers above, where their fault
// concerns those operations too.

func (p leaksSecretInHandle) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	return p.Provider.SignDigest(ctx, ref, p.strip(ref, h), hash, digest)
}

func (p leaksSecretInHandle) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return p.Provider.MAC(ctx, ref, p.strip(ref, h), msg)
}

func (p leaksSecretInHandle) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	return p.Provider.Destroy(ctx, ref, p.strip(ref, h))
}

func (p uncodedErrors) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	out, err := p.Provider.SignDigest(ctx, ref, h, hash, digest)
	return out, flatten(err)
}

func (p uncodedErrors) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	out, err := p.Provider.MAC(ctx, ref, h, msg)
	return out, flatten(err)
}

func (p ignoresVersion) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	return p.Provider.SignDigest(ctx, v1(ref), h, hash, digest)
}

func (p ignoresVersion) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return p.Provider.MAC(ctx, v1(ref), h, msg)
}

func (p permissionAsInvalid) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	out, err := p.Provider.SignDigest(ctx, ref, h, hash, digest)
	return out, recode(err)
}

func (p permissionAsInvalid) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	out, err := p.Provider.MAC(ctx, ref, h, msg)
	return out, recode(err)
}

// signsOtherDigest signs the digest with its first bit flipped.
type signsOtherDigest struct{ provider.Provider }

func (p signsOtherDigest) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	d := bytes.Clone(digest)
	if len(d) > 0 {
		d[0] ^= 1
	}
	return p.Provider.SignDigest(ctx, ref, h, hash, d)
}

// digestAnyHash signs a digest of any hash (and length) as one of the
// algorithm's: it pads or cuts it to the size of the algorithm's hash.
type digestAnyHash struct{ provider.Provider }

func (p digestAnyHash) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, _ crypto.Hash, digest []byte) ([]byte, error) {
	s, err := alg.Default().Lookup(ref.Algorithm)
	if err != nil || s.Hash == 0 {
		return p.Provider.SignDigest(ctx, ref, h, crypto.SHA256, make([]byte, 32))
	}
	d := make([]byte, s.Hash.Size())
	copy(d, digest)
	return p.Provider.SignDigest(ctx, ref, h, s.Hash, d)
}

// digestOfMessage answers SignDigest with a signature of the digest bytes
// taken as a message (the classic double hash).
type digestOfMessage struct{ provider.Provider }

func (p digestOfMessage) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, _ crypto.Hash, digest []byte) ([]byte, error) {
	return p.Provider.Sign(ctx, ref, h, digest)
}

// truncatesTag returns the first 16 bytes of every tag.
type truncatesTag struct{ provider.Provider }

func (p truncatesTag) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	tag, err := p.Provider.MAC(ctx, ref, h, msg)
	if len(tag) > 16 {
		tag = tag[:16]
	}
	return tag, err
}

// macTruncatesMessage tags an oversize message's first MaxMACMessage
// bytes.
type macTruncatesMessage struct{ provider.Provider }

func (p macTruncatesMessage) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if len(msg) > provider.MaxMACMessage {
		msg = msg[:provider.MaxMACMessage]
	}
	return p.Provider.MAC(ctx, ref, h, msg)
}

// macUnkeyed returns a plain SHA-256 of the message: the same for every
// key, and no HMAC at all.
type macUnkeyed struct{ provider.Provider }

func (p macUnkeyed) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if _, err := p.Provider.MAC(ctx, ref, h, msg); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(msg)
	return sum[:], nil
}

// macWrongKey computes the tag under the key's secret with one byte
// changed: a tag that looks right but is not HMAC under the key.
type macWrongKey struct{ provider.Provider }

func (p macWrongKey) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	tag, err := p.Provider.MAC(ctx, ref, h, msg)
	if err != nil {
		return nil, err
	}
	return p.Provider.MAC(ctx, ref, h, append(tag, msg...))
}

// macForAnyUse serves MAC for a key of any use (a signature key's handle
// under its own ref included), with a hash of the message: the use check
// forgotten.
type macForAnyUse struct{ provider.Provider }

func (p macForAnyUse) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if ref.Use != provider.UseMAC {
		sum := sha256.Sum256(append(bytes.Clone(h), msg...))
		return sum[:], nil
	}
	return p.Provider.MAC(ctx, ref, h, msg)
}

// pkixPublicKey returns RSA and ECDSA public keys as PKIX
// SubjectPublicKeyInfo DER instead of the contract's encodings.
type pkixPublicKey struct{ provider.Provider }

func (p pkixPublicKey) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	g, err := p.Provider.Generate(ctx, ref)
	if err != nil {
		return g, err
	}
	var pub any
	switch ref.Algorithm {
	case provider.RSA2048PSS, provider.RSA2048PKCS1:
		pub, err = x509.ParsePKCS1PublicKey(g.PublicKey)
	case provider.ECDSAP256:
		pub, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), g.PublicKey)
	default:
		return g, nil
	}
	if err != nil {
		return provider.Generated{}, provider.Errorf(provider.EIO, "test: %v", err)
	}
	if g.PublicKey, err = x509.MarshalPKIXPublicKey(pub); err != nil {
		return provider.Generated{}, provider.Errorf(provider.EIO, "test: %v", err)
	}
	return g, nil
}

// rawECDSA returns ECDSA signatures as the fixed-size r ‖ s of JOSE
// instead of ASN.1 DER.
type rawECDSA struct{ provider.Provider }

func (p rawECDSA) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	sig, err := p.Provider.Sign(ctx, ref, h, msg)
	if err != nil || ref.Algorithm != provider.ECDSAP256 {
		return sig, err
	}
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &v); err != nil {
		return nil, provider.Errorf(provider.EIO, "test: %v", err)
	}
	out := make([]byte, 64)
	v.R.FillBytes(out[:32])
	v.S.FillBytes(out[32:])
	return out, nil
}

// macErrorLeaks puts the key's secret, in hex, in the error of a MAC with
// a corrupted handle.
type macErrorLeaks struct {
	provider.Provider
	known func(provider.KeyRef) ([][]byte, error)
}

func (p macErrorLeaks) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	tag, err := p.Provider.MAC(ctx, ref, h, msg)
	if err != nil {
		if s, kerr := p.known(ref); kerr == nil && len(s) > 0 {
			return nil, provider.Errorf(provider.EIO, "unwrap failed, key was %x: %w", s[0], err)
		}
	}
	return tag, err
}

// ignoresHPKEContext decrypts a message whose info (or AAD) is wrong with
// the info (AAD) it last decrypted the same enc with: as if it did not
// authenticate that part of the context.
type ignoresHPKEContext struct {
	provider.Provider
	info bool // the info; else the AAD
	mu   *sync.Mutex
	seen map[string][]byte // enc → the info or AAD of its last success
}

func newIgnoresContext(p provider.Provider, info bool) ignoresHPKEContext {
	return ignoresHPKEContext{Provider: p, info: info, mu: &sync.Mutex{}, seen: map[string][]byte{}}
}

func (p ignoresHPKEContext) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ct, info, aad []byte) ([]byte, error) {
	pt, err := p.Provider.Decrypt(ctx, ref, h, enc, ct, info, aad)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		if p.info {
			p.seen[string(enc)] = bytes.Clone(info)
		} else {
			p.seen[string(enc)] = bytes.Clone(aad)
		}
		return pt, nil
	}
	if prev, ok := p.seen[string(enc)]; ok && errors.Is(err, provider.ErrBadMessage) {
		if p.info {
			return p.Provider.Decrypt(ctx, ref, h, enc, ct, prev, aad)
		}
		return p.Provider.Decrypt(ctx, ref, h, enc, ct, info, prev)
	}
	return nil, err
}

// decryptAnyUse answers Decrypt for a key of another use with EBADMSG, as
// if it had tried.
type decryptAnyUse struct{ provider.Provider }

func (p decryptAnyUse) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ct, info, aad []byte) ([]byte, error) {
	if ref.Use != provider.UseAsymmetricDecrypt {
		return nil, provider.Errorf(provider.EBADMSG, "message authentication failed")
	}
	return p.Provider.Decrypt(ctx, ref, h, enc, ct, info, aad)
}

// partialDecrypt returns bytes along with a Decrypt error.
type partialDecrypt struct{ provider.Provider }

func (p partialDecrypt) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ct, info, aad []byte) ([]byte, error) {
	out, err := p.Provider.Decrypt(ctx, ref, h, enc, ct, info, aad)
	if err != nil {
		return []byte("partial"), err
	}
	return out, nil
}

// truncatesInfo cuts an oversize HPKE info to the bound instead of
// refusing it; Decrypt then fails to authenticate, which it reports as
// success with an empty plaintext.
type truncatesInfo struct{ provider.Provider }

func (p truncatesInfo) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ct, info, aad []byte) ([]byte, error) {
	if len(info) > provider.MaxHPKEInfo {
		if _, err := p.Provider.Decrypt(ctx, ref, h, enc, ct, info[:provider.MaxHPKEInfo], aad); err != nil {
			return nil, nil
		}
	}
	return p.Provider.Decrypt(ctx, ref, h, enc, ct, info, aad)
}

// reimports accepts a spent wrapping key again: an Import with a handle
// that already imported returns what the first Import made.
type reimports struct {
	provider.Provider
	mu   *sync.Mutex
	done map[string]provider.Generated // wrapping handle → its import
}

func newReimports(p provider.Provider) reimports {
	return reimports{Provider: p, mu: &sync.Mutex{}, done: map[string]provider.Generated{}}
}

func (p reimports) Import(ctx context.Context, ref, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	p.mu.Lock()
	g, ok := p.done[string(wh)]
	p.mu.Unlock()
	if ok {
		return g, nil
	}
	g, err := p.Provider.Import(ctx, ref, wrap, wh, enc, wrapped)
	if err == nil {
		p.mu.Lock()
		p.done[string(wh)] = g
		p.mu.Unlock()
	}
	return g, err
}

// importGenerates spends the wrapping key, then generates a key of its
// own instead of using the material.
type importGenerates struct{ provider.Provider }

func (p importGenerates) Import(ctx context.Context, ref, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	if _, err := p.Provider.Import(ctx, ref, wrap, wh, enc, wrapped); errors.Is(err, provider.ErrNotFound) || errors.Is(err, provider.ErrBadMessage) {
		return provider.Generated{}, err
	}
	return p.Provider.Generate(ctx, ref)
}

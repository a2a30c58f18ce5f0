package core

import (
	"context"
	"sync"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Sign signs msg (at most provider.MaxSignMessage bytes) with the key's
// primary version and returns the plain algorithm signature with the
// version that made it. A key past its rotation period is rotated first.
func (k *Keystore) Sign(ctx context.Context, c Caller, id KeyID, msg []byte) (Signature, error) {
	return k.SignWith(ctx, c, id, 0, SignInput{Message: msg})
}

// SignWith signs in (a message, or a digest of one) with version v of the
// key, or with its primary version when v is 0 (rotating a key past its
// rotation period first). A named version must be primary or retired:
// a caller bound to one version's public key (client.Signer) keeps
// signing with it across rotations, and never once it is revoked.
func (k *Keystore) SignWith(ctx context.Context, c Caller, id KeyID, v Version, in SignInput) (Signature, error) {
	ev := k.event(c, OpSign, id.String(), v)
	sig, err := k.sign(ctx, c, id, v, in, &ev)
	return audited(ctx, k, &ev, sig, err)
}

// checkSignInput bounds in before any lookup.
func checkSignInput(in SignInput) error {
	if in.isDigest() {
		if len(in.Message) > 0 {
			return provider.Errorf(provider.EINVAL, "give a message or a digest, not both")
		}
		return provider.CheckDigest(in.Hash, in.Digest)
	}
	if len(in.Message) > provider.MaxSignMessage {
		return provider.Errorf(provider.EMSGSIZE, "message over %d bytes; sign a digest of it instead", provider.MaxSignMessage)
	}
	return nil
}

func (k *Keystore) sign(ctx context.Context, c Caller, id KeyID, v Version, in SignInput, ev *Event) (Signature, error) {
	if err := checkSignInput(in); err != nil {
		return Signature{}, err
	}
	p := pickPrimary
	if v != 0 {
		p = pickVersion(v)
	}
	t, err := k.resolve(ctx, c, OpSign, id, provider.UseSign, p, ev)
	if err != nil {
		return Signature{}, err
	}
	if in.isDigest() {
		if err := t.spec.CheckDigest(in.Hash, in.Digest); err != nil {
			return Signature{}, err
		}
	}
	h, err := k.handle(t.vr)
	if err != nil {
		return Signature{}, err
	}
	var sig []byte
	if in.isDigest() {
		sig, err = k.p.SignDigest(ctx, t.vr.ref, h, in.Hash, in.Digest)
	} else {
		sig, err = k.p.Sign(ctx, t.vr.ref, h, in.Message)
	}
	if err != nil {
		return Signature{}, provider.WithOp("provider sign", t.vr.refStr, err)
	}
	if !t.spec.SignatureSizeOK(len(sig)) {
		return Signature{}, provider.Errorf(provider.EIO, "provider returned a signature of the wrong size")
	}
	if k.checkSigs && !t.verify(in, sig) {
		return Signature{}, provider.Errorf(provider.EIO, "provider returned a signature that does not verify; withheld")
	}
	if err := k.stillUsable(ctx, OpSign, id, t.vr.ref.Version); err != nil {
		return Signature{}, err
	}
	return Signature{Version: t.vr.ref.Version, Signature: sig}, nil
}

// stillUsable checks, once the provider has answered, that the key and
// version v may still make output: a call that waited in the provider's
// queue while the key or the version was revoked returns nothing, so that
// no signature or tag of a version appears after its revocation was
// acknowledged. The version may have been retired meanwhile (a rotation),
// which does not stop it.
func (k *Keystore) stillUsable(ctx context.Context, op Op, id KeyID, v Version) error {
	_, rec, err := k.readKey(ctx, id)
	if err != nil {
		return err
	}
	m := metaOf(rec)
	if err := checkKey(op, m); err != nil {
		return err
	}
	return checkVersion(OpSign, m, v)
}

// verify checks sig over in with the target's public key.
func (t target) verify(in SignInput, sig []byte) bool {
	if in.isDigest() {
		return t.spec.VerifyDigest(t.pub, in.Hash, in.Digest, sig)
	}
	return t.spec.Verify(t.pub, in.Message, sig)
}

// Verify checks sig over msg with version v of the key: nil if it
// verifies, an error wrapping ErrBadMessage if it does not.
func (k *Keystore) Verify(ctx context.Context, c Caller, id KeyID, v Version, msg, sig []byte) error {
	return k.VerifyWith(ctx, c, id, v, SignInput{Message: msg}, sig)
}

// VerifyWith checks sig over in (a message, or a digest of one) with
// version v of the key: nil if it verifies, an error wrapping
// ErrBadMessage if it does not.
func (k *Keystore) VerifyWith(ctx context.Context, c Caller, id KeyID, v Version, in SignInput, sig []byte) error {
	ev := k.event(c, OpVerify, id.String(), v)
	return k.finish(ctx, &ev, k.verify(ctx, c, id, v, in, sig, &ev))
}

func (k *Keystore) verify(ctx context.Context, c Caller, id KeyID, v Version, in SignInput, sig []byte, ev *Event) error {
	if err := checkSignInput(in); err != nil {
		return err
	}
	switch {
	case len(sig) > provider.MaxSignature:
		return provider.Errorf(provider.EMSGSIZE, "signature over %d bytes", provider.MaxSignature)
	case v == 0:
		return provider.Errorf(provider.EINVAL, "verify needs a version (the one Sign returned)")
	}
	t, err := k.resolve(ctx, c, OpVerify, id, provider.UseSign, pickVersion(v), ev)
	if err != nil {
		return err
	}
	if in.isDigest() {
		if err := t.spec.CheckDigest(in.Hash, in.Digest); err != nil {
			return err
		}
	}
	if !t.verify(in, sig) {
		return provider.Errorf(provider.EBADMSG, "signature does not verify")
	}
	return nil
}

// MAC returns the tag of msg (at most provider.MaxMACMessage bytes) under
// the key's primary version, with that version. A key past its rotation
// period is rotated first.
func (k *Keystore) MAC(ctx context.Context, c Caller, id KeyID, msg []byte) (MACTag, error) {
	ev := k.event(c, OpMAC, id.String(), 0)
	m, err := k.mac(ctx, c, OpMAC, id, pickPrimary, msg, &ev)
	return audited(ctx, k, &ev, m, err)
}

func (k *Keystore) mac(ctx context.Context, c Caller, op Op, id KeyID, p pick, msg []byte, ev *Event) (MACTag, error) {
	if err := provider.CheckMAC(msg); err != nil {
		return MACTag{}, err
	}
	t, err := k.resolve(ctx, c, op, id, provider.UseMAC, p, ev)
	if err != nil {
		return MACTag{}, err
	}
	h, err := k.handle(t.vr)
	if err != nil {
		return MACTag{}, err
	}
	tag, err := k.p.MAC(ctx, t.vr.ref, h, msg)
	if err != nil {
		return MACTag{}, provider.WithOp("provider mac", t.vr.refStr, err)
	}
	if len(tag) != t.spec.MACSize {
		return MACTag{}, provider.Errorf(provider.EIO, "provider returned a tag of the wrong size")
	}
	if err := k.stillUsable(ctx, op, id, t.vr.ref.Version); err != nil {
		clear(tag)
		return MACTag{}, err
	}
	return MACTag{Version: t.vr.ref.Version, Tag: tag}, nil
}

// VerifyMAC checks tag over msg with version v of the key (the version
// MAC returned): nil if it matches, an error wrapping ErrBadMessage if it
// does not. The comparison takes the same time wherever the tags differ.
func (k *Keystore) VerifyMAC(ctx context.Context, c Caller, id KeyID, v Version, msg, tag []byte) error {
	ev := k.event(c, OpVerifyMAC, id.String(), v)
	return k.finish(ctx, &ev, k.verifyMAC(ctx, c, id, v, msg, tag, &ev))
}

func (k *Keystore) verifyMAC(ctx context.Context, c Caller, id KeyID, v Version, msg, tag []byte, ev *Event) error {
	switch {
	case len(tag) > provider.MaxMAC:
		return provider.Errorf(provider.EMSGSIZE, "tag over %d bytes", provider.MaxMAC)
	case v == 0:
		return provider.Errorf(provider.EINVAL, "verify-mac needs a version (the one Mac returned)")
	}
	want, err := k.mac(ctx, c, OpVerifyMAC, id, pickVersion(v), msg, ev)
	if err != nil {
		return err
	}
	if !alg.Equal(want.Tag, tag) {
		return provider.Errorf(provider.EBADMSG, "tag does not match")
	}
	return nil
}

// PublicKey returns the public key of version v (0: the current version)
// of a sign key.
func (k *Keystore) PublicKey(ctx context.Context, c Caller, id KeyID, v Version) (PublicKey, error) {
	ev := k.event(c, OpPublicKey, id.String(), v)
	pk, err := k.publicKey(ctx, c, id, v, &ev)
	return audited(ctx, k, &ev, pk, err)
}

func (k *Keystore) publicKey(ctx context.Context, c Caller, id KeyID, v Version, ev *Event) (PublicKey, error) {
	t, err := k.resolve(ctx, c, OpPublicKey, id, provider.UseSign, pickVersion(v), ev)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{ID: id, Version: t.vr.ref.Version, Algorithm: t.spec.Name, Key: append([]byte(nil), t.pub...)}, nil
}

// aadPool recycles the buffers that hold the provider's associated data.
var aadPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Seal encrypts plaintext (at most MaxSealPlaintext bytes) with the key's
// primary version, authenticating aad (at most MaxAAD bytes), and returns
// the sealed envelope and the version used. A key past its rotation period
// is rotated first.
func (k *Keystore) Seal(ctx context.Context, c Caller, id KeyID, plaintext, aad []byte) (Sealed, error) {
	ev := k.event(c, OpSeal, id.String(), 0)
	s, err := k.seal(ctx, c, OpSeal, id, plaintext, aad, &ev)
	return audited(ctx, k, &ev, s, err)
}

func (k *Keystore) seal(ctx context.Context, c Caller, op Op, id KeyID, plaintext, aad []byte, ev *Event) (Sealed, error) {
	switch {
	case len(plaintext) > provider.MaxSealPlaintext:
		return Sealed{}, provider.Errorf(provider.EMSGSIZE, "plaintext over %d bytes", provider.MaxSealPlaintext)
	case len(aad) > provider.MaxAAD:
		return Sealed{}, provider.Errorf(provider.EMSGSIZE, "AAD over %d bytes", provider.MaxAAD)
	}
	t, err := k.resolve(ctx, c, op, id, provider.UseDecrypt, pickPrimary, ev)
	if err != nil {
		return Sealed{}, err
	}
	vr, spec := t.vr, t.spec
	if err := k.countSeal(ctx, vr, spec); err != nil {
		return Sealed{}, err
	}
	h, err := k.handle(vr)
	if err != nil {
		return Sealed{}, err
	}
	hdr := envelopeHeader{algID: spec.ID, version: vr.ref.Version}
	bp := aadPool.Get().(*[]byte)
	paad := appendProviderAAD((*bp)[:0], hdr, vr.idStr, aad)
	want := envelopeHeaderLen + spec.NonceSize + len(plaintext) + spec.Overhead
	var out []byte
	if sa, ok := k.p.(provider.SealAppender); ok {
		out, err = sa.SealAppend(ctx, hdr.appendTo(make([]byte, 0, want)), vr.ref, h, plaintext, paad)
	} else {
		var body []byte
		if body, err = k.p.Seal(ctx, vr.ref, h, plaintext, paad); err == nil {
			out = append(hdr.appendTo(make([]byte, 0, envelopeHeaderLen+len(body))), body...)
		}
	}
	*bp = paad[:0]
	aadPool.Put(bp)
	if err != nil {
		return Sealed{}, provider.WithOp("provider seal", vr.refStr, err)
	}
	if len(out) != want {
		return Sealed{}, provider.Errorf(provider.EIO, "provider returned sealed data of the wrong size")
	}
	return Sealed{Version: vr.ref.Version, Data: out}, nil
}

// sealReservation is how many seals one durable metadata write reserves.
const sealReservation = 1 << 16

// countSeal counts one seal against the version's budget. The count is
// durable in blocks: metadata records a reservation, and after a restart
// counting resumes from the reservation, so a crash can waste part of a
// block but never lets the budget be exceeded.
func (k *Keystore) countSeal(ctx context.Context, vr *versionRT, spec *alg.Spec) error {
	if spec.SealLimit == 0 {
		return nil
	}
	n := vr.seals.Add(1)
	if n > spec.SealLimit {
		return provider.Errorf(provider.EPERM, "version %s has made its limit of %d seals for a %d-bit random nonce; rotate the key", vr.ref.Version, spec.SealLimit, spec.NonceSize*8)
	}
	if n <= vr.reserved.Load() {
		return nil
	}
	e, err := k.writeKey(ctx, vr.ref.ID)
	if err != nil {
		return err
	}
	defer k.unlockKey(e)
	if n <= vr.reserved.Load() {
		return nil
	}
	rec := e.rec.Load()
	if rec == nil || int(vr.ref.Version) > len(rec.versions) || rec.versions[vr.ref.Version-1] != vr {
		return provider.Errorf(provider.EUNAVAILABLE, "key changed during seal; retry")
	}
	if err := k.ready(ctx); err != nil {
		return err
	}
	old := vr.reserved.Load()
	next := old + sealReservation
	if next < n {
		next = n + sealReservation
	}
	if next > spec.SealLimit {
		next = spec.SealLimit
	}
	// The reservation is published only once durable: seals that pass the
	// lock-free check above while it is being written must be covered by
	// what a restart would resume from. On failure memory keeps the old
	// reservation; one that landed anyway is only wasted.
	b := rec.body()
	b.Versions[vr.ref.Version-1].SealsReserved = next
	if _, _, err := k.writeRecord(rec, b); err != nil {
		return err
	}
	vr.reserved.Store(next)
	return nil
}

// Unseal authenticates and decrypts a sealed envelope made by Seal for
// this key with the same aad. The envelope names the one version to use
// (no trial decryption). It returns the plaintext and that version.
func (k *Keystore) Unseal(ctx context.Context, c Caller, id KeyID, sealed, aad []byte) (Unsealed, error) {
	ev := k.event(c, OpUnseal, id.String(), 0)
	u, err := k.unseal(ctx, c, OpUnseal, id, sealed, aad, &ev)
	return audited(ctx, k, &ev, u, err)
}

func (k *Keystore) unseal(ctx context.Context, c Caller, op Op, id KeyID, sealed, aad []byte, ev *Event) (Unsealed, error) {
	switch {
	case len(sealed) > provider.MaxSealed:
		return Unsealed{}, provider.Errorf(provider.EMSGSIZE, "sealed data over %d bytes", provider.MaxSealed)
	case len(aad) > provider.MaxAAD:
		return Unsealed{}, provider.Errorf(provider.EMSGSIZE, "AAD over %d bytes", provider.MaxAAD)
	}
	hdr, body, err := parseEnvelope(sealed)
	if err != nil {
		return Unsealed{}, err
	}
	ev.Version = hdr.version
	t, err := k.resolve(ctx, c, op, id, provider.UseDecrypt, pickVersion(hdr.version), ev)
	if err != nil {
		return Unsealed{}, err
	}
	vr, spec := t.vr, t.spec
	if hdr.algID != spec.ID {
		return Unsealed{}, provider.Errorf(provider.EBADMSG, "sealed envelope names another algorithm")
	}
	if len(body) < spec.NonceSize+spec.Overhead {
		return Unsealed{}, provider.Errorf(provider.EBADMSG, "sealed data too short")
	}
	h, err := k.handle(vr)
	if err != nil {
		return Unsealed{}, err
	}
	bp := aadPool.Get().(*[]byte)
	paad := appendProviderAAD((*bp)[:0], hdr, vr.idStr, aad)
	pt, err := k.p.Open(ctx, vr.ref, h, body, paad)
	*bp = paad[:0]
	aadPool.Put(bp)
	if err != nil {
		return Unsealed{}, provider.WithOp("provider open", vr.refStr, err)
	}
	if len(pt) != len(body)-spec.NonceSize-spec.Overhead {
		clear(pt)
		return Unsealed{}, provider.Errorf(provider.EIO, "provider returned plaintext of the wrong size")
	}
	return Unsealed{Version: hdr.version, Plaintext: pt}, nil
}

// Rewrap unseals sealed under its version and seals the plaintext again
// under the current primary version, without returning the plaintext. It
// returns the new envelope and its version.
func (k *Keystore) Rewrap(ctx context.Context, c Caller, id KeyID, sealed, aad []byte) (Sealed, error) {
	ev := k.event(c, OpRewrap, id.String(), 0)
	s, err := k.rewrap(ctx, c, id, sealed, aad, &ev)
	return audited(ctx, k, &ev, s, err)
}

func (k *Keystore) rewrap(ctx context.Context, c Caller, id KeyID, sealed, aad []byte, ev *Event) (Sealed, error) {
	u, err := k.unseal(ctx, c, OpRewrap, id, sealed, aad, ev)
	if err != nil {
		return Sealed{}, err
	}
	defer u.wipe()
	// The seal's event is the rewrap's: an automatic rotation commits it.
	sev := *ev
	out, err := k.seal(ctx, c, OpSeal, id, u.Plaintext, aad, &sev)
	if err != nil {
		return Sealed{}, err
	}
	ev.Version = out.Version
	if sev.Detail != "" {
		ev.Detail, ev.Gen = sev.Detail, sev.Gen
	}
	return out, nil
}

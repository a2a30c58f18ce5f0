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
	ev := k.event(c, OpSign, id.String())
	sig, err := k.sign(ctx, c, id, msg, &ev)
	if err = k.finish(ctx, &ev, err); err != nil {
		return Signature{}, err
	}
	return sig, nil
}

func (k *Keystore) sign(ctx context.Context, c Caller, id KeyID, msg []byte, ev *Event) (Signature, error) {
	if len(msg) > provider.MaxSignMessage {
		return Signature{}, provider.Errorf(provider.EMSGSIZE, "message over %d bytes", provider.MaxSignMessage)
	}
	t, err := k.primary(ctx, c, OpSign, id, provider.UseSign, ev)
	if err != nil {
		return Signature{}, err
	}
	vr, spec := t.vr, t.spec
	h, err := k.handle(vr)
	if err != nil {
		return Signature{}, err
	}
	sig, err := k.p.Sign(ctx, vr.ref, h, msg)
	if err != nil {
		return Signature{}, provider.WithOp("provider sign", vr.refStr, err)
	}
	if len(sig) != spec.SignatureSize {
		return Signature{}, provider.Errorf(provider.EIO, "provider returned a signature of the wrong size")
	}
	if k.checkSigs && !spec.Verify(t.pub, msg, sig) {
		return Signature{}, provider.Errorf(provider.EIO, "provider returned a signature that does not verify; withheld")
	}
	return Signature{Version: vr.ref.Version, Signature: sig}, nil
}

// target is what a sign or seal resolved: the primary version's run-time
// state, the algorithm, the public key (sign keys) and the key ID string.
type target struct {
	vr    *versionRT
	spec  *alg.Spec
	pub   []byte
	idStr string
}

// primary resolves the primary version of id for a sign or seal: caller,
// lifecycle, use, and automatic rotation. It fills ev's version.
func (k *Keystore) primary(ctx context.Context, c Caller, op Op, id KeyID, use Use, ev *Event) (target, error) {
	if id.IsZero() {
		return target{}, provider.Errorf(provider.EINVAL, "no key ID")
	}
	if err := authorize(c, id.App()); err != nil {
		return target{}, err
	}
	if err := provider.CheckContext(ctx); err != nil {
		return target{}, err
	}
	for attempt := 0; ; attempt++ {
		e, rec, err := k.readKey(id)
		if err != nil {
			return target{}, err
		}
		m := metaOf(rec)
		if err := checkKey(op, m); err != nil {
			return target{}, err
		}
		if m.Use != use {
			return target{}, provider.Errorf(provider.EPERM, "key is a %s key; %s needs a %s key", m.Use, op, use)
		}
		if m.Policy.RotationPeriod > 0 && attempt == 0 && rotationDue(m, k.clock.Now()) {
			did, err := k.autoRotate(ctx, id, *ev)
			if err = overdueOnQuota(ev, err); err != nil { // quota.go
				return target{}, err
			}
			if did {
				ev.Detail = "auto-rotated"
			}
			continue
		}
		t := target{vr: rec.versions[m.Current-1], spec: rec.spec, pub: m.Versions[m.Current-1].PublicKey, idStr: e.idStr}
		ev.Version = t.vr.ref.Version
		return t, nil
	}
}

// Verify checks sig over msg with version v of the key: nil if it
// verifies, an error wrapping ErrBadMessage if it does not.
func (k *Keystore) Verify(ctx context.Context, c Caller, id KeyID, v Version, msg, sig []byte) error {
	ev := k.event(c, OpVerify, id.String())
	ev.Version = v
	return k.finish(ctx, &ev, k.verify(c, id, v, msg, sig))
}

func (k *Keystore) verify(c Caller, id KeyID, v Version, msg, sig []byte) error {
	switch {
	case len(msg) > provider.MaxSignMessage:
		return provider.Errorf(provider.EMSGSIZE, "message over %d bytes", provider.MaxSignMessage)
	case len(sig) > provider.MaxSignature:
		return provider.Errorf(provider.EMSGSIZE, "signature over %d bytes", provider.MaxSignature)
	case v == 0:
		return provider.Errorf(provider.EINVAL, "verify needs a version (the one Sign returned)")
	}
	m, spec, err := k.versionFor(c, OpVerify, id, v, provider.UseSign)
	if err != nil {
		return err
	}
	if !spec.Verify(m.PublicKey, msg, sig) {
		return provider.Errorf(provider.EBADMSG, "signature does not verify")
	}
	return nil
}

// versionFor resolves a named version for verify, unseal, rewrap and
// public-key: caller, key table, use, version table, policy.
func (k *Keystore) versionFor(c Caller, op Op, id KeyID, v Version, use Use) (VersionInfo, *alg.Spec, error) {
	_, vi, spec, err := k.versionRT(c, op, id, v, use)
	return vi, spec, err
}

func (k *Keystore) versionRT(c Caller, op Op, id KeyID, v Version, use Use) (*versionRT, VersionInfo, *alg.Spec, error) {
	if id.IsZero() {
		return nil, VersionInfo{}, nil, provider.Errorf(provider.EINVAL, "no key ID")
	}
	if err := authorize(c, id.App()); err != nil {
		return nil, VersionInfo{}, nil, err
	}
	_, rec, err := k.readKey(id)
	if err != nil {
		return nil, VersionInfo{}, nil, err
	}
	m := metaOf(rec)
	if err := checkKey(op, m); err != nil {
		return nil, VersionInfo{}, nil, err
	}
	if m.Use != use {
		return nil, VersionInfo{}, nil, provider.Errorf(provider.EPERM, "key is a %s key; %s needs a %s key", m.Use, op, use)
	}
	if err := checkVersion(op, m, v); err != nil {
		return nil, VersionInfo{}, nil, err
	}
	if op != OpPublicKey && v < m.Policy.MinDecryptionVersion {
		return nil, VersionInfo{}, nil, provider.Errorf(provider.EPERM, "version %s is below the key's minimum decryption version %s", v, m.Policy.MinDecryptionVersion)
	}
	vi, _ := m.Version(v)
	vi.PublicKey = append([]byte(nil), vi.PublicKey...)
	return rec.versions[v-1], vi, rec.spec, nil
}

// PublicKey returns the public key of version v (0: the current version)
// of a sign key.
func (k *Keystore) PublicKey(ctx context.Context, c Caller, id KeyID, v Version) (PublicKey, error) {
	ev := k.event(c, OpPublicKey, id.String())
	ev.Version = v
	pk, err := k.publicKey(c, id, v, &ev)
	if err = k.finish(ctx, &ev, err); err != nil {
		return PublicKey{}, err
	}
	return pk, nil
}

func (k *Keystore) publicKey(c Caller, id KeyID, v Version, ev *Event) (PublicKey, error) {
	if v == 0 {
		m, err := k.get(c, id)
		if err != nil {
			return PublicKey{}, err
		}
		v = m.Current
		ev.Version = v
	}
	vi, spec, err := k.versionFor(c, OpPublicKey, id, v, provider.UseSign)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{ID: id, Version: v, Algorithm: spec.Name, Key: vi.PublicKey}, nil
}

// aadPool recycles the buffers that hold the provider's associated data.
var aadPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Seal encrypts plaintext (at most MaxSealPlaintext bytes) with the key's
// primary version, authenticating aad (at most MaxAAD bytes), and returns
// the sealed envelope and the version used.
func (k *Keystore) Seal(ctx context.Context, c Caller, id KeyID, plaintext, aad []byte) ([]byte, Version, error) {
	ev := k.event(c, OpSeal, id.String())
	out, v, err := k.seal(ctx, c, id, plaintext, aad, &ev)
	if err = k.finish(ctx, &ev, err); err != nil {
		return nil, 0, err
	}
	return out, v, nil
}

func (k *Keystore) seal(ctx context.Context, c Caller, id KeyID, plaintext, aad []byte, ev *Event) ([]byte, Version, error) {
	switch {
	case len(plaintext) > provider.MaxSealPlaintext:
		return nil, 0, provider.Errorf(provider.EMSGSIZE, "plaintext over %d bytes", provider.MaxSealPlaintext)
	case len(aad) > provider.MaxAAD:
		return nil, 0, provider.Errorf(provider.EMSGSIZE, "AAD over %d bytes", provider.MaxAAD)
	}
	t, err := k.primary(ctx, c, OpSeal, id, provider.UseDecrypt, ev)
	if err != nil {
		return nil, 0, err
	}
	vr, spec := t.vr, t.spec
	if err := k.countSeal(ctx, vr, spec); err != nil {
		return nil, 0, err
	}
	h, err := k.handle(vr)
	if err != nil {
		return nil, 0, err
	}
	hdr := envelopeHeader{algID: spec.ID, version: vr.ref.Version}
	bp := aadPool.Get().(*[]byte)
	paad := appendProviderAAD((*bp)[:0], hdr, t.idStr, aad)
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
		return nil, 0, provider.WithOp("provider seal", vr.refStr, err)
	}
	if len(out) != want {
		return nil, 0, provider.Errorf(provider.EIO, "provider returned sealed data of the wrong size")
	}
	return out, vr.ref.Version, nil
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
	e, err := k.writeKey(vr.ref.ID)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
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
func (k *Keystore) Unseal(ctx context.Context, c Caller, id KeyID, sealed, aad []byte) ([]byte, Version, error) {
	ev := k.event(c, OpUnseal, id.String())
	pt, v, err := k.unseal(ctx, c, OpUnseal, id, sealed, aad, &ev)
	if err = k.finish(ctx, &ev, err); err != nil {
		clear(pt)
		return nil, 0, err
	}
	return pt, v, nil
}

func (k *Keystore) unseal(ctx context.Context, c Caller, op Op, id KeyID, sealed, aad []byte, ev *Event) ([]byte, Version, error) {
	switch {
	case len(sealed) > provider.MaxSealed:
		return nil, 0, provider.Errorf(provider.EMSGSIZE, "sealed data over %d bytes", provider.MaxSealed)
	case len(aad) > provider.MaxAAD:
		return nil, 0, provider.Errorf(provider.EMSGSIZE, "AAD over %d bytes", provider.MaxAAD)
	}
	hdr, body, err := parseEnvelope(sealed)
	if err != nil {
		return nil, 0, err
	}
	ev.Version = hdr.version
	if err := provider.CheckContext(ctx); err != nil {
		return nil, 0, err
	}
	vr, _, spec, err := k.versionRT(c, op, id, hdr.version, provider.UseDecrypt)
	if err != nil {
		return nil, 0, err
	}
	if hdr.algID != spec.ID {
		return nil, 0, provider.Errorf(provider.EBADMSG, "sealed envelope names another algorithm")
	}
	if len(body) < spec.NonceSize+spec.Overhead {
		return nil, 0, provider.Errorf(provider.EBADMSG, "sealed data too short")
	}
	h, err := k.handle(vr)
	if err != nil {
		return nil, 0, err
	}
	bp := aadPool.Get().(*[]byte)
	paad := appendProviderAAD((*bp)[:0], hdr, vr.idStr, aad)
	pt, err := k.p.Open(ctx, vr.ref, h, body, paad)
	*bp = paad[:0]
	aadPool.Put(bp)
	if err != nil {
		return nil, 0, provider.WithOp("provider open", vr.refStr, err)
	}
	if len(pt) != len(body)-spec.NonceSize-spec.Overhead {
		clear(pt)
		return nil, 0, provider.Errorf(provider.EIO, "provider returned plaintext of the wrong size")
	}
	return pt, hdr.version, nil
}

// Rewrap unseals sealed under its version and seals the plaintext again
// under the current primary version, without returning the plaintext. It
// returns the new envelope and its version.
func (k *Keystore) Rewrap(ctx context.Context, c Caller, id KeyID, sealed, aad []byte) ([]byte, Version, error) {
	ev := k.event(c, OpRewrap, id.String())
	out, v, err := k.rewrap(ctx, c, id, sealed, aad, &ev)
	if err = k.finish(ctx, &ev, err); err != nil {
		return nil, 0, err
	}
	return out, v, nil
}

func (k *Keystore) rewrap(ctx context.Context, c Caller, id KeyID, sealed, aad []byte, ev *Event) ([]byte, Version, error) {
	pt, _, err := k.unseal(ctx, c, OpRewrap, id, sealed, aad, ev)
	if err != nil {
		return nil, 0, err
	}
	defer clear(pt)
	// The seal's event is the rewrap's: an automatic rotation commits it.
	sev := *ev
	out, v, err := k.seal(ctx, c, id, pt, aad, &sev)
	if err != nil {
		return nil, 0, err
	}
	ev.Version = v
	if sev.Detail != "" {
		ev.Detail = sev.Detail
	}
	return out, v, nil
}

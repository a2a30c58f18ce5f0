package core

import (
	"context"
	"crypto/ed25519"

	"github.com/nexus-os/keystored/core/provider"
)

// ReservedApp is the app whose keys are the daemon's own (the audit
// signing key). No caller may change them or use their private halves;
// an operator may read them (Get, List, PublicKey, Verify). The daemon
// refuses to give any caller this app ID.
const ReservedApp = "keystored"

// AuditSignerKey is the ID of the key that signs the audit log's
// checkpoints.
const AuditSignerKey = ReservedApp + "/audit/checkpoint"

// systemCaller is the keystore's own caller: it makes the keys of
// ReservedApp and writes the notes (AuditSink.Note) no call caused.
var systemCaller = Caller{App: ReservedApp, Operator: true, system: true}

// checkReserved refuses a call of op by c on a key of app when app is
// ReservedApp: only the keystore itself changes or uses those keys, and
// an operator may read them.
func checkReserved(c Caller, op Op, app string) error {
	if app != ReservedApp || c.system {
		return nil
	}
	if c.Operator {
		switch op {
		case OpGet, OpList, OpPublicKey, OpVerify:
			return nil
		}
	}
	return provider.Errorf(provider.EPERM, "keys of app %s are the daemon's own; %s is refused (an operator may get, list, verify and read their public keys)", ReservedApp, op)
}

// SystemSigner signs with the audit signing key (Keystore.AuditSigner).
// Its method set is the audit package's Signer. It is safe for concurrent
// use.
type SystemSigner struct {
	k       *Keystore
	e       *entry // pinned: never evicted, so Sign never reads storage
	version Version
	ref     string
	pub     ed25519.PublicKey
}

// AuditSigner returns the signer of the audit log's checkpoints: the
// Ed25519 key AuditSignerKey, held by the provider like any key (never
// exported). The first call creates it through the normal lifecycle path
// (the keystore's own caller, audited, generation 1); later calls, and a
// restarted daemon, load it, subject to the generation check.
func (k *Keystore) AuditSigner(ctx context.Context) (*SystemSigner, error) {
	id, err := provider.ParseKeyID(AuditSignerKey)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "audit signing key ID: %w", err)
	}
	_, rec, err := k.readKey(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		_, err := k.Create(ctx, systemCaller, id, CreateOptions{Algorithm: provider.Ed25519})
		if code, _ := provider.CodeOf(err); err != nil && code != provider.EALREADY { // EALREADY: made meanwhile
			return nil, err
		}
	}
	e, err := k.writeKey(ctx, id)
	if err != nil {
		return nil, err
	}
	e.pinned.Store(true)
	rec = e.rec.Load()
	e.mu.Unlock()
	switch {
	case rec == nil:
		return nil, provider.Errorf(provider.EIO, "audit signing key %s is missing after its create", id)
	case rec.meta.Algorithm != provider.Ed25519:
		return nil, provider.Errorf(provider.EIO, "audit signing key %s is a %s key, not ed25519", id, string(rec.meta.Algorithm))
	}
	if err := checkKey(OpSign, &rec.meta); err != nil {
		return nil, provider.WithOp("audit signer", id.String(), err)
	}
	v := rec.meta.Current
	pub := rec.meta.Versions[v-1].PublicKey
	if len(pub) != ed25519.PublicKeySize {
		return nil, provider.Errorf(provider.EIO, "audit signing key %s has a malformed public key", id)
	}
	return &SystemSigner{k: k, e: e, version: v, ref: id.String() + "@" + v.String(),
		pub: append(ed25519.PublicKey(nil), pub...)}, nil
}

// KeyRef names the signing key and version, e.g.
// "keystored/audit/checkpoint@1".
func (s *SystemSigner) KeyRef() string { return s.ref }

// PublicKey returns the signing key's public key.
func (s *SystemSigner) PublicKey() ed25519.PublicKey { return append(ed25519.PublicKey(nil), s.pub...) }

// Sign returns the provider's Ed25519 signature of msg, verified against
// the stored public key before it is returned. It writes no audit event
// (the audit log calls it) and never reads the key's metadata from
// storage. It is refused once the key is not active.
func (s *SystemSigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	if len(msg) > provider.MaxSignMessage {
		return nil, provider.Errorf(provider.EMSGSIZE, "message over %d bytes", provider.MaxSignMessage)
	}
	if !s.e.loaded.Load() {
		return nil, provider.Errorf(provider.EUNAVAILABLE, "audit signing key %s is being reloaded; retry", s.ref)
	}
	rec := s.e.rec.Load()
	if rec == nil {
		return nil, provider.Errorf(provider.EIO, "audit signing key %s is gone", s.ref)
	}
	if err := checkKey(OpSign, &rec.meta); err != nil {
		return nil, provider.WithOp("sign", s.ref, err)
	}
	if rec.meta.Current != s.version {
		return nil, provider.Errorf(provider.EIO, "audit signing key %s is now at version %s", s.ref, rec.meta.Current)
	}
	vr := rec.versions[s.version-1]
	h, err := s.k.handle(vr)
	if err != nil {
		return nil, err
	}
	sig, err := s.k.p.Sign(ctx, vr.ref, h, msg)
	if err != nil {
		return nil, provider.WithOp("provider sign", s.ref, err)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(s.pub, msg, sig) {
		return nil, provider.Errorf(provider.EIO, "provider returned a signature that does not verify under %s; withheld", s.ref)
	}
	return append([]byte(nil), sig...), nil
}

package core

import (
	"context"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// pick selects the version of a key that a call uses.
type pick struct {
	v      Version // the version named; 0 selects the key's current version
	rotate bool    // rotate first when the key's rotation period has passed
}

// pickPrimary is what operations that make new output (sign, seal) use:
// the primary version, after the automatic rotation that is due.
var pickPrimary = pick{rotate: true}

// pickVersion selects version v as it stands (no rotation); 0 selects the
// current version. A named version passes the version table and, for the
// ops that read old output, the minimum decryption version.
func pickVersion(v Version) pick { return pick{v: v} }

// target is what a call resolved: the key's entry and record, and the
// selected version's run-time state, algorithm and public key (empty for
// AEAD keys). pub is shared with the record: copy it before returning it.
type target struct {
	e    *entry
	rec  *record
	vr   *versionRT
	spec *alg.Spec
	pub  []byte
}

// admit is the preamble of every call of op that names a key: the ID is
// given, the caller may use the app's keys (decided from the ID alone,
// before any lookup; ReservedApp's keys only as checkReserved allows) and
// the context is still live.
func admit(ctx context.Context, c Caller, op Op, id KeyID) error {
	if id.IsZero() {
		return provider.Errorf(provider.EINVAL, "no key ID")
	}
	if err := checkReserved(c, op, id.App()); err != nil {
		return err
	}
	if err := authorize(c, id.App()); err != nil {
		return err
	}
	return provider.CheckContext(ctx)
}

// resolve finds the version of id that op uses, in the order of
// docs/lifecycle.md: caller, key table, use, version table, policy. With
// pickPrimary a due automatic rotation happens first and ev's detail says
// so. On success ev names the version resolved.
func (k *Keystore) resolve(ctx context.Context, c Caller, op Op, id KeyID, use Use, p pick, ev *Event) (target, error) {
	if err := admit(ctx, c, op, id); err != nil {
		return target{}, err
	}
	for attempt := 0; ; attempt++ {
		e, rec, err := k.readKey(ctx, id)
		if err != nil {
			return target{}, err
		}
		m := metaOf(rec)
		if err := checkKey(op, m); err != nil {
			return target{}, err
		}
		if m.Use != use && !publicUse(op, use, m.Use) {
			if op == OpPublicKey {
				return target{}, provider.Errorf(provider.EPERM, "key is a %s key, which has no public key; %s needs a sign or asymmetric-decrypt key", m.Use, op)
			}
			return target{}, provider.Errorf(provider.EPERM, "key is a %s key; %s needs a %s key", m.Use, op, use)
		}
		if p.rotate && attempt == 0 && rotationDue(m, k.clock.Now()) {
			rotated, gen, err := k.autoRotate(ctx, id, *ev)
			if err = overdueOnQuota(ev, err); err != nil { // quota.go
				return target{}, err
			}
			if rotated != 0 {
				ev.Detail, ev.Gen = "auto-rotated", gen
			}
			continue
		}
		v := p.v
		if v == 0 {
			v = m.Current
		} else {
			if err := checkVersion(op, m, v); err != nil {
				return target{}, err
			}
			// A named sign version below the minimum makes signatures verify
			// would refuse: refused the same way.
			if (readsOldOutput(op) || op == OpSign) && v < m.Policy.MinDecryptionVersion {
				return target{}, provider.Errorf(provider.EPERM, "version %s is below the key's minimum decryption version %s", v, m.Policy.MinDecryptionVersion)
			}
		}
		ev.Version = v
		return target{e: e, rec: rec, vr: rec.versions[v-1], spec: rec.spec, pub: m.Versions[v-1].PublicKey}, nil
	}
}

// publicUse reports whether a key of use got may answer op, asked for a
// key of use want, because it has a public key: public-key resolves with
// UseSign and takes asymmetric-decrypt (HPKE) keys too.
func publicUse(op Op, want, got Use) bool {
	return op == OpPublicKey && want == provider.UseSign && got == provider.UseAsymmetricDecrypt
}

// readsOldOutput reports whether op checks output made earlier (a
// signature, a sealed envelope) with the version that made it: those are
// the ops the minimum decryption version restricts.
func readsOldOutput(op Op) bool {
	return op == OpVerify || op == OpVerifyMAC || op == OpUnseal || op == OpRewrap || op == OpDecrypt
}

// wiper is a call result holding secret bytes that must be cleared when
// the result is withheld.
type wiper interface{ wipe() }

// audited ends a public Keystore method: it records ev with err's outcome
// (finish) and returns out, or, when the call failed or its record could
// not be written (fail closed), the zero T and the error, wiping out if it
// holds secrets. Every method is
//
//	ev := k.event(c, op, id.String(), v)
//	out, err := k.op(ctx, c, id, ..., &ev)
//	return audited(ctx, k, &ev, out, err)
func audited[T any](ctx context.Context, k *Keystore, ev *Event, out T, err error) (T, error) {
	if err = k.finish(ctx, ev, err); err != nil {
		if w, ok := any(out).(wiper); ok {
			w.wipe()
		}
		var zero T
		return zero, err
	}
	return out, nil
}

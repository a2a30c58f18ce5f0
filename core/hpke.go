package core

import (
	"context"

	"github.com/nexus-os/keystored/core/provider"
)

// Decrypt opens an HPKE (RFC 9180) base-mode message that a sender
// encrypted to the public key of version v of an asymmetric-decrypt key
// (v 0: the primary version). Retired versions decrypt too; a revoked or
// destroyed version is EKEYREVOKED, one below the key's minimum decryption
// version EPERM. A message that does not decapsulate or authenticate is
// EBADMSG. The keystore never encrypts with these keys: senders use the
// public key (PublicKey) with any RFC 9180 implementation.
func (k *Keystore) Decrypt(ctx context.Context, c Caller, id KeyID, v Version, m HPKEMessage) (Decrypted, error) {
	ev := k.event(c, OpDecrypt, id.String(), v)
	d, err := k.decrypt(ctx, c, id, v, m, &ev)
	return audited(ctx, k, &ev, d, err)
}

func (k *Keystore) decrypt(ctx context.Context, c Caller, id KeyID, v Version, m HPKEMessage, ev *Event) (Decrypted, error) {
	if err := provider.CheckDecrypt(m.Enc, m.Ciphertext, m.Info, m.AAD); err != nil {
		return Decrypted{}, err
	}
	t, err := k.resolve(ctx, c, OpDecrypt, id, provider.UseAsymmetricDecrypt, pickVersion(v), ev)
	if err != nil {
		return Decrypted{}, err
	}
	if err := t.spec.CheckHPKE(m.Enc, m.Ciphertext, m.Info, m.AAD); err != nil {
		return Decrypted{}, err
	}
	h, err := k.handle(t.vr)
	if err != nil {
		return Decrypted{}, err
	}
	pt, err := k.p.Decrypt(ctx, t.vr.ref, h, m.Enc, m.Ciphertext, m.Info, m.AAD)
	if err != nil {
		return Decrypted{}, provider.WithOp("provider decrypt", t.vr.refStr, err)
	}
	if len(pt) != len(m.Ciphertext)-t.spec.Overhead {
		clear(pt)
		return Decrypted{}, provider.Errorf(provider.EIO, "provider returned plaintext of the wrong size")
	}
	if err := k.stillUsable(ctx, OpDecrypt, id, t.vr.ref.Version); err != nil {
		clear(pt)
		return Decrypted{}, err
	}
	return Decrypted{Version: t.vr.ref.Version, Plaintext: pt}, nil
}

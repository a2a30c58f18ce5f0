package pkcs11

import (
	"context"

	"github.com/nexus-os/keystored/core/provider"
)

// Decrypt would open an HPKE message sent to an asymmetric-decrypt key,
// but the provider announces no such algorithm: PKCS#11 defines no HPKE
// mechanism (RFC 9180's key schedule, KEM and AEAD as one operation),
// and SoftHSM2 2.6.1 has no ML-KEM for the hybrid suite either. Keys of
// the asymmetric-decrypt use live in the software provider. Decrypt makes
// the contract's checks in the order of the other operations (context,
// ref, the input's bounds: EMSGSIZE; handle size; the ref's use: EPERM
// for a ref of another use; the algorithm: EPERM for an algorithm of
// another use), and is ENOTSUP, with that reason, for every ref that
// passes them.
func (p *tokenProvider) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ciphertext, info, aad []byte) ([]byte, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := p.checkRef(ref); err != nil {
		return nil, err
	}
	if err := provider.CheckDecrypt(enc, ciphertext, info, aad); err != nil {
		return nil, err
	}
	if len(h) > provider.MaxHandle {
		return nil, provider.Errorf(provider.EINVAL, "handle for %s is over %d bytes", ref, provider.MaxHandle)
	}
	if err := needUse(ref, provider.UseAsymmetricDecrypt, "decrypt"); err != nil {
		return nil, err
	}
	if s, err := p.reg.Lookup(ref.Algorithm); err == nil && s.Use == provider.UseAsymmetricDecrypt && !p.info.Supports(s.Name) {
		return nil, p.noHPKE(ref.Algorithm)
	}
	// Another algorithm: EPERM for one of another use, ENOTSUP for one
	// the token does not offer, as every operation says.
	if _, err := p.prepare(ref, h, provider.UseAsymmetricDecrypt, "decrypt"); err != nil {
		return nil, err
	}
	return nil, p.noHPKE(ref.Algorithm)
}

// noHPKE is Decrypt's ENOTSUP for algorithm a (cut to a segment's
// length, as unsupported does).
func (p *tokenProvider) noHPKE(a provider.Algorithm) error {
	name := string(a)
	if len(name) > provider.MaxSegment {
		name = name[:provider.MaxSegment] + "..."
	}
	return provider.Errorf(provider.ENOTSUP, "provider %s (token %q) cannot decrypt with %q: PKCS#11 defines no HPKE mechanism, so the provider offers no asymmetric-decrypt algorithm (keep HPKE keys in the software provider)",
		p.info.Name, p.label, name)
}

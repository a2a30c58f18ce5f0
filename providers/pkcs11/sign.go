package pkcs11

import (
	"context"
	"crypto"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Sign signs msg with the token's key of ref: Ed25519 and Ed448 over msg
// itself (CKM_EDDSA); ECDSA, RSA and Ed25519ph over msg's digest, which
// is computed here (the token gets 32 to 64 bytes whatever the size of
// msg), so that Sign(msg) is SignDigest of msg's digest.
func (p *tokenProvider) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	k, err := p.begin(ctx, ref, h, func() error { return provider.CheckSign(msg) }, provider.UseSign, "sign")
	if err != nil {
		return nil, err
	}
	in, err := signInput(k.spec, msg)
	if err != nil {
		return nil, err
	}
	return p.sign(ctx, ref, k, in)
}

// SignDigest signs digest, the caller's hash of a message under hash, with
// the token's key of ref (ECDSA, RSA and Ed25519ph; EPERM for algorithms
// that sign whole messages only, EINVAL for another hash than the
// algorithm's or a digest of the wrong size). The signature is the one
// Sign gives for that message.
func (p *tokenProvider) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	k, err := p.begin(ctx, ref, h, func() error { return provider.CheckDigest(hash, digest) }, provider.UseSign, "sign")
	if err != nil {
		return nil, err
	}
	if err := k.spec.CheckDigest(hash, digest); err != nil {
		return nil, err
	}
	return p.sign(ctx, ref, k, digest)
}

// signInput is what the token signs for msg: msg itself for algorithms
// without a hash (pure EdDSA), else msg's digest under the algorithm's
// hash.
func signInput(spec *alg.Spec, msg []byte) ([]byte, error) {
	if spec.Hash == 0 {
		return msg, nil
	}
	if _, ok := provider.HashName(spec.Hash); !ok || !spec.Hash.Available() {
		return nil, provider.Errorf(provider.ENOTSUP, "%s hashes with a hash the provider does not know", string(spec.Name))
	}
	h := spec.Hash.New()
	_, _ = h.Write(msg) // hash.Hash.Write never fails
	return h.Sum(nil), nil
}

// sign signs in (a message or a digest, see signInput) with the private
// key of k.
func (p *tokenProvider) sign(ctx context.Context, ref provider.KeyRef, k keyed, in []byte) ([]byte, error) {
	var sig []byte
	err := p.useObject(ctx, ref, k, p11.CKO_PRIVATE_KEY, func(sh p11.SessionHandle, obj p11.ObjectHandle) error {
		var err error
		sig, err = p.signOnce(sh, obj, k.spec, k.sc, in)
		return err
	})
	return sig, err
}

// signMechanism returns the mechanism that signs in for the scheme and
// the data the token signs with it:
//
//   - EdDSA: CKM_EDDSA (with CK_EDDSA_PARAMS for Ed448 and Ed25519ph)
//     over in;
//   - ECDSA: CKM_ECDSA over the digest in;
//   - RSASSA-PSS: CKM_RSA_PKCS_PSS with SHA-256, MGF1-SHA-256 and a
//     32-byte salt over the digest in;
//   - RSASSA-PKCS1-v1_5: CKM_RSA_PKCS over the DigestInfo of the SHA-256
//     digest in (which is what CKM_SHA256_RSA_PKCS signs for a whole
//     message).
func signMechanism(sc scheme, in []byte) (*p11.Mechanism, []byte, error) {
	switch sc.fam {
	case famEdwards:
		if sc.eddsa == nil {
			return p11.NewMechanism(ckmEdDSA, nil), in, nil
		}
		return p11.NewMechanism(ckmEdDSA, sc.eddsa), in, nil
	case famEC:
		return p11.NewMechanism(p11.CKM_ECDSA, nil), in, nil
	case famRSA:
		if sc.pss {
			return p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, p11.NewPSSParams(p11.CKM_SHA256, p11.CKG_MGF1_SHA256, pssSaltSize)), in, nil
		}
		data := make([]byte, 0, len(sha256DigestInfo)+len(in))
		return p11.NewMechanism(p11.CKM_RSA_PKCS, nil), append(append(data, sha256DigestInfo...), in...), nil
	}
	return nil, nil, provider.Errorf(provider.EPERM, "not a signature scheme")
}

// signOnce signs in with the private key obj and returns the signature in
// the contract's encoding (ASN.1 DER for ECDSA), of a size the algorithm
// allows (EIO otherwise).
func (p *tokenProvider) signOnce(sh p11.SessionHandle, obj p11.ObjectHandle, spec *alg.Spec, sc scheme, in []byte) ([]byte, error) {
	mech, data, err := signMechanism(sc, in)
	if err != nil {
		return nil, err
	}
	if err := p.mod.ctx.SignInit(sh, []*p11.Mechanism{mech}, obj); err != nil {
		return nil, call("C_SignInit", err)
	}
	sig, err := p.mod.ctx.Sign(sh, data)
	if err != nil {
		return nil, call("C_Sign", err)
	}
	if sc.fam == famEC {
		if sig, err = ecdsaDER(sig, sc.size); err != nil {
			return nil, err
		}
	}
	if !spec.SignatureSizeOK(len(sig)) {
		return nil, provider.Errorf(provider.EIO, "token returned a %d-byte %s signature", len(sig), string(spec.Name))
	}
	return sig, nil
}

// MAC returns the HMAC tag of msg under the token's key of ref
// (CKM_SHA256_HMAC, CKM_SHA384_HMAC, CKM_SHA512_HMAC): the full tag,
// never truncated.
func (p *tokenProvider) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	k, err := p.begin(ctx, ref, h, func() error { return provider.CheckMAC(msg) }, provider.UseMAC, "mac")
	if err != nil {
		return nil, err
	}
	var tag []byte
	err = p.useObject(ctx, ref, k, p11.CKO_SECRET_KEY, func(sh p11.SessionHandle, obj p11.ObjectHandle) error {
		var err error
		tag, err = p.macOnce(sh, obj, k.spec, k.sc, msg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return tag, nil
}

// macOnce computes the tag of msg with the HMAC key obj; a tag of another
// size than the algorithm's is EIO.
func (p *tokenProvider) macOnce(sh p11.SessionHandle, obj p11.ObjectHandle, spec *alg.Spec, sc scheme, msg []byte) ([]byte, error) {
	if sc.fam != famHMAC {
		return nil, provider.Errorf(provider.EPERM, "%s is not a MAC algorithm", string(spec.Name))
	}
	if err := p.mod.ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(sc.mac, nil)}, obj); err != nil {
		return nil, call("C_SignInit", err)
	}
	tag, err := p.mod.ctx.Sign(sh, msg)
	if err != nil {
		return nil, call("C_Sign", err)
	}
	if len(tag) != spec.MACSize {
		return nil, provider.Errorf(provider.EIO, "token returned a %d-byte %s tag", len(tag), string(spec.Name))
	}
	return tag, nil
}

// begin makes the checks every keyed operation shares, in the contract's
// order (context, ref, the operation's input, handle, use), and returns
// the key of h.
func (p *tokenProvider) begin(ctx context.Context, ref provider.KeyRef, h provider.Handle, input func() error, use provider.Use, op string) (keyed, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return keyed{}, err
	}
	if err := p.checkRef(ref); err != nil {
		return keyed{}, err
	}
	if err := input(); err != nil {
		return keyed{}, err
	}
	return p.prepare(ref, h, use, op)
}

// useObject runs fn on a session with k's object of class (entered,
// retried after a token reset), and returns its error as a contract error.
func (p *tokenProvider) useObject(ctx context.Context, ref provider.KeyRef, k keyed, class uint, fn func(sh p11.SessionHandle, obj p11.ObjectHandle) error) error {
	done, err := p.enter()
	if err != nil {
		return err
	}
	defer done()
	err = p.run(ctx, func(sh p11.SessionHandle) error {
		return p.withKey(sh, ref, k.id, class, func(obj p11.ObjectHandle) error { return fn(sh, obj) })
	})
	return mapErr(keyMsg(ref), err)
}

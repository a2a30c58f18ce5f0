package pkcs11

import (
	"crypto"
	"crypto/sha512"
	"errors"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// probeMsg is what probeEd25519ph has the token sign.
var probeMsg = []byte("keystored/pkcs11/ed25519ph-probe/v1")

// probeEd25519ph reports whether the token signs Ed25519ph (RFC 8032
// section 5.1): CKM_EDDSA with CK_EDDSA_PARAMS{phFlag: true} over a
// SHA-512 digest must give a signature that verifies as Ed25519ph. No
// mechanism flag says so, and a token may accept the parameter and sign
// something else: SoftHSM2 2.6.1 ignores it and signs pure Ed25519 of
// its input. The probe makes a throwaway Ed25519 key pair as session
// objects, which it destroys. A token that refuses the parameter does not
// offer Ed25519ph; any other failure (making or reading the key, a lost
// session) is an error.
func probeEd25519ph(ctx *p11.Ctx, sh p11.SessionHandle, reg *alg.Registry) (ok bool, err error) {
	spec, err := reg.Lookup(provider.Ed25519ph)
	if err != nil {
		return false, err
	}
	pubT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_KEY_TYPE, ckkECEdwards),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_EC_PARAMS, ed25519Params),
	}
	privT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_KEY_TYPE, ckkECEdwards),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
	}
	pubObj, privObj, err := ctx.GenerateKeyPair(sh, []*p11.Mechanism{p11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT)
	if err != nil {
		return false, call("C_GenerateKeyPair", err)
	}
	defer func() {
		for _, o := range []p11.ObjectHandle{privObj, pubObj} {
			if derr := ctx.DestroyObject(sh, o); derr != nil {
				err = errors.Join(err, call("C_DestroyObject", derr))
			}
		}
	}()
	attrs, err := ctx.GetAttributeValue(sh, pubObj, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_POINT, nil)})
	if err != nil {
		return false, call("C_GetAttributeValue", err)
	}
	if len(attrs) != 1 {
		return false, provider.Errorf(provider.EIO, "token returned no CKA_EC_POINT")
	}
	pub, err := ecPoint(attrs[0].Value, 32)
	if err != nil {
		return false, err
	}
	digest := sha512.Sum512(probeMsg)
	mech := []*p11.Mechanism{p11.NewMechanism(ckmEdDSA, eddsaParams(true))}
	if err := ctx.SignInit(sh, mech, privObj); err != nil {
		return false, refusal(call("C_SignInit", err))
	}
	sig, err := ctx.Sign(sh, digest[:])
	if err != nil {
		return false, refusal(call("C_Sign", err))
	}
	return spec.VerifyDigest(pub, crypto.SHA512, digest[:], sig), nil
}

// refusal returns nil for an error that is the token refusing a mechanism
// or its parameter, and err for one that says the session or the token
// is in trouble.
func refusal(err error) error {
	if rv, ok := rvOf(err); ok && (isReset(rv) || ckrCode(rv) == provider.EUNAVAILABLE) {
		return err
	}
	return nil
}

package pkcs11

import (
	"slices"
	"strconv"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// tokenRef is what the provider knows of its token.
type tokenRef struct {
	slot   uint
	label  string
	serial string
	info   p11.TokenInfo
}

// findToken returns the one initialized token labelled label, and if
// serial is not empty, with that serial number too. It fails with EINVAL
// listing the labels present when there is none, and when several match.
func findToken(ctx *p11.Ctx, label, serial string) (tokenRef, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return tokenRef{}, mapErr("listing the token slots", call("C_GetSlotList", err))
	}
	var (
		found  []tokenRef
		labels []string
	)
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue // a slot whose token went away while we looked
		}
		if ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		labels = append(labels, strconv.Quote(ti.Label))
		if ti.Label == label && (serial == "" || ti.SerialNumber == serial) {
			found = append(found, tokenRef{slot: s, label: ti.Label, serial: ti.SerialNumber, info: ti})
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var serials []string
		for _, f := range found {
			serials = append(serials, strconv.Quote(f.serial))
		}
		return tokenRef{}, provider.Errorf(provider.EINVAL, "%d tokens are labelled %q (serial numbers %s); labels must be unique", len(found), label, strings.Join(serials, ", "))
	case serial != "":
		return tokenRef{}, provider.Errorf(provider.EUNAVAILABLE, "token %q (serial %q) is not present", label, serial)
	case len(labels) == 0:
		return tokenRef{}, provider.Errorf(provider.EINVAL, "no token labelled %q: the module has no initialized token", label)
	}
	slices.Sort(labels)
	return tokenRef{}, provider.Errorf(provider.EINVAL, "no token labelled %q; tokens present: %s", label, strings.Join(labels, ", "))
}

// mechanisms returns the algorithms the token in slot supports, in the
// registry's order: ed25519 needs CKM_EC_EDWARDS_KEY_PAIR_GEN able to
// generate key pairs and CKM_EDDSA able to sign; aes-256-gcm needs
// CKM_AES_KEY_GEN able to generate and CKM_AES_GCM able to encrypt and
// decrypt, both with 32-byte keys.
func mechanisms(ctx *p11.Ctx, slot uint) ([]provider.Algorithm, error) {
	list, err := ctx.GetMechanismList(slot)
	if err != nil {
		return nil, mapErr("listing the token's mechanisms", call("C_GetMechanismList", err))
	}
	infos := map[uint]p11.MechanismInfo{}
	for _, m := range list {
		switch m.Mechanism {
		case ckmECEdwardsKeyPairGen, ckmEdDSA, p11.CKM_AES_KEY_GEN, p11.CKM_AES_GCM:
			mi, err := ctx.GetMechanismInfo(slot, []*p11.Mechanism{p11.NewMechanism(m.Mechanism, nil)})
			if err != nil {
				return nil, mapErr("reading the token's mechanism 0x"+strconv.FormatUint(uint64(m.Mechanism), 16), call("C_GetMechanismInfo", err))
			}
			infos[m.Mechanism] = mi
		}
	}
	return algorithmsFrom(infos), nil
}

// algorithmsFrom returns the algorithms that the mechanisms described by
// infos support.
func algorithmsFrom(infos map[uint]p11.MechanismInfo) []provider.Algorithm {
	has := func(mech, flags uint) bool {
		mi, ok := infos[mech]
		return ok && mi.Flags&flags == flags
	}
	var out []provider.Algorithm
	if has(ckmECEdwardsKeyPairGen, p11.CKF_GENERATE_KEY_PAIR) && has(ckmEdDSA, p11.CKF_SIGN) {
		out = append(out, provider.Ed25519)
	}
	if has(p11.CKM_AES_KEY_GEN, p11.CKF_GENERATE) && has(p11.CKM_AES_GCM, p11.CKF_ENCRYPT|p11.CKF_DECRYPT) &&
		aes256(infos[p11.CKM_AES_KEY_GEN]) && aes256(infos[p11.CKM_AES_GCM]) {
		out = append(out, provider.AES256GCM)
	}
	return out
}

// aes256 reports whether a mechanism's key size range allows AES-256.
// PKCS#11 gives AES key sizes in bytes; a token that gives them in bits
// (128..256) is accepted too. A range of 0..0 means "not stated".
func aes256(mi p11.MechanismInfo) bool {
	in := func(n uint) bool { return mi.MinKeySize <= n && n <= mi.MaxKeySize }
	return mi.MinKeySize == 0 && mi.MaxKeySize == 0 || in(aesKeySize) || in(8*aesKeySize)
}

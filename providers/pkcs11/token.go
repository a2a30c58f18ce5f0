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

// wantedMechanisms are the mechanisms whose information decides what the
// provider announces.
var wantedMechanisms = []uint{
	ckmECEdwardsKeyPairGen, ckmEdDSA,
	p11.CKM_EC_KEY_PAIR_GEN, p11.CKM_ECDSA,
	p11.CKM_RSA_PKCS_KEY_PAIR_GEN, p11.CKM_RSA_PKCS, p11.CKM_RSA_PKCS_PSS,
	p11.CKM_AES_KEY_GEN, p11.CKM_AES_GCM,
	p11.CKM_GENERIC_SECRET_KEY_GEN, p11.CKM_SHA256_HMAC, p11.CKM_SHA384_HMAC, p11.CKM_SHA512_HMAC,
	p11.CKM_AES_KEY_WRAP_PAD, // import (probeImport)
}

// mechanisms returns the information (C_GetMechanismInfo) of each of
// wantedMechanisms the token in slot lists (C_GetMechanismList).
func mechanisms(ctx *p11.Ctx, slot uint) (map[uint]p11.MechanismInfo, error) {
	list, err := ctx.GetMechanismList(slot)
	if err != nil {
		return nil, mapErr("listing the token's mechanisms", call("C_GetMechanismList", err))
	}
	infos := map[uint]p11.MechanismInfo{}
	for _, m := range list {
		if !slices.Contains(wantedMechanisms, m.Mechanism) {
			continue
		}
		mi, err := ctx.GetMechanismInfo(slot, []*p11.Mechanism{p11.NewMechanism(m.Mechanism, nil)})
		if err != nil {
			return nil, mapErr("reading the token's mechanism 0x"+strconv.FormatUint(uint64(m.Mechanism), 16), call("C_GetMechanismInfo", err))
		}
		infos[m.Mechanism] = mi
	}
	return infos, nil
}

// algorithmsFrom returns, in the order of names (the registry's), the
// algorithms that the mechanisms described by infos support, with
// ed25519ph only when ph is set (the token passed probeEd25519ph: no
// mechanism flag tells it). Each needs:
//
//   - ed25519, ed448: CKM_EC_EDWARDS_KEY_PAIR_GEN able to generate key
//     pairs and CKM_EDDSA able to sign, both with the curve's size in
//     their range (255 or 256 bits, 448 or 456 bits); an unstated range
//     (0..0) counts for Ed25519 only;
//   - ecdsa-p256-sha256, ecdsa-p384-sha384: CKM_EC_KEY_PAIR_GEN and
//     CKM_ECDSA with 256 or 384 bits in range; when a token states the
//     EC capability flags, keys over a prime field, named by OID, with
//     uncompressed points;
//   - rsa-N-pss-sha256, rsa-N-pkcs1-sha256: CKM_RSA_PKCS_KEY_PAIR_GEN and
//     CKM_RSA_PKCS_PSS or CKM_RSA_PKCS able to sign, with N bits in range;
//   - aes-256-gcm: CKM_AES_KEY_GEN able to generate and CKM_AES_GCM able
//     to encrypt and decrypt, both with 32-byte keys;
//   - hmac-sha256/384/512: CKM_GENERIC_SECRET_KEY_GEN able to generate
//     and CKM_SHA256/384/512_HMAC able to sign, with a key of the hash's
//     size in range.
//
// A key size range is read in the mechanism's unit: bits for Edwards, EC
// and RSA keys and for CKM_GENERIC_SECRET_KEY_GEN, bytes for AES keys
// and the HMAC mechanisms; for AES, bits are accepted too, as some tokens
// use them. An unstated range (0..0) allows every size, except where
// said.
func algorithmsFrom(infos map[uint]p11.MechanismInfo, names []provider.Algorithm, ph bool) []provider.Algorithm {
	has := func(mech, flags uint) bool {
		mi, ok := infos[mech]
		return ok && mi.Flags&flags == flags
	}
	var out []provider.Algorithm
	for _, a := range names {
		s, ok := schemeOf(a)
		if !ok {
			continue
		}
		var yes bool
		switch s.fam {
		case famEdwards:
			gen, sign := infos[ckmECEdwardsKeyPairGen], infos[ckmEdDSA]
			yes = has(ckmECEdwardsKeyPairGen, p11.CKF_GENERATE_KEY_PAIR) && has(ckmEdDSA, p11.CKF_SIGN)
			if s.size == 32 {
				yes = yes && (unstated(gen) || inRange(gen, 255, 256)) && (unstated(sign) || inRange(sign, 255, 256))
			} else {
				yes = yes && inRange(gen, 448, 456) && inRange(sign, 448, 456)
			}
			if a == provider.Ed25519ph {
				yes = yes && ph
			}
		case famEC:
			gen, sign := infos[p11.CKM_EC_KEY_PAIR_GEN], infos[p11.CKM_ECDSA]
			bits := uint(8 * s.size)
			yes = has(p11.CKM_EC_KEY_PAIR_GEN, p11.CKF_GENERATE_KEY_PAIR) && has(p11.CKM_ECDSA, p11.CKF_SIGN) &&
				(unstated(gen) || inRange(gen, bits)) && (unstated(sign) || inRange(sign, bits)) &&
				ecFlags(gen, p11.CKF_EC_F_P|p11.CKF_EC_NAMEDCURVE|p11.CKF_EC_UNCOMPRESS) &&
				ecFlags(sign, p11.CKF_EC_F_P|p11.CKF_EC_NAMEDCURVE)
		case famRSA:
			mech := uint(p11.CKM_RSA_PKCS)
			if s.pss {
				mech = p11.CKM_RSA_PKCS_PSS
			}
			gen, sign := infos[p11.CKM_RSA_PKCS_KEY_PAIR_GEN], infos[mech]
			bits := uint(s.bits)
			yes = has(p11.CKM_RSA_PKCS_KEY_PAIR_GEN, p11.CKF_GENERATE_KEY_PAIR) && has(mech, p11.CKF_SIGN) &&
				(unstated(gen) || inRange(gen, bits)) && (unstated(sign) || inRange(sign, bits))
		case famAES:
			yes = has(p11.CKM_AES_KEY_GEN, p11.CKF_GENERATE) && has(p11.CKM_AES_GCM, p11.CKF_ENCRYPT|p11.CKF_DECRYPT) &&
				keyBytes(infos[p11.CKM_AES_KEY_GEN], aesKeySize) && keyBytes(infos[p11.CKM_AES_GCM], aesKeySize)
		case famHMAC:
			size := uint(s.size)
			gen, sign := infos[p11.CKM_GENERIC_SECRET_KEY_GEN], infos[s.mac]
			yes = has(p11.CKM_GENERIC_SECRET_KEY_GEN, p11.CKF_GENERATE) && has(s.mac, p11.CKF_SIGN) &&
				(unstated(gen) || inRange(gen, 8*size)) && (unstated(sign) || inRange(sign, size))
		}
		if yes {
			out = append(out, a)
		}
	}
	return out
}

// unstated reports whether a mechanism states no key size range (0..0).
func unstated(mi p11.MechanismInfo) bool { return mi.MinKeySize == 0 && mi.MaxKeySize == 0 }

// inRange reports whether any of sizes is within a mechanism's key size
// range.
func inRange(mi p11.MechanismInfo, sizes ...uint) bool {
	for _, n := range sizes {
		if mi.MinKeySize <= n && n <= mi.MaxKeySize {
			return true
		}
	}
	return false
}

// keyBytes reports whether a mechanism's key size range allows a key of n
// bytes: stated in bytes, in bits, or not stated.
func keyBytes(mi p11.MechanismInfo, n uint) bool {
	return unstated(mi) || inRange(mi, n, 8*n)
}

// ecCapabilities are the EC capability flags of CK_MECHANISM_INFO.
const ecCapabilities = p11.CKF_EC_F_P | p11.CKF_EC_F_2M | p11.CKF_EC_ECPARAMETERS | p11.CKF_EC_NAMEDCURVE |
	p11.CKF_EC_UNCOMPRESS | p11.CKF_EC_COMPRESS

// ecFlags reports whether an EC mechanism has the capabilities need, or
// states none of the EC capability flags (they are optional).
func ecFlags(mi p11.MechanismInfo, need uint) bool {
	return mi.Flags&ecCapabilities == 0 || mi.Flags&need == need
}

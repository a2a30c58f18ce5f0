package pkcs11

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"slices"
	"strconv"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// importKind is a kind of key the token is asked to unwrap: each has its
// own CKK_ key type (and curve), which a token may or may not take from
// C_UnwrapKey whatever its mechanisms say.
type importKind uint8

const (
	_          importKind = iota
	impEd25519            // CKK_EC_EDWARDS, Ed25519 (ed25519, ed25519ph)
	impP256               // CKK_EC on P-256
	impP384               // CKK_EC on P-384
	impRSA                // CKK_RSA, every modulus size
	impAES                // CKK_AES, 32 bytes
	impGeneric            // CKK_GENERIC_SECRET (HMAC keys)
)

// importKinds lists every kind, in probe order.
var importKinds = []importKind{impEd25519, impP256, impP384, impRSA, impAES, impGeneric}

// kindOf returns the kind of key of a scheme, and false for a scheme
// whose keys cannot be imported (Ed448: alg.Spec.Importable).
func kindOf(sc scheme) (importKind, bool) {
	switch sc.fam {
	case famEdwards:
		if sc.size == 32 {
			return impEd25519, true
		}
	case famEC:
		if sc.size == 32 {
			return impP256, true
		}
		return impP384, true
	case famRSA:
		return impRSA, true
	case famAES:
		return impAES, true
	case famHMAC:
		return impGeneric, true
	}
	return 0, false
}

// String names the kind as error messages and docs do.
func (k importKind) String() string {
	switch k {
	case impEd25519:
		return "Ed25519 private key (CKK_EC_EDWARDS)"
	case impP256:
		return "P-256 private key (CKK_EC)"
	case impP384:
		return "P-384 private key (CKK_EC)"
	case impRSA:
		return "RSA private key (CKK_RSA)"
	case impAES:
		return "AES-256 key (CKK_AES)"
	case impGeneric:
		return "HMAC key (CKK_GENERIC_SECRET)"
	}
	return "key of kind " + strconv.Itoa(int(k))
}

// probeScheme is the scheme whose unwrap template the probe of kind k
// uses (the template is the same for every algorithm of the kind).
func probeScheme(k importKind) scheme {
	var a provider.Algorithm
	switch k {
	case impEd25519:
		a = provider.Ed25519
	case impP256:
		a = provider.ECDSAP256
	case impP384:
		a = provider.ECDSAP384
	case impRSA:
		a = provider.RSA2048PSS
	case impAES:
		a = provider.AES256GCM
	default:
		a = provider.HMACSHA256
	}
	sc, _ := schemeOf(a) // every one of these has a scheme
	return sc
}

// importCaps is what the token can import, as probeImport found when the
// provider started.
type importCaps struct {
	// none, if set, says why the token imports nothing.
	none error
	// refused holds, for each kind of key of an offered algorithm that the
	// token would not unwrap, its answer; a kind of an offered algorithm
	// absent from it is importable.
	refused map[importKind]error
	// noUnwrapModifiable: the token refuses CKA_MODIFIABLE=false in an
	// unwrap template (SoftHSM2 2.6.1: CKR_ATTRIBUTE_READ_ONLY, and it
	// leaves a stray session object behind when it does).
	noUnwrapModifiable bool
}

// check returns nil when the token imports keys of kind k (of an offered
// algorithm), else the reason it does not.
func (c importCaps) check(k importKind) error {
	if c.none != nil {
		return c.none
	}
	return c.refused[k]
}

// kwpUsable reports whether the token can unwrap with CKM_AES_KEY_WRAP_PAD
// under a 32-byte key (its range stated in bytes or bits, or not at all).
func kwpUsable(infos map[uint]p11.MechanismInfo) bool {
	mi, ok := infos[p11.CKM_AES_KEY_WRAP_PAD]
	return ok && mi.Flags&p11.CKF_UNWRAP != 0 && keyBytes(mi, aesKeySize)
}

// probeImport finds out which kinds of key of the offered algorithms the
// token imports: the way Import brings key material in (an ephemeral
// session AES key made with C_CreateObject, the material wrapped on the
// host with RFC 5649 and unwrapped by the token with CKM_AES_KEY_WRAP_PAD,
// see newKEK) is tried once per kind with a fixed, public probe key, as
// a session object destroyed right after. No mechanism flag tells whether
// a token unwraps a given key type: SoftHSM2 2.6.1 lists
// CKM_AES_KEY_WRAP_PAD with CKF_UNWRAP and Ed25519 key generation, yet
// answers CKR_FUNCTION_FAILED to the unwrap of an Ed25519 PKCS #8 key
// (SoftHSMv2 gained it later, pull request #594). A refusal makes that
// kind ENOTSUP; a lost session or device is an error (New fails). It
// also finds out whether the token takes CKA_MODIFIABLE=false in an
// unwrap template. sh should be a session of the probe's own, closed
// after (see probeUnwrap).
func probeImport(ctx *p11.Ctx, sh p11.SessionHandle, infos map[uint]p11.MechanismInfo, offered []provider.Algorithm) (importCaps, error) {
	var kinds []importKind
	for _, a := range offered {
		sc, ok := schemeOf(a)
		if !ok {
			continue
		}
		if k, ok := kindOf(sc); ok && !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return importCaps{none: provider.Errorf(provider.ENOTSUP, "the token offers no algorithm whose keys can be imported")}, nil
	}
	if !kwpUsable(infos) {
		return importCaps{none: provider.Errorf(provider.ENOTSUP, "the token has no CKM_AES_KEY_WRAP_PAD (RFC 5649) able to unwrap under a 32-byte AES key")}, nil
	}
	caps := importCaps{refused: map[importKind]error{}}
	modifiableTried := false
	for _, k := range importKinds {
		if !slices.Contains(kinds, k) {
			continue
		}
		in, err := probeMaterial(k)
		if err != nil {
			return importCaps{}, err
		}
		err = probeUnwrap(ctx, sh, probeScheme(k), in)
		if err == nil && !modifiableTried {
			// Once, with a kind the token takes: CKA_MODIFIABLE=false.
			modifiableTried = true
			merr := probeUnwrap(ctx, sh, probeScheme(k), in, p11.NewAttribute(p11.CKA_MODIFIABLE, false))
			if merr != nil && refusal(merr) != nil {
				clear(in)
				return importCaps{}, merr
			}
			caps.noUnwrapModifiable = merr != nil
		}
		clear(in)
		if err == nil {
			continue
		}
		if refusal(err) != nil {
			return importCaps{}, err
		}
		if errors.Is(err, errKEKRefused) {
			return importCaps{none: err}, nil
		}
		caps.refused[k] = provider.Errorf(provider.ENOTSUP, "the token refused to unwrap a%s %s with CKM_AES_KEY_WRAP_PAD when the provider started (%v)", article(k), k, err)
	}
	if len(caps.refused) == len(kinds) {
		caps.none = provider.Errorf(provider.ENOTSUP, "the token unwraps no kind of key of the algorithms it offers")
	}
	return caps, nil
}

// article is "n" before a kind whose name starts with a vowel sound.
func article(k importKind) string {
	switch k {
	case impEd25519, impRSA, impAES, impGeneric:
		return "n"
	}
	return ""
}

// probeUnwrap brings in (key material in the import format the token
// unwraps, see importInput) as a session object of scheme sc, the way
// Import does (with the attributes extra in the template), and destroys
// it. A token may leave a stray session object behind when it refuses
// the template (SoftHSM2 2.6.1 does): the caller probes on a session of
// its own, which it closes after.
func probeUnwrap(ctx *p11.Ctx, sh p11.SessionHandle, sc scheme, in []byte, extra ...*p11.Attribute) (err error) {
	kek, wrapped, err := newKEK(ctx, sh, in)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, destroyObject(ctx, sh, kek)) }()
	base := append([]*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, sc.class()),
		p11.NewAttribute(p11.CKA_TOKEN, false),
	}, extra...)
	obj, err := ctx.UnwrapKey(sh, kwpMechanism(), kek, wrapped, unwrapTemplate(base, sc))
	if err != nil {
		return call("C_UnwrapKey", err)
	}
	return destroyObject(ctx, sh, obj)
}

// destroyObject destroys obj; an object already gone is not an error.
func destroyObject(ctx *p11.Ctx, sh p11.SessionHandle, obj p11.ObjectHandle) error {
	if err := ctx.DestroyObject(sh, obj); err != nil {
		if rv, _ := rvOf(err); !isStaleObject(rv) {
			return call("C_DestroyObject", err)
		}
	}
	return nil
}

// kwpMechanism is CKM_AES_KEY_WRAP_PAD with the default (RFC 5649)
// initial value: no parameter.
func kwpMechanism() []*p11.Mechanism {
	return []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_WRAP_PAD, nil)}
}

// errKEKRefused is newKEK's error when the token will not make the
// ephemeral session AES key from its value.
var errKEKRefused = provider.Errorf(provider.ENOTSUP, "the token refused an ephemeral session AES key made with C_CreateObject, which import needs")

// newKEK makes an ephemeral AES-256 key as a session object that can
// only unwrap (sensitive, not extractable), from 32 bytes of crypto/rand,
// and wraps in under it on the host (RFC 5649, kwpWrap). It returns the
// key's object and the wrapped form; the host copy of the key is cleared
// before it returns. The caller destroys the object.
//
// The key is made on the host because no mechanism of SoftHSM2 2.6.1
// both encrypts (C_Encrypt) and unwraps: CKM_AES_KEY_WRAP_PAD only wraps
// and unwraps, CKM_AES_CBC_PAD only encrypts and decrypts. It protects
// nothing the host does not already hold (the material is in this
// process's memory, just opened from HPKE); it only carries the material
// through C_UnwrapKey, which makes the token set the key's attributes
// itself, and which tokens allow for private keys where they refuse
// C_CreateObject of one.
func newKEK(ctx *p11.Ctx, sh p11.SessionHandle, in []byte) (p11.ObjectHandle, []byte, error) {
	key := make([]byte, aesKeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return 0, nil, provider.Errorf(provider.EUNAVAILABLE, "crypto/rand failed: %w", err)
	}
	wrapped, err := kwpWrap(key, in)
	if err != nil {
		return 0, nil, err
	}
	obj, err := ctx.CreateObject(sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_UNWRAP, true),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
		p11.NewAttribute(p11.CKA_VALUE, key),
	})
	if err != nil {
		err = call("C_CreateObject", err)
		if refusal(err) == nil {
			err = errors.Join(errKEKRefused, err)
		}
		return 0, nil, err
	}
	return obj, wrapped, nil
}

// unwrapTemplate is the template of a key C_UnwrapKey makes for scheme
// sc: base (the class, CKA_TOKEN and for a token object its CKA_ID,
// label and CKA_MODIFIABLE, see objectAttrs) and the attributes Generate
// gives the same key, but those the token takes from the material
// (CKA_EC_PARAMS, CKA_MODULUS_BITS, CKA_VALUE_LEN), which SoftHSM2
// refuses in an unwrap template (CKR_ATTRIBUTE_READ_ONLY).
func unwrapTemplate(base []*p11.Attribute, sc scheme) []*p11.Attribute {
	t := append(slices.Clip(base), secretAttrs()...)
	if sc.pair() {
		_, keyType, _ := pairTemplates(sc)
		return append(t,
			p11.NewAttribute(p11.CKA_KEY_TYPE, keyType),
			p11.NewAttribute(p11.CKA_SIGN, true),
			p11.NewAttribute(p11.CKA_SIGN_RECOVER, false),
			p11.NewAttribute(p11.CKA_DECRYPT, false),
			p11.NewAttribute(p11.CKA_UNWRAP, false),
		)
	}
	aes := sc.fam == famAES
	keyType := uint(p11.CKK_AES)
	if !aes {
		keyType = p11.CKK_GENERIC_SECRET
	}
	return append(t,
		p11.NewAttribute(p11.CKA_KEY_TYPE, keyType),
		p11.NewAttribute(p11.CKA_ENCRYPT, aes),
		p11.NewAttribute(p11.CKA_DECRYPT, aes),
		p11.NewAttribute(p11.CKA_SIGN, !aes),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
	)
}

// probeByte fills the probe's Ed25519 seed, EC scalars and secret keys.
const probeByte = 0x2a

// probeRSAPrimes are the primes of the RSA-2048 key the probe unwraps: a
// fixed, public key (generated once with OpenSSL for this purpose), so
// that the probe costs no RSA key generation. It is never used for
// anything but that probe.
var probeRSAPrimes = [2]string{
	"f50455bcf499ee87b4be1b539b8f814fb2ee818fc8b3f2f1ebb4f98127fd1ba10207d0c2d09e23ca0551a73543310fdc269f1fdc315a441a5598bb2bcee853f17e85fce2ef5d2a1a24a841c92d3223f6a5214bff85127b10a9b42dfa80ea4667adf30eda84e1d05324661089fd124b56d8d340fc40fea5ec54fd1da9d2054b19",
	"b78b4c41cd7c6a1625ee701145b6679306b7f6e26797ad92a3a46c734df566e38346b3274c8d113b227c34f53d25fa81aeed28845c87240289bf3b74622a037ec00669901f273677c780245a8ea6a6ad0755fa88bd9a51a6ce3dc27165e20e33ae84c9a634fd214d203e63e305579cbbd4feaeffac77fe8d999b51e4161a092f",
}

// probeMaterial returns the probe key of kind k in the form the token
// unwraps: PKCS #8 DER for a private key, the raw bytes for a secret key.
func probeMaterial(k importKind) ([]byte, error) {
	var key any
	switch k {
	case impEd25519:
		key = ed25519.NewKeyFromSeed(filled(ed25519.SeedSize))
	case impP256, impP384:
		curve, size := elliptic.P256(), 32
		if k == impP384 {
			curve, size = elliptic.P384(), 48
		}
		// A scalar of small value: in [1, n), so valid on both curves.
		d := make([]byte, size)
		d[size-1] = probeByte
		ec, err := ecdsa.ParseRawPrivateKey(curve, d)
		if err != nil {
			return nil, provider.Errorf(provider.EIO, "import probe key: %v", err)
		}
		key = ec
	case impRSA:
		r, err := probeRSAKey()
		if err != nil {
			return nil, err
		}
		key = r
	default:
		return filled(aesKeySize), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "import probe key: %v", err)
	}
	return der, nil
}

// filled returns n bytes of probeByte.
func filled(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = probeByte
	}
	return b
}

// probeRSAKey builds the probe's RSA key from probeRSAPrimes.
func probeRSAKey() (*rsa.PrivateKey, error) {
	var primes [2]*big.Int
	for i, s := range probeRSAPrimes {
		v, ok := new(big.Int).SetString(s, 16)
		if !ok {
			return nil, provider.Errorf(provider.EIO, "import probe key: a malformed prime")
		}
		primes[i] = v
	}
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(primes[0], one), new(big.Int).Sub(primes[1], one))
	e := big.NewInt(65537)
	d := new(big.Int).ModInverse(e, phi)
	if d == nil {
		return nil, provider.Errorf(provider.EIO, "import probe key: 65537 has no inverse")
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).Mul(primes[0], primes[1]), E: 65537},
		D:         d,
		Primes:    primes[:],
	}
	k.Precompute()
	if err := k.Validate(); err != nil {
		return nil, provider.Errorf(provider.EIO, "import probe key: %v", err)
	}
	return k, nil
}

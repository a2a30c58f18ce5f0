package pkcs11

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"slices"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Key import (provider.Provider's NewImportKey and Import).
//
// The one-time HPKE wrapping keys live in this process's memory, in an
// importkey.Table, and the HPKE unwrap of the caller's material happens
// there too, on the host, not in the token: PKCS#11 defines no HPKE
// mechanism, and the token could not open the default wrapping suite
// (ML-KEM-768 with X25519) in any case. The opened material then goes
// into the token through C_UnwrapKey (newKEK, importKey), so the key the
// token holds is sensitive and never extractable from then on, like a
// generated one. The material is in the plugin's memory from the HPKE
// open until the token has it; every buffer the provider owns is cleared
// then, but the key structures crypto/x509 parses (big integers) and the
// binding's C copies cannot be.

// randomFill is the importkey.Random of the provider: crypto/rand.
func randomFill(_ provider.KeyRef, out []byte) error {
	_, err := rand.Read(out)
	return err
}

// NewImportKey makes a one-time import wrapping key for wrap (an HPKE
// suite; the provider need not, and does not, offer it for keys): an
// HPKE key pair from crypto/rand whose private half lives only in this
// process (importkey.Table), never in the token, the handle or on disk.
// A token that can import nothing (no CKM_AES_KEY_WRAP_PAD, or it
// refused every kind of key when the provider started, see probeImport)
// is ENOTSUP with the reason.
func (p *tokenProvider) NewImportKey(ctx context.Context, wrap provider.KeyRef) (provider.Generated, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	if err := p.checkRef(wrap); err != nil {
		return provider.Generated{}, err
	}
	if err := p.caps.none; err != nil {
		return provider.Generated{}, p.cannotImport("keys", err)
	}
	done, err := p.enter()
	if err != nil {
		return provider.Generated{}, err
	}
	defer done()
	return p.imports.New(ctx, wrap)
}

// cannotImport is the ENOTSUP of an import the token cannot do.
func (p *tokenProvider) cannotImport(what string, why error) error {
	return provider.Errorf(provider.ENOTSUP, "provider %s (token %q) cannot import %s: %w", p.info.Name, p.label, what, why)
}

// Import makes ref's key in the token from material sealed to the
// wrapping key wrap/wh: it opens it in this process (importkey.Table,
// which spends the wrapping key), puts it in the form the token unwraps
// (PKCS #8 DER of a private key, the raw AES or HMAC key) and brings it
// in with C_UnwrapKey (CKM_AES_KEY_WRAP_PAD under an ephemeral session
// key, see newKEK) as token objects with the attributes, CKA_ID and
// label Generate gives the same key: sensitive, never extractable, of the
// same usage (staged as session objects and copied to the token, see
// importKey). A key pair gets its public key object too (C_CreateObject).
// Before it returns, the token's key is checked against the material: a
// signature verifies under the material's public key, which the token's
// public key object must equal; an HMAC tag or an AES-GCM seal of the
// token is what the raw key gives on the host. The objects of a key that
// fails are destroyed (EIO).
//
// The refusals before the material is opened (another provider, an
// algorithm not offered, a kind of key the token would not unwrap when
// the provider started: ENOTSUP naming it) spend the wrapping key too,
// and are reported before ENOENT for a spent one.
func (p *tokenProvider) Import(ctx context.Context, ref provider.KeyRef, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	done, err := p.enter()
	if err != nil {
		return provider.Generated{}, err
	}
	defer done()
	// The wrapping key is spent first, whatever the outcome.
	k, err := p.imports.Take(wrap, wh)
	if err != nil {
		return provider.Generated{}, err
	}
	spec, sc, id, err := p.checkImport(ctx, ref)
	if err != nil {
		return provider.Generated{}, err
	}
	material, pub, err := k.Open(ref, spec, enc, wrapped)
	if err != nil {
		return provider.Generated{}, err
	}
	defer clear(material)
	in, pubAttrs, err := importInput(sc, material, pub)
	if err != nil {
		return provider.Generated{}, err
	}
	defer clear(in)
	err = p.runSpare(ctx, func(sh p11.SessionHandle) error {
		var err error
		// As in Generate: SoftHSM2's file backend now and then answers
		// CKR_GENERAL_ERROR while other sessions work; importKey starts
		// by clearing the key's objects, so it is safe to try again.
		for range generalErrorRetries {
			if err = p.importKey(ctx, sh, ref, spec, sc, id, in, material, pub, pubAttrs); err == nil {
				return nil
			}
			if rv, ok := rvOf(err); !ok || rv != p11.CKR_GENERAL_ERROR {
				return err
			}
		}
		return err
	})
	if err != nil {
		return provider.Generated{}, mapErr(keyMsg(ref), err)
	}
	return provider.Generated{PublicKey: pub, Handle: encodeHandle(id)}, nil
}

// checkImport makes Import's checks before the material is opened, in
// Generate's order (context, ref, algorithm), then that the algorithm's
// keys can be imported at all (alg.Spec.Importable) and that the token
// unwrapped their kind when the provider started (probeImport).
func (p *tokenProvider) checkImport(ctx context.Context, ref provider.KeyRef) (*alg.Spec, scheme, objectID, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, scheme{}, objectID{}, err
	}
	if err := p.checkRef(ref); err != nil {
		return nil, scheme{}, objectID{}, err
	}
	spec, sc, err := p.checkAlg(ref)
	if err != nil {
		return nil, scheme{}, objectID{}, err
	}
	kind, ok := kindOf(sc)
	if !spec.Importable() || !ok {
		return nil, scheme{}, objectID{}, provider.Errorf(provider.ENOTSUP, "%s keys cannot be imported (no standard PKCS #8 form keystored parses)", string(spec.Name))
	}
	if err := p.caps.check(kind); err != nil {
		return nil, scheme{}, objectID{}, p.cannotImport(string(spec.Name)+" keys", err)
	}
	id, err := idOf(ref)
	if err != nil {
		return nil, scheme{}, objectID{}, err
	}
	return spec, sc, id, nil
}

// importInput returns what the token unwraps for material (the
// provider-format material of alg.Spec.ImportMaterial: an Ed25519 seed,
// an ECDSA scalar, an RSA PKCS #1 private key, a raw AES or HMAC key):
// the PKCS #8 DER of a private key, the raw bytes of a secret key; and,
// for a key pair, the attributes of its public key object, from pub (the
// contract's encoding). The caller clears the result.
func importInput(sc scheme, material, pub []byte) ([]byte, []*p11.Attribute, error) {
	var key any
	var pubAttrs []*p11.Attribute
	switch sc.fam {
	case famAES, famHMAC:
		return slices.Clone(material), nil, nil
	case famEdwards:
		if len(material) != ed25519.SeedSize || len(pub) != sc.size {
			return nil, nil, provider.Errorf(provider.EIO, "imported Edwards key material has the wrong size")
		}
		k := ed25519.NewKeyFromSeed(material)
		defer clear(k)
		key = k
		pubAttrs = []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, sc.curve), p11.NewAttribute(p11.CKA_EC_POINT, octetString(pub))}
	case famEC:
		curve := elliptic.P256()
		if sc.size == 48 {
			curve = elliptic.P384()
		}
		k, err := ecdsa.ParseRawPrivateKey(curve, material)
		if err != nil || len(pub) != 1+2*sc.size {
			return nil, nil, provider.Errorf(provider.EIO, "imported ECDSA key material is not a key of its curve")
		}
		key = k
		pubAttrs = []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, sc.curve), p11.NewAttribute(p11.CKA_EC_POINT, octetString(pub))}
	case famRSA:
		k, err := x509.ParsePKCS1PrivateKey(material)
		if err != nil || k.N.BitLen() != sc.bits || k.E != 65537 {
			return nil, nil, provider.Errorf(provider.EIO, "imported RSA key material is not an RSA-%d key with exponent 65537", sc.bits)
		}
		key = k
		pubAttrs = []*p11.Attribute{p11.NewAttribute(p11.CKA_MODULUS, k.N.Bytes()), p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, rsaExponent)}
	default:
		return nil, nil, provider.Errorf(provider.ENOTSUP, "keys of this scheme cannot be imported")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, provider.Errorf(provider.EIO, "encoding imported key material as PKCS #8: %v", err)
	}
	return der, pubAttrs, nil
}

// octetString is the DER OCTET STRING of b (shorter than 128 bytes), the
// CKA_EC_POINT encoding PKCS#11 specifies.
func octetString(b []byte) []byte {
	return append([]byte{0x04, byte(len(b))}, b...)
}

// importKey brings the import input in (importInput) as ref's token
// objects with session sh and checks them (see Import). Like an RSA
// key's generation, it stages: the token unwraps the key (and makes its
// public key object) as session objects, which are checked, then copied
// to the token unmodifiable in turn (commit): SoftHSM2 refuses
// CKA_MODIFIABLE=false in an unwrap template (CKR_ATTRIBUTE_READ_ONLY)
// but takes it in C_CopyObject. A token that cannot copy session
// objects gets the key unwrapped on the token directly, in turn, without
// CKA_MODIFIABLE=false if it refuses that there. It is safe to repeat:
// the objects of the key's CKA_ID are destroyed before the new ones are
// made. The ephemeral session key is destroyed in every case.
func (p *tokenProvider) importKey(ctx context.Context, sh p11.SessionHandle, ref provider.KeyRef, spec *alg.Spec, sc scheme,
	id objectID, in, material, pub []byte, pubAttrs []*p11.Attribute) (err error) {
	kek, wrapped, err := newKEK(p.mod.ctx, sh, in)
	if err != nil {
		return err
	}
	defer clear(wrapped)
	defer func() { err = errors.Join(err, destroyObject(p.mod.ctx, sh, kek)) }()
	im := imported{spec: spec, sc: sc, kek: kek, wrapped: wrapped, material: material, pub: pub, pubAttrs: pubAttrs}
	if !p.noStaging.Load() {
		st, err := p.makeImported(sh, ref, id, im, false)
		if err != nil {
			return err
		}
		_, err = p.commit(ctx, sh, id, st)
		if !errors.Is(err, errNoCopy) {
			return err
		}
	}
	unlock, err := p.lockObjects(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := p.clearID(sh, id); err != nil {
		return err
	}
	k, err := p.makeImported(sh, ref, id, im, true)
	if err != nil {
		return err
	}
	p.cache(id, k.obj)
	return nil
}

// imported is what makeImported makes a key of: its algorithm, the
// ephemeral session key and the wrapped input, the material and public
// key Import opened, and the public key object's attributes.
type imported struct {
	spec              *alg.Spec
	sc                scheme
	kek               p11.ObjectHandle
	wrapped, material []byte
	pub               []byte
	pubAttrs          []*p11.Attribute
}

// makeImported unwraps the key (and makes the public key object of a
// pair) with CKA_ID id, as token objects when onToken is set (the caller
// holds lockObjects and has cleared id), else as session objects that
// only commit makes token objects of, and checks it against the
// material. A key that fails is destroyed.
func (p *tokenProvider) makeImported(sh p11.SessionHandle, ref provider.KeyRef, id objectID, im imported, onToken bool) (madeKey, error) {
	var k madeKey
	var err error
	k.obj, err = makeObject(p.objectAttrs(ref, id, im.sc.class(), onToken), onToken, &p.noUnwrapModifiable, func(base []*p11.Attribute) (p11.ObjectHandle, error) {
		obj, err := p.mod.ctx.UnwrapKey(sh, kwpMechanism(), im.kek, im.wrapped, unwrapTemplate(base, im.sc))
		return obj, call("C_UnwrapKey", err)
	})
	if err != nil {
		return madeKey{}, err
	}
	if im.sc.pair() {
		_, keyType, _ := pairTemplates(im.sc)
		k.pubObj, err = makeObject(p.objectAttrs(ref, id, p11.CKO_PUBLIC_KEY, onToken), onToken, &p.noModifiable, func(base []*p11.Attribute) (p11.ObjectHandle, error) {
			t := append(base,
				p11.NewAttribute(p11.CKA_KEY_TYPE, keyType),
				p11.NewAttribute(p11.CKA_PRIVATE, false),
				p11.NewAttribute(p11.CKA_VERIFY, true),
				p11.NewAttribute(p11.CKA_VERIFY_RECOVER, false),
				p11.NewAttribute(p11.CKA_ENCRYPT, false),
				p11.NewAttribute(p11.CKA_WRAP, false),
				p11.NewAttribute(p11.CKA_DERIVE, false),
			)
			obj, err := p.mod.ctx.CreateObject(sh, append(t, im.pubAttrs...))
			return obj, call("C_CreateObject", err)
		})
		if err == nil {
			k.pub = im.pub
			err = p.checkImportedPair(sh, im.spec, im.sc, k, im.pub)
		}
	} else {
		err = p.checkImportedSecret(sh, im.spec, im.sc, k.obj, im.material)
	}
	if err != nil {
		var derr error
		if onToken {
			derr = destroyAll(p.mod.ctx, sh, id)
		} else {
			derr = p.dropStaged(sh, k)
		}
		return madeKey{}, errors.Join(err, derr)
	}
	return k, nil
}

// makeObject calls mk with base (objectAttrs) and returns the object it
// made. For a token object, CKA_MODIFIABLE=false is left out of base once
// the token is known to refuse it in mk's template (*refused), and a
// template the token refuses with it is tried again without it, which
// sets *refused: the object is then modifiable. Staged objects never
// carry it (commit's C_CopyObject sets it).
func makeObject(base []*p11.Attribute, onToken bool, refused *atomic.Bool, mk func(base []*p11.Attribute) (p11.ObjectHandle, error)) (p11.ObjectHandle, error) {
	without := slices.DeleteFunc(slices.Clone(base), func(a *p11.Attribute) bool { return a.Type == p11.CKA_MODIFIABLE })
	if !onToken || len(without) == len(base) {
		return mk(base)
	}
	if refused.Load() {
		return mk(without)
	}
	obj, err := mk(base)
	if err == nil {
		return obj, nil
	}
	switch rv, _ := rvOf(err); rv {
	case p11.CKR_ATTRIBUTE_READ_ONLY, p11.CKR_ATTRIBUTE_TYPE_INVALID, p11.CKR_ATTRIBUTE_VALUE_INVALID, p11.CKR_TEMPLATE_INCONSISTENT:
		refused.Store(true)
		return mk(without)
	}
	return 0, err
}

// checkImportedPair checks an imported pair k: the public key read back
// from the token's public key object is pub (the material's), and a
// signature of the token's private key verifies under it (the pairwise
// consistency test of Generate, which here also proves that the token
// holds the material it was given).
func (p *tokenProvider) checkImportedPair(sh p11.SessionHandle, spec *alg.Spec, sc scheme, k madeKey, pub []byte) error {
	got, err := p.readPublic(sh, spec, sc, k.pubObj)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, pub) {
		return provider.Errorf(provider.EIO, "the token's public key of the imported %s key differs from the material's", string(spec.Name))
	}
	in, err := signInput(spec, pairwiseMsg)
	if err != nil {
		return err
	}
	sig, err := p.signOnce(sh, k.obj, spec, sc, in)
	if err != nil {
		return err
	}
	if !spec.Verify(pub, pairwiseMsg, sig) {
		return provider.Errorf(provider.EIO, "the token's imported %s key fails its pairwise consistency test", string(spec.Name))
	}
	return nil
}

// checkImportedSecret checks that the token's imported secret key obj is
// the material: its HMAC tag of a fixed message is the host's under the
// material, or the host opens the token's AES-GCM seal of it (under a
// random IV, as Seal makes one).
func (p *tokenProvider) checkImportedSecret(sh p11.SessionHandle, spec *alg.Spec, sc scheme, obj p11.ObjectHandle, material []byte) error {
	bad := provider.Errorf(provider.EIO, "the token's imported %s key does not match the material", string(spec.Name))
	if sc.fam == famHMAC {
		tag, err := p.macOnce(sh, obj, spec, sc, pairwiseMsg)
		if err != nil {
			return err
		}
		m, err := spec.NewMAC(material)
		if err != nil {
			return err
		}
		want, err := m.Tag(pairwiseMsg)
		if err != nil {
			return err
		}
		if !alg.Equal(tag, want) {
			return bad
		}
		return nil
	}
	iv, ct, err := p.encrypt(sh, obj, pairwiseMsg, nil)
	if err != nil {
		return err
	}
	a, err := spec.NewAEAD(material)
	if err != nil {
		return err
	}
	pt, err := a.Open(nil, append(iv, ct...), nil)
	if err != nil || !bytes.Equal(pt, pairwiseMsg) {
		return bad
	}
	return nil
}

// forgetImportKey is Destroy of an import wrapping key's handle: the
// table forgets it, if it holds it for wrap. It always succeeds; a
// closed provider holds no wrapping key.
func (p *tokenProvider) forgetImportKey(wrap provider.KeyRef, h provider.Handle) {
	p.life.RLock()
	defer p.life.RUnlock()
	if !p.closed {
		p.imports.Forget(wrap, h)
	}
}

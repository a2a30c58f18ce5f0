package pkcs11

import (
	"context"
	"errors"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Generate makes ref's key inside the token, replacing any objects a
// previous Generate for the same ref left, and returns its public key
// (empty for AES and HMAC keys) and handle. A new key pair is checked
// before it is returned: its private key signs, and the signature
// verifies under the public key read from the token (alg.Spec.Verify).
//
// Generate and Destroy run on sessions of their own, never on the
// sessions of signing and sealing, and take turns only where they create
// or destroy token objects (lockObjects). An RSA key, whose generation
// takes up to seconds, is first made as session objects outside that
// turn and then copied to the token (stage, commit), so it delays no
// other Generate or Destroy either.
func (p *tokenProvider) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	if err := p.checkRef(ref); err != nil {
		return provider.Generated{}, err
	}
	spec, sc, err := p.checkAlg(ref)
	if err != nil {
		return provider.Generated{}, err
	}
	id, err := idOf(ref)
	if err != nil {
		return provider.Generated{}, err
	}
	done, err := p.enter()
	if err != nil {
		return provider.Generated{}, err
	}
	defer done()
	run := p.runSpare
	if sc.slow() {
		run = p.runSlow
	}
	var pub []byte
	err = run(ctx, func(sh p11.SessionHandle) error {
		var err error
		// SoftHSM2's file backend now and then answers CKR_GENERAL_ERROR
		// to a key generation while other sessions work (seen once in
		// many -race runs of TestConcurrentCallers). generate starts by
		// clearing the key's objects, so it is safe to try again, a
		// bounded number of times.
		for range generalErrorRetries {
			if pub, err = p.generate(ctx, sh, ref, spec, sc, id); err == nil {
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

// generalErrorRetries bounds Generate's attempts when the token answers
// CKR_GENERAL_ERROR.
const generalErrorRetries = 3

// generate makes ref's key with session sh and returns its public key.
// It is safe to repeat (run retries it after a reset): it starts by
// destroying whatever token objects carry the key's CKA_ID.
func (p *tokenProvider) generate(ctx context.Context, sh p11.SessionHandle, ref provider.KeyRef, spec *alg.Spec, sc scheme, id objectID) ([]byte, error) {
	if sc.slow() && !p.noStaging.Load() {
		st, err := p.makeKey(sh, ref, spec, sc, id, false)
		if err != nil {
			return nil, err
		}
		pub, err := p.commit(ctx, sh, id, st)
		if !errors.Is(err, errNoCopy) {
			return pub, err
		}
		// The token cannot copy session objects to the token: make the
		// key on the token, in turn (and from now on always so).
	}
	unlock, err := p.lockObjects(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := p.clearID(sh, id); err != nil {
		return nil, err
	}
	k, err := p.makeKey(sh, ref, spec, sc, id, true)
	if err != nil {
		return nil, err
	}
	p.cache(id, k.obj)
	return k.pub, nil
}

// madeKey is a key makeKey made: the object operations use (the private
// key of a pair, the secret key), the public key object of a pair and
// its public key in the contract's encoding.
type madeKey struct {
	obj, pubObj p11.ObjectHandle
	pub         []byte
}

// makeKey makes a key of ref's algorithm with CKA_ID id, as token objects
// when onToken is set (the caller holds lockObjects and has cleared id),
// else as session objects that only commit makes token objects of. A key
// pair that fails its pairwise consistency test is destroyed.
func (p *tokenProvider) makeKey(sh p11.SessionHandle, ref provider.KeyRef, spec *alg.Spec, sc scheme, id objectID, onToken bool) (madeKey, error) {
	switch sc.fam {
	case famEdwards, famEC, famRSA:
		return p.makePair(sh, ref, spec, sc, id, onToken)
	case famAES, famHMAC:
		if onToken {
			return p.makeSecret(sh, ref, spec, sc, id)
		}
	}
	return madeKey{}, provider.Errorf(provider.ENOTSUP, "provider %s cannot generate %q", p.info.Name, string(ref.Algorithm))
}

// objectAttrs are the attributes of every object the provider makes: a
// token object that cannot be modified, or a staged session object
// (modifiable, so that commit can copy it to the token).
func (p *tokenProvider) objectAttrs(ref provider.KeyRef, id objectID, class uint, onToken bool) []*p11.Attribute {
	a := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, class),
		p11.NewAttribute(p11.CKA_TOKEN, onToken),
		p11.NewAttribute(p11.CKA_ID, id[:]),
		p11.NewAttribute(p11.CKA_LABEL, ref.String()),
	}
	if onToken && !p.noModifiable.Load() {
		a = append(a, p11.NewAttribute(p11.CKA_MODIFIABLE, false))
	}
	return a
}

// secretAttrs are the attributes of every private or secret key.
func secretAttrs() []*p11.Attribute {
	return []*p11.Attribute{
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	}
}

// rejectsModifiable reports whether err is the token refusing
// CKA_MODIFIABLE=false in a template, which is then left out from now on.
func (p *tokenProvider) rejectsModifiable(err error) bool {
	if p.noModifiable.Load() {
		return false
	}
	rv, ok := rvOf(err)
	if !ok {
		return false
	}
	switch rv {
	case p11.CKR_ATTRIBUTE_TYPE_INVALID, p11.CKR_ATTRIBUTE_VALUE_INVALID, p11.CKR_TEMPLATE_INCONSISTENT:
		p.noModifiable.Store(true)
		return true
	}
	return false
}

// pairTemplates returns the mechanism, the key type and the attributes
// of the public key that are particular to the scheme of a key pair.
func pairTemplates(sc scheme) (uint, uint, []*p11.Attribute) {
	switch sc.fam {
	case famEdwards:
		return ckmECEdwardsKeyPairGen, ckkECEdwards, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, sc.curve)}
	case famEC:
		return p11.CKM_EC_KEY_PAIR_GEN, p11.CKK_EC, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, sc.curve)}
	}
	return p11.CKM_RSA_PKCS_KEY_PAIR_GEN, p11.CKK_RSA, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_MODULUS_BITS, sc.bits),
		p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, rsaExponent),
	}
}

// makePair makes a key pair (see makeKey), reads its public key and runs
// the pairwise consistency test.
func (p *tokenProvider) makePair(sh p11.SessionHandle, ref provider.KeyRef, spec *alg.Spec, sc scheme, id objectID, onToken bool) (madeKey, error) {
	mechType, keyType, pubExtra := pairTemplates(sc)
	mech := []*p11.Mechanism{p11.NewMechanism(mechType, nil)}
	var pubObj, privObj p11.ObjectHandle
	var err error
	for {
		pubT := append(p.objectAttrs(ref, id, p11.CKO_PUBLIC_KEY, onToken),
			p11.NewAttribute(p11.CKA_KEY_TYPE, keyType),
			p11.NewAttribute(p11.CKA_PRIVATE, false),
			p11.NewAttribute(p11.CKA_VERIFY, true),
			p11.NewAttribute(p11.CKA_VERIFY_RECOVER, false),
			p11.NewAttribute(p11.CKA_ENCRYPT, false),
			p11.NewAttribute(p11.CKA_WRAP, false),
			p11.NewAttribute(p11.CKA_DERIVE, false),
		)
		pubT = append(pubT, pubExtra...)
		privT := append(append(p.objectAttrs(ref, id, p11.CKO_PRIVATE_KEY, onToken), secretAttrs()...),
			p11.NewAttribute(p11.CKA_KEY_TYPE, keyType),
			p11.NewAttribute(p11.CKA_SIGN, true),
			p11.NewAttribute(p11.CKA_SIGN_RECOVER, false),
			p11.NewAttribute(p11.CKA_DECRYPT, false),
			p11.NewAttribute(p11.CKA_UNWRAP, false),
		)
		if h := p.testHooks.beforeKeygen; h != nil {
			h(ref)
		}
		pubObj, privObj, err = p.mod.ctx.GenerateKeyPair(sh, mech, pubT, privT)
		if h := p.testHooks.afterKeygen; h != nil {
			h(ref)
		}
		if err == nil || !onToken || !p.rejectsModifiable(err) {
			break
		}
	}
	if err != nil {
		return madeKey{}, call("C_GenerateKeyPair", err)
	}
	k := madeKey{obj: privObj, pubObj: pubObj}
	k.pub, err = p.checkPair(sh, spec, sc, pubObj, privObj)
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

// pairwiseMsg is what Generate signs to check a new key pair.
var pairwiseMsg = []byte("keystored/pkcs11/pairwise-consistency/v1")

// checkPair reads the public key of a new pair and checks that a
// signature of the private key verifies under it (a pairwise consistency
// test, which also checks that the public key was read right and that
// the token signs the algorithm as keystored means it). It returns the
// public key.
func (p *tokenProvider) checkPair(sh p11.SessionHandle, spec *alg.Spec, sc scheme, pubObj, privObj p11.ObjectHandle) ([]byte, error) {
	pub, err := p.readPublic(sh, spec, sc, pubObj)
	if err != nil {
		return nil, err
	}
	in, err := signInput(spec, pairwiseMsg)
	if err != nil {
		return nil, err
	}
	sig, err := p.signOnce(sh, privObj, spec, sc, in)
	if err != nil {
		return nil, err
	}
	if !spec.Verify(pub, pairwiseMsg, sig) {
		return nil, provider.Errorf(provider.EIO, "the token's new %s key fails its pairwise consistency test", string(spec.Name))
	}
	return pub, nil
}

// readPublic reads the public key of a pair from its public key object,
// in the contract's encoding: the raw Edwards key, the SEC 1 uncompressed
// point, the PKCS#1 RSAPublicKey DER. A key that alg.Spec.CheckPublicKey
// refuses is EIO.
func (p *tokenProvider) readPublic(sh p11.SessionHandle, spec *alg.Spec, sc scheme, pubObj p11.ObjectHandle) ([]byte, error) {
	var pub []byte
	switch sc.fam {
	case famEdwards, famEC:
		attrs, err := p.mod.ctx.GetAttributeValue(sh, pubObj, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_POINT, nil)})
		if err != nil {
			return nil, call("C_GetAttributeValue", err)
		}
		if len(attrs) != 1 {
			return nil, provider.Errorf(provider.EIO, "token returned no CKA_EC_POINT")
		}
		n := sc.size
		if sc.fam == famEC {
			n = 1 + 2*sc.size
		}
		if pub, err = ecPoint(attrs[0].Value, n); err != nil {
			return nil, err
		}
	case famRSA:
		attrs, err := p.mod.ctx.GetAttributeValue(sh, pubObj, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_MODULUS, nil),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, call("C_GetAttributeValue", err)
		}
		if len(attrs) != 2 {
			return nil, provider.Errorf(provider.EIO, "token returned no CKA_MODULUS or CKA_PUBLIC_EXPONENT")
		}
		if pub, err = rsaPublicKey(attrs[0].Value, attrs[1].Value, sc.bits); err != nil {
			return nil, err
		}
	}
	if !spec.CheckPublicKey(pub) {
		return nil, provider.Errorf(provider.EIO, "token returned a malformed %s public key", string(spec.Name))
	}
	return pub, nil
}

// makeSecret makes an AES-256 key for GCM or an HMAC key on the token
// (the caller holds lockObjects and has cleared id). An HMAC key is
// checked to give a tag of its size; one that does not is destroyed.
func (p *tokenProvider) makeSecret(sh p11.SessionHandle, ref provider.KeyRef, spec *alg.Spec, sc scheme, id objectID) (madeKey, error) {
	mechType, keyType, size := uint(p11.CKM_AES_KEY_GEN), uint(p11.CKK_AES), aesKeySize
	aes := sc.fam == famAES
	if !aes {
		mechType, keyType, size = p11.CKM_GENERIC_SECRET_KEY_GEN, p11.CKK_GENERIC_SECRET, sc.size
	}
	mech := []*p11.Mechanism{p11.NewMechanism(mechType, nil)}
	var obj p11.ObjectHandle
	var err error
	for {
		t := append(append(p.objectAttrs(ref, id, p11.CKO_SECRET_KEY, true), secretAttrs()...),
			p11.NewAttribute(p11.CKA_KEY_TYPE, keyType),
			p11.NewAttribute(p11.CKA_VALUE_LEN, size),
			p11.NewAttribute(p11.CKA_ENCRYPT, aes),
			p11.NewAttribute(p11.CKA_DECRYPT, aes),
			p11.NewAttribute(p11.CKA_SIGN, !aes),
			p11.NewAttribute(p11.CKA_VERIFY, false),
			p11.NewAttribute(p11.CKA_WRAP, false),
			p11.NewAttribute(p11.CKA_UNWRAP, false),
		)
		obj, err = p.mod.ctx.GenerateKey(sh, mech, t)
		if err == nil || !p.rejectsModifiable(err) {
			break
		}
	}
	if err != nil {
		return madeKey{}, call("C_GenerateKey", err)
	}
	if !aes {
		if _, err := p.macOnce(sh, obj, spec, sc, pairwiseMsg); err != nil {
			return madeKey{}, errors.Join(err, destroyAll(p.mod.ctx, sh, id))
		}
	}
	return madeKey{obj: obj}, nil
}

// errNoCopy is commit's error when the token cannot copy the staged
// session objects to the token.
var errNoCopy = provider.Errorf(provider.ENOTSUP, "the token cannot copy session objects to the token")

// commit makes token objects of a key pair staged as session objects
// (makeKey with onToken false): in turn (lockObjects), it destroys the
// token objects id names and copies the staged objects to the token,
// unmodifiable; the staged objects are destroyed in every case. It
// returns the public key, or an error wrapping errNoCopy when the token
// refuses the copy (and noStaging is then set).
func (p *tokenProvider) commit(ctx context.Context, sh p11.SessionHandle, id objectID, st madeKey) ([]byte, error) {
	unlock, err := p.lockObjects(ctx)
	if err != nil {
		return nil, errors.Join(err, p.dropStaged(sh, st))
	}
	defer unlock()
	obj, err := p.commitLocked(sh, id, st)
	if derr := p.dropStaged(sh, st); derr != nil {
		err = errors.Join(err, derr)
	}
	if err != nil {
		return nil, err
	}
	p.cache(id, obj)
	return st.pub, nil
}

// commitLocked is commit's work in turn; it returns the private key's
// token object.
func (p *tokenProvider) commitLocked(sh p11.SessionHandle, id objectID, st madeKey) (p11.ObjectHandle, error) {
	if err := p.clearID(sh, id); err != nil {
		return 0, err
	}
	obj, err := p.copyToToken(sh, st.obj)
	if err != nil {
		return 0, err
	}
	if st.pubObj == 0 { // a secret key (Import stages those too)
		return obj, nil
	}
	if _, err := p.copyToToken(sh, st.pubObj); err != nil {
		return 0, errors.Join(err, destroyAll(p.mod.ctx, sh, id))
	}
	return obj, nil
}

// copyToToken copies a staged session object to a token object that
// cannot be modified (unless the token refuses CKA_MODIFIABLE=false
// altogether, noModifiable), keeping every other attribute. A token that
// refuses the copy, or CKA_MODIFIABLE=false in it, sets noStaging: its
// RSA keys are then made on the token like every other key, so they get
// the same attributes.
func (p *tokenProvider) copyToToken(sh p11.SessionHandle, obj p11.ObjectHandle) (p11.ObjectHandle, error) {
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_TOKEN, true)}
	if !p.noModifiable.Load() {
		t = append(t, p11.NewAttribute(p11.CKA_MODIFIABLE, false))
	}
	c, err := p.mod.ctx.CopyObject(sh, obj, t)
	if err == nil {
		return c, nil
	}
	if refusesCopy(err) {
		p.noStaging.Store(true)
		return 0, errors.Join(errNoCopy, call("C_CopyObject", err))
	}
	return 0, call("C_CopyObject", err)
}

// refusesCopy reports whether err is a token refusing C_CopyObject, or
// the change of CKA_TOKEN in it.
func refusesCopy(err error) bool {
	rv, ok := rvOf(err)
	if !ok {
		return false
	}
	switch rv {
	case p11.CKR_FUNCTION_NOT_SUPPORTED, p11.CKR_ACTION_PROHIBITED, p11.CKR_ATTRIBUTE_READ_ONLY,
		p11.CKR_TEMPLATE_INCONSISTENT, p11.CKR_ATTRIBUTE_TYPE_INVALID, p11.CKR_ATTRIBUTE_VALUE_INVALID:
		return true
	}
	return false
}

// dropStaged destroys the session objects of a staged key (a secret key
// has no pubObj: 0, CK_INVALID_HANDLE). An object already gone (its
// session was closed) is not an error.
func (p *tokenProvider) dropStaged(sh p11.SessionHandle, st madeKey) error {
	var errs []error
	for _, o := range []p11.ObjectHandle{st.obj, st.pubObj} {
		if o == 0 {
			continue
		}
		if err := p.mod.ctx.DestroyObject(sh, o); err != nil {
			if rv, _ := rvOf(err); !isStaleObject(rv) {
				errs = append(errs, call("C_DestroyObject", err))
			}
		}
	}
	return errors.Join(errs...)
}

// clearID destroys the token objects with CKA_ID id and forgets their
// cached handle (the caller holds lockObjects).
func (p *tokenProvider) clearID(sh p11.SessionHandle, id objectID) error {
	err := destroyAll(p.mod.ctx, sh, id)
	p.objs.forget(id)
	return err
}

// cache caches obj as the object of id that operations use.
func (p *tokenProvider) cache(id objectID, obj p11.ObjectHandle) {
	_, gen, _ := p.objs.get(id)
	p.objs.put(id, obj, gen)
}

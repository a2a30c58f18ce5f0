package pkcs11

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// checkRef checks ref and that it names this provider.
func (p *tokenProvider) checkRef(ref provider.KeyRef) error {
	if err := ref.Check(); err != nil {
		return err
	}
	if ref.Provider != p.info.Name {
		return provider.Errorf(provider.EINVAL, "key %s belongs to provider %q, not %q", ref, ref.Provider, p.info.Name)
	}
	return nil
}

// checkAlg checks that the token supports ref's algorithm (ENOTSUP) and
// that ref's use is the algorithm's (EPERM).
func (p *tokenProvider) checkAlg(ref provider.KeyRef) error {
	if !p.info.Supports(ref.Algorithm) {
		name := string(ref.Algorithm)
		return provider.Errorf(provider.ENOTSUP, "provider %s (token %q) does not support algorithm %q", p.info.Name, p.label, name)
	}
	s, err := p.reg.Lookup(ref.Algorithm)
	if err != nil {
		return err
	}
	if ref.Use != s.Use {
		return provider.Errorf(provider.EPERM, "key %s: algorithm %s has use %s, not %s", ref, string(s.Name), s.Use, ref.Use)
	}
	return nil
}

// needUse refuses an operation that ref's use does not allow.
func needUse(ref provider.KeyRef, use provider.Use, op string) error {
	if ref.Use != use {
		return provider.Errorf(provider.EPERM, "key %s has use %s, which does not allow %s", ref, ref.Use, op)
	}
	return nil
}

// prepare runs the checks every keyed operation shares, in order: context,
// ref, handle size, use, algorithm, and the handle's binding to ref. It
// returns the objects' CKA_ID.
func (p *tokenProvider) prepare(ref provider.KeyRef, h provider.Handle, use provider.Use, op string) (objectID, error) {
	if len(h) > provider.MaxHandle {
		return objectID{}, provider.Errorf(provider.EINVAL, "handle for %s is over %d bytes", ref, provider.MaxHandle)
	}
	if use != 0 {
		if err := needUse(ref, use, op); err != nil {
			return objectID{}, err
		}
	}
	if err := p.checkAlg(ref); err != nil {
		return objectID{}, err
	}
	return checkHandleFor(ref, h)
}

// keyMsg is the context of a token error about ref.
func keyMsg(ref provider.KeyRef) string { return "key " + ref.String() }

// withKey calls fn with the object handle of ref's key of class class,
// from the cache or found by CKA_ID. On a shared token (Config.SharedToken)
// a cached handle is used only after the token confirms that it still
// names an object of that CKA_ID and class: PKCS#11 lets a library give
// the handle of a destroyed object to a new one, and another application
// may destroy and create objects on the token. A stale handle (or one the
// token calls invalid) is dropped, the object found again, and fn called
// once more.
func (p *tokenProvider) withKey(sh p11.SessionHandle, ref provider.KeyRef, id objectID, class uint, fn func(obj p11.ObjectHandle) error) error {
	obj, gen, cached := p.objs.get(id)
	if cached {
		var err error
		if p.shared {
			err = p.confirm(sh, obj, id, class)
		}
		if err == nil {
			err = fn(obj)
		}
		rv, isCKR := rvOf(err)
		if err != errStale && !(isCKR && isStaleObject(rv)) {
			return err
		}
		p.objs.forget(id)
		_, gen, _ = p.objs.get(id)
	}
	obj, err := findKey(p.mod.ctx, sh, ref, id, class)
	if err != nil {
		return err
	}
	p.objs.put(id, obj, gen)
	return fn(obj)
}

// errStale is confirm's error for a handle that now names another object.
var errStale = provider.Errorf(provider.EIO, "cached object handle names another object")

// confirm checks that obj still has CKA_ID id and CKA_CLASS class.
func (p *tokenProvider) confirm(sh p11.SessionHandle, obj p11.ObjectHandle, id objectID, class uint) error {
	attrs, err := p.mod.ctx.GetAttributeValue(sh, obj, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_ID, nil),
		p11.NewAttribute(p11.CKA_CLASS, nil),
	})
	if err != nil {
		if rv, _ := rvOf(err); rv == p11.CKR_ATTRIBUTE_TYPE_INVALID || rv == p11.CKR_ATTRIBUTE_SENSITIVE {
			return errStale
		}
		return call("C_GetAttributeValue", err)
	}
	if len(attrs) != 2 || string(attrs[0].Value) != string(id[:]) || string(attrs[1].Value) != string(ulongBytes(class)) {
		return errStale
	}
	return nil
}

// ulongBytes is a CK_ULONG attribute value as the binding encodes it.
func ulongBytes(v uint) []byte { return p11.NewAttribute(0, v).Value }

// Generate makes ref's key inside the token, replacing any objects a
// previous Generate for the same ref left, and returns its public key
// (Ed25519) and handle.
func (p *tokenProvider) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	if err := p.checkRef(ref); err != nil {
		return provider.Generated{}, err
	}
	if err := p.checkAlg(ref); err != nil {
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
	unlock, err := p.lockObjects(ctx)
	if err != nil {
		return provider.Generated{}, err
	}
	defer unlock()
	var pub []byte
	err = p.run(ctx, func(sh p11.SessionHandle) error {
		if err := destroyAll(p.mod.ctx, sh, id); err != nil {
			return err
		}
		p.objs.forget(id)
		var obj p11.ObjectHandle
		var err error
		switch ref.Algorithm {
		case provider.Ed25519:
			obj, pub, err = p.generateEd25519(sh, ref, id)
		case provider.AES256GCM:
			obj, err = p.generateAES(sh, ref, id)
		default:
			err = provider.Errorf(provider.ENOTSUP, "provider %s cannot generate %q", p.info.Name, string(ref.Algorithm))
		}
		if err != nil {
			return err
		}
		_, gen, _ := p.objs.get(id)
		p.objs.put(id, obj, gen)
		return nil
	})
	if err != nil {
		return provider.Generated{}, mapErr(keyMsg(ref), err)
	}
	return provider.Generated{PublicKey: pub, Handle: encodeHandle(id)}, nil
}

// commonAttrs are the attributes of every object the provider makes.
func (p *tokenProvider) commonAttrs(ref provider.KeyRef, id objectID, class uint) []*p11.Attribute {
	a := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, class),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_ID, id[:]),
		p11.NewAttribute(p11.CKA_LABEL, ref.String()),
	}
	if !p.noModifiable.Load() {
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

// pairwiseMsg is what Generate signs to check a new Ed25519 key pair.
var pairwiseMsg = []byte("keystored/pkcs11/pairwise-consistency/v1")

// generateEd25519 makes an Ed25519 key pair, reads its public key and
// checks that the private key signs for it (a pairwise consistency test,
// which also checks that the token's CKA_EC_POINT was read right). It
// returns the private key's object handle and the public key.
func (p *tokenProvider) generateEd25519(sh p11.SessionHandle, ref provider.KeyRef, id objectID) (p11.ObjectHandle, []byte, error) {
	mech := []*p11.Mechanism{p11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}
	var pubObj, privObj p11.ObjectHandle
	var err error
	for {
		pubT := append(p.commonAttrs(ref, id, p11.CKO_PUBLIC_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, ckkECEdwards),
			p11.NewAttribute(p11.CKA_PRIVATE, false),
			p11.NewAttribute(p11.CKA_VERIFY, true),
			p11.NewAttribute(p11.CKA_VERIFY_RECOVER, false),
			p11.NewAttribute(p11.CKA_ENCRYPT, false),
			p11.NewAttribute(p11.CKA_WRAP, false),
			p11.NewAttribute(p11.CKA_DERIVE, false),
			p11.NewAttribute(p11.CKA_EC_PARAMS, ed25519Params),
		)
		privT := append(append(p.commonAttrs(ref, id, p11.CKO_PRIVATE_KEY), secretAttrs()...),
			p11.NewAttribute(p11.CKA_KEY_TYPE, ckkECEdwards),
			p11.NewAttribute(p11.CKA_SIGN, true),
			p11.NewAttribute(p11.CKA_SIGN_RECOVER, false),
			p11.NewAttribute(p11.CKA_DECRYPT, false),
			p11.NewAttribute(p11.CKA_UNWRAP, false),
		)
		pubObj, privObj, err = p.mod.ctx.GenerateKeyPair(sh, mech, pubT, privT)
		if err == nil || !p.rejectsModifiable(err) {
			break
		}
	}
	if err != nil {
		return 0, nil, call("C_GenerateKeyPair", err)
	}
	pub, err := p.checkEd25519Pair(sh, pubObj, privObj)
	if err != nil {
		if derr := destroyAll(p.mod.ctx, sh, id); derr != nil {
			err = errors.Join(err, derr)
		}
		return 0, nil, err
	}
	return privObj, pub, nil
}

// checkEd25519Pair reads the public key of a new pair and checks a
// signature of the private key under it.
func (p *tokenProvider) checkEd25519Pair(sh p11.SessionHandle, pubObj, privObj p11.ObjectHandle) ([]byte, error) {
	attrs, err := p.mod.ctx.GetAttributeValue(sh, pubObj, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, call("C_GetAttributeValue", err)
	}
	if len(attrs) != 1 {
		return nil, provider.Errorf(provider.EIO, "token returned no CKA_EC_POINT")
	}
	pub, err := ed25519Point(attrs[0].Value)
	if err != nil {
		return nil, err
	}
	sig, err := p.signOnce(sh, privObj, pairwiseMsg)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(pub, pairwiseMsg, sig) {
		return nil, provider.Errorf(provider.EIO, "the token's new Ed25519 key fails its pairwise consistency test")
	}
	return pub, nil
}

// generateAES makes an AES-256 key for GCM and returns its object handle.
func (p *tokenProvider) generateAES(sh p11.SessionHandle, ref provider.KeyRef, id objectID) (p11.ObjectHandle, error) {
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}
	for {
		t := append(append(p.commonAttrs(ref, id, p11.CKO_SECRET_KEY), secretAttrs()...),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
			p11.NewAttribute(p11.CKA_VALUE_LEN, aesKeySize),
			p11.NewAttribute(p11.CKA_ENCRYPT, true),
			p11.NewAttribute(p11.CKA_DECRYPT, true),
			p11.NewAttribute(p11.CKA_SIGN, false),
			p11.NewAttribute(p11.CKA_VERIFY, false),
			p11.NewAttribute(p11.CKA_WRAP, false),
			p11.NewAttribute(p11.CKA_UNWRAP, false),
		)
		obj, err := p.mod.ctx.GenerateKey(sh, mech, t)
		if err == nil {
			return obj, nil
		}
		if !p.rejectsModifiable(err) {
			return 0, call("C_GenerateKey", err)
		}
	}
}

// signOnce signs msg with the Ed25519 private key obj.
func (p *tokenProvider) signOnce(sh p11.SessionHandle, obj p11.ObjectHandle, msg []byte) ([]byte, error) {
	if err := p.mod.ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(ckmEdDSA, nil)}, obj); err != nil {
		return nil, call("C_SignInit", err)
	}
	sig, err := p.mod.ctx.Sign(sh, msg)
	if err != nil {
		return nil, call("C_Sign", err)
	}
	if len(sig) != ed25519SignatureSize {
		return nil, provider.Errorf(provider.EIO, "token returned a %d-byte Ed25519 signature", len(sig))
	}
	return sig, nil
}

// Sign signs msg with the token's key of ref (pure Ed25519, CKM_EDDSA).
func (p *tokenProvider) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := p.checkRef(ref); err != nil {
		return nil, err
	}
	if err := provider.CheckSign(msg); err != nil {
		return nil, err
	}
	id, err := p.prepare(ref, h, provider.UseSign, "sign")
	if err != nil {
		return nil, err
	}
	done, err := p.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	var sig []byte
	err = p.run(ctx, func(sh p11.SessionHandle) error {
		return p.withKey(sh, ref, id, p11.CKO_PRIVATE_KEY, func(obj p11.ObjectHandle) error {
			var err error
			sig, err = p.signOnce(sh, obj, msg)
			return err
		})
	})
	if err != nil {
		return nil, mapErr(keyMsg(ref), err)
	}
	return sig, nil
}

// Seal encrypts plaintext with the token's AES-256 key of ref under a
// random 12-byte IV and returns IV ‖ ciphertext ‖ tag.
func (p *tokenProvider) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	return p.SealAppend(ctx, nil, ref, h, plaintext, aad)
}

// SealAppend is Seal appending its output to dst (provider.SealAppender).
func (p *tokenProvider) SealAppend(ctx context.Context, dst []byte, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := p.checkRef(ref); err != nil {
		return nil, err
	}
	if err := provider.CheckSeal(plaintext, aad); err != nil {
		return nil, err
	}
	id, err := p.prepare(ref, h, provider.UseDecrypt, "seal")
	if err != nil {
		return nil, err
	}
	done, err := p.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	var iv, ct []byte
	err = p.run(ctx, func(sh p11.SessionHandle) error {
		return p.withKey(sh, ref, id, p11.CKO_SECRET_KEY, func(obj p11.ObjectHandle) error {
			var err error
			iv, ct, err = p.encrypt(sh, obj, plaintext, aad)
			return err
		})
	})
	if err != nil {
		return nil, mapErr(keyMsg(ref), err)
	}
	out := append(dst, iv...)
	return append(out, ct...), nil
}

// encrypt runs one AES-GCM encryption under a fresh random IV and returns
// the IV the token used and ciphertext ‖ tag.
func (p *tokenProvider) encrypt(sh p11.SessionHandle, obj p11.ObjectHandle, plaintext, aad []byte) ([]byte, []byte, error) {
	iv := make([]byte, gcmIVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, nil, provider.Errorf(provider.EUNAVAILABLE, "crypto/rand failed: %w", err)
	}
	params := p11.NewGCMParams(iv, aad, 8*gcmTagSize)
	defer params.Free()
	if err := p.mod.ctx.EncryptInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, obj); err != nil {
		return nil, nil, call("C_EncryptInit", err)
	}
	ct, err := p.mod.ctx.Encrypt(sh, plaintext)
	if err != nil {
		return nil, nil, call("C_Encrypt", err)
	}
	// A token may choose the IV itself and report it in the parameters.
	used := params.IV()
	if len(used) != gcmIVSize || len(ct) != len(plaintext)+gcmTagSize {
		return nil, nil, provider.Errorf(provider.EIO, "token returned a malformed AES-GCM result")
	}
	return used, ct, nil
}

// Open authenticates and decrypts sealed (IV ‖ ciphertext ‖ tag). Any
// failure to authenticate is EBADMSG with no output.
func (p *tokenProvider) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := p.checkRef(ref); err != nil {
		return nil, err
	}
	if err := provider.CheckOpen(sealed, aad); err != nil {
		return nil, err
	}
	id, err := p.prepare(ref, h, provider.UseDecrypt, "open")
	if err != nil {
		return nil, err
	}
	done, err := p.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	var pt []byte
	err = p.run(ctx, func(sh p11.SessionHandle) error {
		return p.withKey(sh, ref, id, p11.CKO_SECRET_KEY, func(obj p11.ObjectHandle) error {
			var err error
			pt, err = p.decrypt(sh, obj, sealed, aad)
			return err
		})
	})
	if err != nil {
		return nil, mapErr(keyMsg(ref), err)
	}
	return pt, nil
}

// decrypt runs one AES-GCM decryption. A blob too short to hold an IV and
// a tag, and every error of C_Decrypt except a lost session or device,
// is errAuth: tokens report a wrong tag variously (SoftHSM2 2.6.1 says
// CKR_GENERAL_ERROR), and none of it is worth more to a caller.
func (p *tokenProvider) decrypt(sh p11.SessionHandle, obj p11.ObjectHandle, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < gcmIVSize+gcmTagSize {
		return nil, errAuth()
	}
	params := p11.NewGCMParams(sealed[:gcmIVSize:gcmIVSize], aad, 8*gcmTagSize)
	defer params.Free()
	if err := p.mod.ctx.DecryptInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, obj); err != nil {
		return nil, call("C_DecryptInit", err)
	}
	pt, err := p.mod.ctx.Decrypt(sh, sealed[gcmIVSize:])
	if err != nil {
		if rv, ok := rvOf(err); ok && (isReset(rv) || ckrCode(rv) == provider.EUNAVAILABLE) {
			return nil, call("C_Decrypt", err)
		}
		clear(pt)
		return nil, errAuth()
	}
	if len(pt) != len(sealed)-gcmIVSize-gcmTagSize {
		clear(pt)
		return nil, errAuth()
	}
	return pt, nil
}

// Destroy deletes the token objects of ref's key. Later uses fail with
// ENOENT; destroying again succeeds. A handle not made for ref is refused
// (EIO), so a mistaken destroy cannot hit another key.
func (p *tokenProvider) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	if err := provider.CheckContext(ctx); err != nil {
		return err
	}
	if err := p.checkRef(ref); err != nil {
		return err
	}
	id, err := p.prepare(ref, h, 0, "destroy")
	if err != nil {
		return err
	}
	done, err := p.enter()
	if err != nil {
		return err
	}
	defer done()
	unlock, err := p.lockObjects(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	err = p.run(ctx, func(sh p11.SessionHandle) error {
		err := destroyAll(p.mod.ctx, sh, id)
		p.objs.forget(id)
		return err
	})
	return mapErr(keyMsg(ref), err)
}

// SignDigest implements provider.Provider. TODO(issue 11): not yet wired.
func (p *tokenProvider) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	return nil, provider.Errorf(provider.ENOTSUP, "SignDigest is not implemented yet")
}

// MAC implements provider.Provider. TODO(issue 11): not yet wired.
func (p *tokenProvider) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return nil, provider.Errorf(provider.ENOTSUP, "MAC is not implemented yet")
}

package pkcs11

import (
	"context"
	"crypto/rand"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/internal/importkey"
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

// checkAlg checks that the token supports ref's algorithm (ENOTSUP,
// naming the algorithms it does support) and that ref's use is the
// algorithm's (EPERM). It returns the algorithm's spec and scheme.
func (p *tokenProvider) checkAlg(ref provider.KeyRef) (*alg.Spec, scheme, error) {
	if !p.info.Supports(ref.Algorithm) {
		return nil, scheme{}, p.unsupported(ref.Algorithm)
	}
	s, err := p.reg.Lookup(ref.Algorithm)
	if err != nil {
		return nil, scheme{}, err
	}
	sc, ok := schemeOf(ref.Algorithm)
	if !ok {
		return nil, scheme{}, p.unsupported(ref.Algorithm)
	}
	if ref.Use != s.Use {
		return nil, scheme{}, provider.Errorf(provider.EPERM, "key %s: algorithm %s has use %s, not %s", ref, string(s.Name), s.Use, ref.Use)
	}
	return s, sc, nil
}

// unsupported is the ENOTSUP error for algorithm a: it names a (cut to
// a segment's length) and lists what the token offers, so a caller
// learns what to ask for instead.
func (p *tokenProvider) unsupported(a provider.Algorithm) error {
	name := string(a)
	if len(name) > provider.MaxSegment {
		name = name[:provider.MaxSegment] + "..."
	}
	offered := make([]string, len(p.info.Algorithms))
	for i, o := range p.info.Algorithms {
		offered[i] = string(o)
	}
	return provider.Errorf(provider.ENOTSUP, "provider %s (token %q) does not support algorithm %q; it offers %s",
		p.info.Name, p.label, name, strings.Join(offered, ", "))
}

// needUse refuses an operation that ref's use does not allow.
func needUse(ref provider.KeyRef, use provider.Use, op string) error {
	if ref.Use != use {
		return provider.Errorf(provider.EPERM, "key %s has use %s, which does not allow %s", ref, ref.Use, op)
	}
	return nil
}

// keyed is what prepare returns of a key: its algorithm's spec and
// scheme and its objects' CKA_ID.
type keyed struct {
	spec *alg.Spec
	sc   scheme
	id   objectID
}

// prepare runs the checks every keyed operation shares, in order: handle
// size, use, algorithm, and the handle's binding to ref (the caller has
// checked the context, ref and its inputs).
func (p *tokenProvider) prepare(ref provider.KeyRef, h provider.Handle, use provider.Use, op string) (keyed, error) {
	if len(h) > provider.MaxHandle {
		return keyed{}, provider.Errorf(provider.EINVAL, "handle for %s is over %d bytes", ref, provider.MaxHandle)
	}
	if use != 0 {
		if err := needUse(ref, use, op); err != nil {
			return keyed{}, err
		}
	}
	spec, sc, err := p.checkAlg(ref)
	if err != nil {
		return keyed{}, err
	}
	id, err := checkHandleFor(ref, h)
	if err != nil {
		return keyed{}, err
	}
	return keyed{spec: spec, sc: sc, id: id}, nil
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

// confirm checks that obj is still a token object with CKA_ID id and
// CKA_CLASS class.
func (p *tokenProvider) confirm(sh p11.SessionHandle, obj p11.ObjectHandle, id objectID, class uint) error {
	attrs, err := p.mod.ctx.GetAttributeValue(sh, obj, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_ID, nil),
		p11.NewAttribute(p11.CKA_CLASS, nil),
		p11.NewAttribute(p11.CKA_TOKEN, nil),
	})
	if err != nil {
		if rv, _ := rvOf(err); rv == p11.CKR_ATTRIBUTE_TYPE_INVALID || rv == p11.CKR_ATTRIBUTE_SENSITIVE {
			return errStale
		}
		return call("C_GetAttributeValue", err)
	}
	if len(attrs) != 3 || string(attrs[0].Value) != string(id[:]) || string(attrs[1].Value) != string(ulongBytes(class)) ||
		len(attrs[2].Value) != 1 || attrs[2].Value[0] == 0 {
		return errStale
	}
	return nil
}

// ulongBytes is a CK_ULONG attribute value as the binding encodes it.
func ulongBytes(v uint) []byte { return p11.NewAttribute(0, v).Value }

// Seal encrypts plaintext with the token's AES-256 key of ref under a
// random 12-byte IV and returns IV ‖ ciphertext ‖ tag.
func (p *tokenProvider) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	return p.SealAppend(ctx, nil, ref, h, plaintext, aad)
}

// SealAppend is Seal appending its output to dst (provider.SealAppender).
func (p *tokenProvider) SealAppend(ctx context.Context, dst []byte, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	k, err := p.begin(ctx, ref, h, func() error { return provider.CheckSeal(plaintext, aad) }, provider.UseDecrypt, "seal")
	if err != nil {
		return nil, err
	}
	var iv, ct []byte
	err = p.useObject(ctx, ref, k, p11.CKO_SECRET_KEY, func(sh p11.SessionHandle, obj p11.ObjectHandle) error {
		var err error
		iv, ct, err = p.encrypt(sh, obj, plaintext, aad)
		return err
	})
	if err != nil {
		return nil, err
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
	k, err := p.begin(ctx, ref, h, func() error { return provider.CheckOpen(sealed, aad) }, provider.UseDecrypt, "open")
	if err != nil {
		return nil, err
	}
	var pt []byte
	err = p.useObject(ctx, ref, k, p11.CKO_SECRET_KEY, func(sh p11.SessionHandle, obj p11.ObjectHandle) error {
		var err error
		pt, err = p.decrypt(sh, obj, sealed, aad)
		return err
	})
	if err != nil {
		return nil, err
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
// (EIO), so a mistaken destroy cannot hit another key. The handle of an
// import wrapping key (importkey.IsHandle) is forgotten instead, if it
// was made for ref; that always succeeds.
func (p *tokenProvider) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	if err := provider.CheckContext(ctx); err != nil {
		return err
	}
	if err := p.checkRef(ref); err != nil {
		return err
	}
	if importkey.IsHandle(h) {
		p.forgetImportKey(ref, h)
		return nil
	}
	k, err := p.prepare(ref, h, 0, "destroy")
	if err != nil {
		return err
	}
	done, err := p.enter()
	if err != nil {
		return err
	}
	defer done()
	err = p.runSpare(ctx, func(sh p11.SessionHandle) error {
		unlock, err := p.lockObjects(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		err = destroyAll(p.mod.ctx, sh, k.id)
		p.objs.forget(k.id)
		return err
	})
	return mapErr(keyMsg(ref), err)
}

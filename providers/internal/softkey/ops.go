package softkey

import (
	"context"
	"crypto"
	"crypto/sha256"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// checkRef checks ref and that it names this provider.
func (e *Engine) checkRef(ref provider.KeyRef) error {
	if err := ref.Check(); err != nil {
		return err
	}
	if ref.Provider != e.info.Name {
		return provider.Errorf(provider.EINVAL, "key %s belongs to provider %q, not %q", ref, ref.Provider, e.info.Name)
	}
	return nil
}

// spec returns the spec of ref's algorithm if this provider announces it,
// and checks that ref's use is the algorithm's use.
func (e *Engine) spec(ref provider.KeyRef) (*alg.Spec, error) {
	if !e.info.Supports(ref.Algorithm) {
		return nil, provider.Errorf(provider.ENOTSUP, "provider %s does not support algorithm %q", e.info.Name, string(ref.Algorithm))
	}
	s, err := e.reg.Lookup(ref.Algorithm)
	if err != nil {
		return nil, err
	}
	if ref.Use != s.Use {
		return nil, provider.Errorf(provider.EPERM, "key %s: algorithm %s has use %s, not %s", ref, string(s.Name), s.Use, ref.Use)
	}
	return s, nil
}

// checkHandle bounds h.
func checkHandle(ref provider.KeyRef, h provider.Handle) error {
	if len(h) > provider.MaxHandle {
		return provider.Errorf(provider.EINVAL, "handle for %s is over %d bytes", ref, provider.MaxHandle)
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

// newKey builds the unwrapped key of ref from its private material and
// returns it with its public key (nil for an AEAD or MAC).
func (e *Engine) newKey(ref provider.KeyRef, s *alg.Spec, material []byte) (*entry, []byte, error) {
	switch s.Use {
	case provider.UseSign:
		signer, err := s.NewSigner(material, e.hedged)
		if err != nil {
			return nil, nil, err
		}
		return &entry{ref: ref, signer: signer}, signer.PublicKey(), nil
	case provider.UseDecrypt:
		aead, err := s.NewAEAD(material)
		if err != nil {
			return nil, nil, err
		}
		return &entry{ref: ref, aead: aead}, nil, nil
	case provider.UseMAC:
		mac, err := s.NewMAC(material)
		if err != nil {
			return nil, nil, err
		}
		return &entry{ref: ref, mac: mac}, nil, nil
	case provider.UseAsymmetricDecrypt:
		dec, err := s.NewDecrypter(material)
		if err != nil {
			return nil, nil, err
		}
		return &entry{ref: ref, dec: dec}, dec.PublicKey(), nil
	}
	return nil, nil, provider.Errorf(provider.EINVAL, "key %s has no valid use", ref)
}

// destroyedError is the error of any use of a destroyed handle.
func destroyedError(ref provider.KeyRef) error {
	return provider.Errorf(provider.ENOENT, "key %s is destroyed", ref)
}

// key returns the unwrapped key of h: from the cache, or by unwrapping and
// caching it.
//
// A cache hit needs no algorithm checks: the entry was made for an equal
// KeyRef, which passed them.
func (e *Engine) key(ref provider.KeyRef, h provider.Handle) (*entry, error) {
	if ent := e.cache.get(ref, h); ent != nil {
		return ent, nil
	}
	s, err := e.spec(ref)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(h)
	if e.cache.destroyed(&sum) {
		return nil, destroyedError(ref)
	}
	material, err := e.unwrap(ref, s, h)
	if err != nil {
		return nil, err
	}
	ent, _, err := e.newKey(ref, s, material)
	clear(material)
	if err != nil {
		return nil, err
	}
	if !e.cache.put(h, &sum, ent) {
		return nil, destroyedError(ref)
	}
	// A rotation may have dropped h's KEK while it was being unwrapped,
	// after its purge of the cache: then h must not stay cached.
	if id := h[len(HandleMagic) : len(HandleMagic)+KEKIDSize]; e.ring.load().find(id) == nil {
		e.cache.forget(h)
		return nil, provider.Errorf(provider.EIO, "key handle for %s was wrapped under a KEK this provider no longer holds: wrong KEK", ref)
	}
	return ent, nil
}

// Generate makes a key for ref from the Source's material, wraps it under
// the KEK bound to ref, and returns the public key and the handle.
func (e *Engine) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	if err := e.checkRef(ref); err != nil {
		return provider.Generated{}, err
	}
	s, err := e.spec(ref)
	if err != nil {
		return provider.Generated{}, err
	}
	random := make([]byte, s.RandomSize)
	defer clear(random)
	if err := e.src.Material(ref, random); err != nil {
		return provider.Generated{}, provider.Errorf(provider.EIO, "key material for %s unavailable: %w", ref, err)
	}
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	material, err := s.NewMaterial(random, e.info.Deterministic)
	if err != nil {
		return provider.Generated{}, err
	}
	defer clear(material)
	ent, pub, err := e.newKey(ref, s, material)
	if err != nil {
		return provider.Generated{}, err
	}
	h, err := e.wrap(ref, material)
	if err != nil {
		return provider.Generated{}, err
	}
	sum := sha256.Sum256(h)
	// A deterministic source regenerating a destroyed ref gives the same,
	// tombstoned handle: it stays destroyed and is not cached.
	e.cache.put(h, &sum, ent)
	return provider.Generated{PublicKey: pub, Handle: h}, nil
}

// keyFor makes the checks Sign, SignDigest and MAC share, in the
// contract's order (context, ref, the operation's input, handle, use),
// and returns the unwrapped key of h.
func (e *Engine) keyFor(ctx context.Context, ref provider.KeyRef, h provider.Handle, input func() error, use provider.Use, op string) (*entry, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := e.checkRef(ref); err != nil {
		return nil, err
	}
	if err := input(); err != nil {
		return nil, err
	}
	if err := checkHandle(ref, h); err != nil {
		return nil, err
	}
	if err := needUse(ref, use, op); err != nil {
		return nil, err
	}
	return e.key(ref, h)
}

// Sign signs msg with the key of h.
func (e *Engine) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	ent, err := e.keyFor(ctx, ref, h, func() error { return provider.CheckSign(msg) }, provider.UseSign, "sign")
	if err != nil {
		return nil, err
	}
	return ent.signer.Sign(msg)
}

// SignDigest signs digest, a hash of a message under hash, with the key
// of h.
func (e *Engine) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	ent, err := e.keyFor(ctx, ref, h, func() error { return provider.CheckDigest(hash, digest) }, provider.UseSign, "sign")
	if err != nil {
		return nil, err
	}
	return ent.signer.SignDigest(hash, digest)
}

// MAC returns the tag of msg under the key of h.
func (e *Engine) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	ent, err := e.keyFor(ctx, ref, h, func() error { return provider.CheckMAC(msg) }, provider.UseMAC, "mac")
	if err != nil {
		return nil, err
	}
	return ent.mac.Tag(msg)
}

// Decrypt opens an HPKE base-mode message sent to the public key of h:
// the checks in the contract's order (context, ref, the message's bounds
// and sizes, handle, use), then the key's alg.Decrypter. Any failure to
// decapsulate or authenticate is EBADMSG with no output.
func (e *Engine) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ciphertext, info, aad []byte) ([]byte, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := e.checkRef(ref); err != nil {
		return nil, err
	}
	s, err := e.spec(ref)
	if err != nil {
		return nil, err
	}
	// EPERM for a ref of another use; then EMSGSIZE and EBADMSG on sizes.
	if err := s.CheckHPKE(enc, ciphertext, info, aad); err != nil {
		return nil, err
	}
	if err := checkHandle(ref, h); err != nil {
		return nil, err
	}
	ent, err := e.key(ref, h)
	if err != nil {
		return nil, err
	}
	if ent.dec == nil {
		return nil, provider.Errorf(provider.EIO, "key %s is not an HPKE key", ref)
	}
	return ent.dec.Decrypt(enc, ciphertext, info, aad)
}

// aeadKey checks what Seal and Open share and returns the key.
func (e *Engine) aeadKey(ref provider.KeyRef, h provider.Handle, op string) (*entry, error) {
	if err := checkHandle(ref, h); err != nil {
		return nil, err
	}
	if err := needUse(ref, provider.UseDecrypt, op); err != nil {
		return nil, err
	}
	return e.key(ref, h)
}

// Seal encrypts plaintext with the key of h and returns
// nonce ‖ ciphertext ‖ tag, the nonce coming from the Source.
func (e *Engine) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	return e.SealAppend(ctx, nil, ref, h, plaintext, aad)
}

// SealAppend is Seal appending its output to dst (provider.SealAppender).
func (e *Engine) SealAppend(ctx context.Context, dst []byte, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := e.checkRef(ref); err != nil {
		return nil, err
	}
	if err := provider.CheckSeal(plaintext, aad); err != nil {
		return nil, err
	}
	ent, err := e.aeadKey(ref, h, "seal")
	if err != nil {
		return nil, err
	}
	out, err := ent.aead.SealTo(dst, plaintext, aad, func(nonce []byte) error {
		if err := e.src.SealNonce(ref, plaintext, aad, nonce); err != nil {
			return provider.Errorf(provider.EIO, "seal nonce for %s unavailable: %w", ref, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Open authenticates and decrypts sealed (nonce ‖ ciphertext ‖ tag) with
// the key of h. Any authentication failure is EBADMSG with no output.
func (e *Engine) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := e.checkRef(ref); err != nil {
		return nil, err
	}
	if err := provider.CheckOpen(sealed, aad); err != nil {
		return nil, err
	}
	ent, err := e.aeadKey(ref, h, "open")
	if err != nil {
		return nil, err
	}
	pt, err := ent.aead.Open(nil, sealed, aad)
	if err != nil {
		return nil, provider.Errorf(provider.EBADMSG, "message authentication failed")
	}
	return pt, nil
}

// Destroy forgets any cached copy of h's key and remembers h as destroyed:
// later calls with h fail with ENOENT for as long as the engine lives.
// Destroying twice succeeds. A handle that does not authenticate under ref
// is refused (EIO), so a mistaken destroy cannot hit another key. The
// handle of an import wrapping key (importkey.IsHandle) is forgotten
// instead, if it was made for ref; that always succeeds.
func (e *Engine) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	if err := provider.CheckContext(ctx); err != nil {
		return err
	}
	if err := e.checkRef(ref); err != nil {
		return err
	}
	if err := checkHandle(ref, h); err != nil {
		return err
	}
	if e.destroyImportKey(ref, h) {
		return nil
	}
	s, err := e.spec(ref)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(h)
	if e.cache.destroyed(&sum) {
		return nil
	}
	if e.cache.get(ref, h) == nil {
		material, err := e.unwrap(ref, s, h)
		if err != nil {
			return err
		}
		clear(material)
	}
	e.cache.destroy(h, &sum)
	return nil
}

package softkey

import (
	"context"
	"crypto/sha256"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/internal/importkey"
)

// NewImportKey makes a one-time import wrapping key for wrap (an HPKE
// suite the registry knows; the engine need not announce it for keys):
// its private half lives only in the engine's importkey.Table, its handle
// is a random name ("KSI1" and 16 bytes from Source.ImportRandom).
func (e *Engine) NewImportKey(ctx context.Context, wrap provider.KeyRef) (provider.Generated, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	if err := e.checkRef(wrap); err != nil {
		return provider.Generated{}, err
	}
	return e.imports.New(ctx, wrap)
}

// Import spends the wrapping key wrap/wh first (so it is spent whatever
// the outcome), then checks ref as Generate does, opens and converts the
// material (importkey.Key.Open), and wraps it under the KEK bound to ref
// exactly as Generate wraps generated material: the same handle format,
// with a wrap nonce from Source.ImportRandom. The unwrapped key is cached
// like a generated one; every plaintext copy of the material is cleared.
func (e *Engine) Import(ctx context.Context, ref provider.KeyRef, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	k, err := e.imports.Take(wrap, wh)
	if err != nil {
		return provider.Generated{}, err
	}
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
	material, _, err := k.Open(ref, s, enc, wrapped)
	if err != nil {
		return provider.Generated{}, err
	}
	defer clear(material)
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	ent, pub, err := e.newKey(ref, s, material)
	if err != nil {
		return provider.Generated{}, err
	}
	h, err := e.wrapWithNonce(e.ring.load().wrapper(), ref, material, func(nonce []byte) error {
		if err := e.src.ImportRandom(ref, nonce); err != nil {
			return provider.Errorf(provider.EIO, "wrap nonce for %s unavailable: %w", ref, err)
		}
		return nil
	})
	if err != nil {
		return provider.Generated{}, err
	}
	sum := sha256.Sum256(h)
	// A handle equal to a destroyed one (a deterministic source repeating
	// itself) stays destroyed and is not cached, as in Generate.
	e.cache.put(h, &sum, ent)
	return provider.Generated{PublicKey: pub, Handle: h}, nil
}

// destroyImportKey is Destroy of an import wrapping key's handle: the
// table forgets it (importkey.Table.Forget); it always succeeds.
func (e *Engine) destroyImportKey(wrap provider.KeyRef, h provider.Handle) bool {
	if !importkey.IsHandle(h) {
		return false
	}
	e.imports.Forget(wrap, h)
	return true
}

// ImportKeys returns how many import wrapping keys the engine holds (for
// tests and metrics).
func (e *Engine) ImportKeys() int { return e.imports.Len() }

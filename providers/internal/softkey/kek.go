package softkey

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// kekSlot is one KEK: its ID and the AEAD keyed with it.
type kekSlot struct {
	id   [KEKIDSize]byte
	aead kekCipher
}

func newSlot(kek secret.Bytes) (*kekSlot, error) {
	if kek.Len() != KEKSize {
		return nil, provider.Errorf(provider.EINVAL, "KEK must be %d bytes", KEKSize)
	}
	aead, err := chacha20poly1305.NewX(kek.Reveal())
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "KEK setup failed: %w", err)
	}
	id, err := KEKID(kek)
	if err != nil {
		return nil, err
	}
	return &kekSlot{id: id, aead: kekCipher{aead}}, nil
}

// kekSet is the engine's KEKs at one moment: the one new handles are
// wrapped under first, then, during a rotation, the current one. A set is
// never changed once published.
type kekSet struct {
	slots []*kekSlot
}

// wrapper returns the KEK new handles are wrapped under.
func (s *kekSet) wrapper() *kekSlot { return s.slots[0] }

// find returns the KEK whose ID is id, or nil.
func (s *kekSet) find(id []byte) *kekSlot {
	for _, k := range s.slots {
		if subtle.ConstantTimeCompare(id, k.id[:]) == 1 {
			return k
		}
	}
	return nil
}

// fingerprints returns the KEKs' fingerprints, the wrapping one first.
func (s *kekSet) fingerprints() []string {
	out := make([]string, len(s.slots))
	for i, k := range s.slots {
		out[i] = KEKFingerprint(k.id)
	}
	return out
}

// ring holds the engine's current kekSet; mu orders the changes.
type ring struct {
	mu sync.Mutex
	p  atomic.Pointer[kekSet]
}

func (r *ring) load() *kekSet    { return r.p.Load() }
func (r *ring) set(s *kekSet)    { r.p.Store(s) }
func (r *ring) String() string   { return "kek ring" }
func (r *ring) GoString() string { return r.String() }

// KEKs returns the fingerprints of the engine's KEKs, the one new handles
// are wrapped under first (two during a rotation).
func (e *Engine) KEKs() []string { return e.ring.load().fingerprints() }

// AddKEK makes next the KEK new handles are wrapped under, keeping the
// current one for unwrapping (the start of a KEK rotation). The engine
// keeps next only inside its cipher; the caller still owns it. Adding the
// pending KEK again does nothing; another KEK while one is pending is
// EALREADY, the current KEK EINVAL. It returns next's fingerprint.
func (e *Engine) AddKEK(next secret.Bytes) (string, error) {
	slot, err := newSlot(next)
	if err != nil {
		return "", err
	}
	fp := KEKFingerprint(slot.id)
	e.ring.mu.Lock()
	defer e.ring.mu.Unlock()
	keys := e.ring.load()
	switch {
	case len(keys.slots) > 1 && keys.slots[0].id == slot.id:
		return fp, nil
	case len(keys.slots) > 1:
		return "", provider.Errorf(provider.EALREADY, "a rotation to KEK %s is pending; commit it first", KEKFingerprint(keys.slots[0].id))
	case keys.slots[0].id == slot.id:
		return "", provider.Errorf(provider.EINVAL, "the next KEK is the current KEK %s", fp)
	}
	e.ring.set(&kekSet{slots: []*kekSlot{slot, keys.slots[0]}})
	return fp, nil
}

// DropOldKEKs keeps only the KEK new handles are wrapped under (the end of
// a KEK rotation) and forgets every cached key whose handle was wrapped
// under another: from its return on, such a handle fails as "wrong KEK".
// Without a pending rotation it does nothing.
func (e *Engine) DropOldKEKs() {
	e.ring.mu.Lock()
	defer e.ring.mu.Unlock()
	keys := e.ring.load()
	if len(keys.slots) == 1 {
		return
	}
	keep := keys.slots[0]
	e.ring.set(&kekSet{slots: []*kekSlot{keep}})
	e.cache.purge(func(h string) bool { return !underKEK(h, keep) })
}

// underKEK reports whether handle h (well-formed or not) names k's ID.
func underKEK(h string, k *kekSlot) bool {
	return len(h) >= headerSize && h[len(HandleMagic):len(HandleMagic)+KEKIDSize] == string(k.id[:])
}

// Rewrap returns h wrapped under the KEK new handles are wrapped under,
// bound to ref as before (a fresh wrap nonce from the Source), or h itself
// when it already is. h must authenticate under ref (EIO otherwise); a
// destroyed handle is ENOENT.
func (e *Engine) Rewrap(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := e.checkRef(ref); err != nil {
		return nil, err
	}
	if err := checkHandle(ref, h); err != nil {
		return nil, err
	}
	s, err := e.spec(ref)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(h)
	if e.cache.destroyed(&sum) {
		return nil, destroyedError(ref)
	}
	kek := e.ring.load().wrapper()
	material, err := e.unwrap(ref, s, h)
	if err != nil {
		return nil, err
	}
	defer clear(material)
	if underKEK(string(h), kek) {
		return append(provider.Handle(nil), h...), nil
	}
	return e.wrapWith(kek, ref, material)
}

// String returns "kek <fingerprint>"; the cipher prints as "kek" only.
func (k kekSlot) String() string { return "kek " + KEKFingerprint(k.id) }

// GoString returns the same as String.
func (k kekSlot) GoString() string { return k.String() }

// Format prints the same as String under every verb.
func (k kekSlot) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

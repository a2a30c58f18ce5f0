package fairsched

import (
	"context"
	"crypto"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Wrap returns p with its Generate, Sign, Seal and Open calls run by s,
// each in the queue of the tenant tenantOf names for the call's context
// and weighted by the algorithm's cost in reg (Spec.Cost, GenerateCost,
// CostPerMiB; one Unit for an algorithm reg does not know). Info and
// Destroy are not scheduled: they do no cryptography. The result has
// SealAppend exactly when p has it, and is a provider.KEKRotator exactly
// when p is one (its calls, an operator's rare rotation, pass through
// unscheduled). tenantOf must take the tenant from
// the caller identity the server established, never from a request; a
// nil tenantOf puts every call in one queue.
func (s *Scheduler) Wrap(p provider.Provider, reg *alg.Registry, tenantOf func(context.Context) string) provider.Provider {
	if tenantOf == nil {
		tenantOf = func(context.Context) string { return "" }
	}
	w := &scheduled{p: p, s: s, reg: reg, tenantOf: tenantOf}
	sa, appends := p.(provider.SealAppender)
	rot, rotates := p.(provider.KEKRotator)
	switch {
	case appends && rotates:
		return &rotatingAppender{scheduledAppender: &scheduledAppender{scheduled: w, sa: sa}, KEKRotator: rot}
	case appends:
		return &scheduledAppender{scheduled: w, sa: sa}
	case rotates:
		return &rotating{scheduled: w, KEKRotator: rot}
	}
	return w
}

// rotating and rotatingAppender add the wrapped provider's KEK rotation.
type rotating struct {
	*scheduled
	provider.KEKRotator
}

type rotatingAppender struct {
	*scheduledAppender
	provider.KEKRotator
}

type scheduled struct {
	p        provider.Provider
	s        *Scheduler
	reg      *alg.Registry
	tenantOf func(context.Context) string
}

type scheduledAppender struct {
	*scheduled
	sa provider.SealAppender
}

// cost returns the cost of an operation on n bytes with a, in 1/Unit.
func (w *scheduled) cost(a provider.Algorithm, generate bool, n int) int64 {
	if w.reg == nil {
		return Unit
	}
	spec, err := w.reg.Lookup(a)
	if err != nil {
		return Unit
	}
	c := spec.Cost
	if generate {
		c = spec.GenerateCost
	}
	c += spec.CostPerMiB * float64(n) / (1 << 20)
	return int64(c * Unit)
}

func (w *scheduled) Info(ctx context.Context) (provider.Info, error) { return w.p.Info(ctx) }

func (w *scheduled) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	return w.p.Destroy(ctx, ref, h)
}

// Each method acquires a slot and calls the provider on the request's
// goroutine; a heavy call goes through a method of its own (on), so that
// the closure a low-priority thread needs, and what it captures, are
// allocated only then.

func (w *scheduled) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, true, 0))
	if err != nil {
		return provider.Generated{}, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return on(sl, func() (provider.Generated, error) { return w.p.Generate(ctx, ref) })
	}
	return w.p.Generate(ctx, ref)
}

func (w *scheduled) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, false, len(msg)))
	if err != nil {
		return nil, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return w.signOn(sl, ctx, ref, h, msg)
	}
	return w.p.Sign(ctx, ref, h, msg)
}

func (w *scheduled) signOn(sl Slot, ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	return on(sl, func() ([]byte, error) { return w.p.Sign(ctx, ref, h, msg) })
}

func (w *scheduled) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, false, 0))
	if err != nil {
		return nil, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return on(sl, func() ([]byte, error) { return w.p.SignDigest(ctx, ref, h, hash, digest) })
	}
	return w.p.SignDigest(ctx, ref, h, hash, digest)
}

func (w *scheduled) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, false, len(msg)))
	if err != nil {
		return nil, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return on(sl, func() ([]byte, error) { return w.p.MAC(ctx, ref, h, msg) })
	}
	return w.p.MAC(ctx, ref, h, msg)
}

func (w *scheduled) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ciphertext, info, aad []byte) ([]byte, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, false, len(ciphertext)+len(aad)))
	if err != nil {
		return nil, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return on(sl, func() ([]byte, error) { return w.p.Decrypt(ctx, ref, h, enc, ciphertext, info, aad) })
	}
	return w.p.Decrypt(ctx, ref, h, enc, ciphertext, info, aad)
}

// NewImportKey is weighed as making a key of the wrapping algorithm.
func (w *scheduled) NewImportKey(ctx context.Context, wrap provider.KeyRef) (provider.Generated, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(wrap.Algorithm, true, 0))
	if err != nil {
		return provider.Generated{}, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return on(sl, func() (provider.Generated, error) { return w.p.NewImportKey(ctx, wrap) })
	}
	return w.p.NewImportKey(ctx, wrap)
}

// Import is weighed as the wrapping suite's key generation (as much CPU as
// its decapsulation) plus one operation of the imported algorithm (the
// provider checks the material once): no more
// than a key generation (an RSA import validates the key, no prime search).
func (w *scheduled) Import(ctx context.Context, ref provider.KeyRef, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(wrap.Algorithm, true, 0)+w.cost(ref.Algorithm, false, 0))
	if err != nil {
		return provider.Generated{}, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return on(sl, func() (provider.Generated, error) { return w.p.Import(ctx, ref, wrap, wh, enc, wrapped) })
	}
	return w.p.Import(ctx, ref, wrap, wh, enc, wrapped)
}

func (w *scheduled) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, false, len(plaintext)+len(aad)))
	if err != nil {
		return nil, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return w.sealOn(sl, ctx, ref, h, plaintext, aad)
	}
	return w.p.Seal(ctx, ref, h, plaintext, aad)
}

func (w *scheduled) sealOn(sl Slot, ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	return on(sl, func() ([]byte, error) { return w.p.Seal(ctx, ref, h, plaintext, aad) })
}

func (w *scheduled) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, false, len(sealed)+len(aad)))
	if err != nil {
		return nil, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return w.openOn(sl, ctx, ref, h, sealed, aad)
	}
	return w.p.Open(ctx, ref, h, sealed, aad)
}

func (w *scheduled) openOn(sl Slot, ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	return on(sl, func() ([]byte, error) { return w.p.Open(ctx, ref, h, sealed, aad) })
}

func (w *scheduledAppender) SealAppend(ctx context.Context, dst []byte, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	sl, err := w.s.Acquire(ctx, w.tenantOf(ctx), w.cost(ref.Algorithm, false, len(plaintext)+len(aad)))
	if err != nil {
		return nil, err
	}
	defer sl.Release()
	if sl.Heavy() {
		return w.sealAppendOn(sl, ctx, dst, ref, h, plaintext, aad)
	}
	return w.sa.SealAppend(ctx, dst, ref, h, plaintext, aad)
}

func (w *scheduledAppender) sealAppendOn(sl Slot, ctx context.Context, dst []byte, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	return on(sl, func() ([]byte, error) { return w.sa.SealAppend(ctx, dst, ref, h, plaintext, aad) })
}

// on runs f with sl.Run and returns its results.
func on[T any](sl Slot, f func() (T, error)) (out T, err error) {
	if rerr := sl.Run(func() { out, err = f() }); rerr != nil {
		var zero T
		return zero, rerr
	}
	return out, err
}

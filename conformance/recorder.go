package conformance

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
)

// provRecorder wraps the provider under test: it turns a panic into an
// error (so one bad input does not end the whole test binary) and records
// every error without a valid provider.Code, for the ErrorCodes check.
type provRecorder struct {
	p provider.Provider

	mu      sync.Mutex
	errs    int      // errors returned
	uncoded []string // descriptions of the first errors without a code
	nUncode int
	panics  int
}

const provMaxRecorded = 20

// provPanic is the error a call returns when the provider panicked. It has
// no code, so the ErrorCodes check reports it as well.
type provPanic struct {
	op    string
	val   string
	stack string
}

func (e *provPanic) Error() string {
	return "provider panicked in " + e.op + ": " + e.val + "\n" + e.stack
}

// asPanic returns err's provPanic, if any.
func asPanic(err error) *provPanic {
	var p *provPanic
	if errors.As(err, &p) {
		return p
	}
	return nil
}

// note records err from op and returns it.
func (r *provRecorder) note(op string, err error) error {
	if err == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs++
	if asPanic(err) != nil {
		r.panics++
	}
	if _, ok := provider.CodeOf(err); !ok {
		r.nUncode++
		if len(r.uncoded) < provMaxRecorded {
			r.uncoded = append(r.uncoded, fmt.Sprintf("%s: %q (%T)", op, truncate(err.Error(), 300), err))
		}
	}
	return err
}

// stats returns how many errors were seen and the uncoded ones.
func (r *provRecorder) stats() (errs, uncoded int, examples []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs, r.nUncode, append([]string(nil), r.uncoded...)
}

// recoverInto turns a panic into *err.
func recoverInto(op string, err *error) {
	if v := recover(); v != nil {
		*err = &provPanic{op: op, val: truncate(fmt.Sprint(v), 300), stack: truncate(string(debug.Stack()), 1500)}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Info implements provider.Provider.
func (r *provRecorder) Info(ctx context.Context) (info provider.Info, err error) {
	defer func() { err = r.note("Info", err) }()
	defer recoverInto("Info", &err)
	return r.p.Info(ctx)
}

// Generate implements provider.Provider.
func (r *provRecorder) Generate(ctx context.Context, ref provider.KeyRef) (g provider.Generated, err error) {
	defer func() { err = r.note("Generate "+ref.String(), err) }()
	defer recoverInto("Generate", &err)
	return r.p.Generate(ctx, ref)
}

// Sign implements provider.Provider.
func (r *provRecorder) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) (sig []byte, err error) {
	defer func() { err = r.note("Sign "+ref.String(), err) }()
	defer recoverInto("Sign", &err)
	return r.p.Sign(ctx, ref, h, msg)
}

// SignDigest implements provider.Provider.
func (r *provRecorder) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) (sig []byte, err error) {
	defer func() { err = r.note("SignDigest "+ref.String(), err) }()
	defer recoverInto("SignDigest", &err)
	return r.p.SignDigest(ctx, ref, h, hash, digest)
}

// MAC implements provider.Provider.
func (r *provRecorder) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) (tag []byte, err error) {
	defer func() { err = r.note("MAC "+ref.String(), err) }()
	defer recoverInto("MAC", &err)
	return r.p.MAC(ctx, ref, h, msg)
}

// Decrypt implements provider.Provider.
func (r *provRecorder) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ciphertext, info, aad []byte) (pt []byte, err error) {
	defer func() { err = r.note("Decrypt "+ref.String(), err) }()
	defer recoverInto("Decrypt", &err)
	return r.p.Decrypt(ctx, ref, h, enc, ciphertext, info, aad)
}

// NewImportKey implements provider.Provider.
func (r *provRecorder) NewImportKey(ctx context.Context, wrap provider.KeyRef) (g provider.Generated, err error) {
	defer func() { err = r.note("NewImportKey "+wrap.String(), err) }()
	defer recoverInto("NewImportKey", &err)
	return r.p.NewImportKey(ctx, wrap)
}

// Import implements provider.Provider.
func (r *provRecorder) Import(ctx context.Context, ref provider.KeyRef, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (g provider.Generated, err error) {
	defer func() { err = r.note("Import "+ref.String(), err) }()
	defer recoverInto("Import", &err)
	return r.p.Import(ctx, ref, wrap, wh, enc, wrapped)
}

// Seal implements provider.Provider.
func (r *provRecorder) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) (out []byte, err error) {
	defer func() { err = r.note("Seal "+ref.String(), err) }()
	defer recoverInto("Seal", &err)
	return r.p.Seal(ctx, ref, h, plaintext, aad)
}

// Open implements provider.Provider.
func (r *provRecorder) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) (out []byte, err error) {
	defer func() { err = r.note("Open "+ref.String(), err) }()
	defer recoverInto("Open", &err)
	return r.p.Open(ctx, ref, h, sealed, aad)
}

// Destroy implements provider.Provider.
func (r *provRecorder) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) (err error) {
	defer func() { err = r.note("Destroy "+ref.String(), err) }()
	defer recoverInto("Destroy", &err)
	return r.p.Destroy(ctx, ref, h)
}

package conformance

import (
	"context"
	"crypto/sha3"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// provHangLimit is how long one provider call may take before the suite
// declares it hung. It detects hangs; it is not a timing requirement.
const provHangLimit = 30 * time.Second

// provApp is the app ID segment of every key the suite makes.
const provApp = "conformance"

// provSuite is the state the checks share: the provider under test
// (wrapped in a recorder), what it announced, and the options.
type provSuite struct {
	p       provider.Provider // rec, which calls raw
	raw     provider.Provider // as the factory returned it
	rec     *provRecorder
	info    provider.Info // as announced
	algs    []provider.Algorithm
	reg     *alg.Registry
	known   func(provider.KeyRef) ([][]byte, error)
	logf    func(format string, args ...any)
	hang    time.Duration
	tally   *provTally  // codes of the expected failures of one check
	fresh   bool        // WithFreshKeys: no shared keys
	imports *importRule // WithImport
	pool    *provPool   // the run's shared keys and known secrets
}

// provExpensiveGenerate is the key generation cost (alg.Spec.GenerateCost,
// in Ed25519 key generations) from which the suite shares keys between
// checks: RSA's thousands, not ML-DSA's ten.
const provExpensiveGenerate = 100

// provPool holds what the checks of one run share: the keys of expensive
// algorithms, generated once per slot, and the known secrets of each ref,
// which can cost a key generation to compute (a deterministic RSA key).
type provPool struct {
	mu        sync.Mutex
	keys      map[provPoolSlot]*provKey
	known     map[provider.KeyRef][][]byte
	materials map[string]*provImportMaterial // by algorithm (RSA: by modulus size)
	imports   provImportSupport
	// algImports: per importable algorithm, nil when the provider imports
	// it, a skip when it answers ENOTSUP for it (checkAlgImport)
	algImports map[provider.Algorithm]error
}

type provPoolSlot struct {
	a    provider.Algorithm
	slot int
}

// newProvSuite wraps p and reads its Info.
func newProvSuite(ctx context.Context, p provider.Provider, o options) (*provSuite, error) {
	if p == nil {
		return nil, errors.New("the factory returned a nil provider")
	}
	rec := &provRecorder{p: p}
	s := &provSuite{
		p:       rec,
		raw:     p,
		rec:     rec,
		reg:     alg.Default(),
		known:   o.knownSecrets,
		logf:    func(string, ...any) {},
		hang:    provHangLimit,
		fresh:   o.freshKeys,
		imports: o.imports,
		pool: &provPool{keys: map[provPoolSlot]*provKey{}, known: map[provider.KeyRef][][]byte{},
			materials: map[string]*provImportMaterial{}},
	}
	if o.hang > 0 {
		s.hang = o.hang
	}
	info, err := s.p.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("Info: %w", err)
	}
	s.info = info
	s.info.Algorithms = append([]provider.Algorithm(nil), info.Algorithms...)
	s.info.KEKs = append([]string(nil), info.KEKs...)
	for _, a := range info.Algorithms {
		if o.only != nil && !slices.Contains(o.only, a) {
			continue
		}
		if _, err := s.reg.Lookup(a); err == nil && !slices.Contains(s.algs, a) {
			s.algs = append(s.algs, a)
		}
	}
	return s, nil
}

// withLog returns a copy of s that logs with logf.
func (s *provSuite) withLog(logf func(format string, args ...any)) *provSuite {
	c := *s
	c.logf = logf
	c.tally = &provTally{}
	return &c
}

// provTally counts the codes of the calls a check expected to fail with
// any error, so the check can report them once.
type provTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *provTally) add(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[codeName(err)]++
}

// String returns "EIO×12, EINVAL×1" in code order, or "" when empty.
func (t *provTally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(t.n)) {
		parts = append(parts, k+"×"+strconv.Itoa(t.n[k]))
	}
	return strings.Join(parts, ", ")
}

// algsOf lists the announced algorithms the registry knows, of use u (all
// when u is 0), in announcement order.
func (s *provSuite) algsOf(u provider.Use) []provider.Algorithm {
	var out []provider.Algorithm
	for _, a := range s.algs {
		if sp, _ := s.reg.Lookup(a); sp != nil && (u == 0 || sp.Use == u) {
			out = append(out, a)
		}
	}
	return out
}

// spec returns the registry's spec of a.
func (s *provSuite) spec(a provider.Algorithm) (*alg.Spec, error) {
	sp, err := s.reg.Lookup(a)
	if err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	return sp, nil
}

// ref returns the version-1 KeyRef conformance/<purpose>/<name> of
// algorithm a for this provider. Every check uses its own purpose, so no
// two checks share a key.
func (s *provSuite) ref(purpose, name string, a provider.Algorithm) (provider.KeyRef, error) {
	sp, err := s.spec(a)
	if err != nil {
		return provider.KeyRef{}, err
	}
	id, err := provider.NewKeyID(provApp, purpose, name)
	if err != nil {
		return provider.KeyRef{}, fmt.Errorf("suite: %w", err)
	}
	return provider.KeyRef{ID: id, Version: 1, Algorithm: a, Use: sp.Use, Provider: s.info.Name}, nil
}

// generate makes the key purpose/<algorithm>-<name> and checks the bare
// minimum needed to use it (a non-empty handle).
func (s *provSuite) generate(ctx context.Context, purpose, name string, a provider.Algorithm) (provider.KeyRef, provider.Generated, error) {
	ref, err := s.ref(purpose, string(a)+"-"+name, a)
	if err != nil {
		return ref, provider.Generated{}, err
	}
	g, err := s.p.Generate(ctx, ref)
	if err != nil {
		return ref, g, fmt.Errorf("Generate(%s, %s): %w", ref, a, err)
	}
	if len(g.Handle) == 0 {
		return ref, g, fmt.Errorf("Generate(%s, %s): got an empty handle", ref, a)
	}
	return ref, g, nil
}

// expensive reports whether keys of a are shared between checks: its
// generation costs at least provExpensiveGenerate, and the run was not
// asked for fresh keys.
func (s *provSuite) expensive(a provider.Algorithm) bool {
	if s.fresh {
		return false
	}
	sp, err := s.reg.Lookup(a)
	return err == nil && sp.GenerateCost >= provExpensiveGenerate
}

// keyFor returns a key a check may use but not destroy: a fresh
// conformance/<purpose>/<alg>-<name> for most algorithms, the run's shared
// key of slot 0 for an expensive one.
func (s *provSuite) keyFor(ctx context.Context, purpose, name string, a provider.Algorithm) (*provKey, error) {
	return s.keyIn(ctx, purpose, name, a, 0)
}

// keyPair returns two different keys a check may use but not destroy
// (fresh, or the shared keys of slots 0 and 1).
func (s *provSuite) keyPair(ctx context.Context, purpose, name string, a provider.Algorithm) (*provKey, *provKey, error) {
	k1, err := s.keyIn(ctx, purpose, name+"-a", a, 0)
	if err != nil {
		return nil, nil, err
	}
	k2, err := s.keyIn(ctx, purpose, name+"-b", a, 1)
	if err != nil {
		return nil, nil, err
	}
	return k1, k2, nil
}

func (s *provSuite) keyIn(ctx context.Context, purpose, name string, a provider.Algorithm, slot int) (*provKey, error) {
	if !s.expensive(a) {
		return s.newKey(ctx, purpose, name, a)
	}
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	at := provPoolSlot{a, slot}
	if k := s.pool.keys[at]; k != nil {
		return k, nil
	}
	k, err := s.newKey(ctx, "shared", strconv.Itoa(slot), a)
	if err != nil {
		return nil, err // not kept: the next check tries again and reports its own failure
	}
	s.pool.keys[at] = k
	return k, nil
}

// keyToDestroy returns a key a check may destroy: a fresh one, or for an
// expensive algorithm the run's shared key of slot 1, which leaves the
// pool (Destroy is the last check that uses slot 1; a later one would get
// a new key).
func (s *provSuite) keyToDestroy(ctx context.Context, purpose, name string, a provider.Algorithm) (*provKey, error) {
	k, err := s.keyIn(ctx, purpose, name, a, 1)
	if err != nil || !s.expensive(a) {
		return k, err
	}
	s.pool.mu.Lock()
	delete(s.pool.keys, provPoolSlot{a, 1})
	s.pool.mu.Unlock()
	return k, nil
}

// pooled returns the run's shared key of a in slot, or nil.
func (s *provSuite) pooled(a provider.Algorithm, slot int) *provKey {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	return s.pool.keys[provPoolSlot{a, slot}]
}

// shared reports whether k is one of the run's shared keys, which no check
// may destroy.
func (s *provSuite) shared(k *provKey) bool {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	for _, p := range s.pool.keys {
		if p == k {
			return true
		}
	}
	return false
}

// provSkip is returned by a check that does not apply to the provider.
type provSkip struct{ reason string }

func (e *provSkip) Error() string { return "skipped: " + e.reason }

func skipf(format string, args ...any) error {
	return &provSkip{reason: fmt.Sprintf(format, args...)}
}

// provFails collects a check's violations, keeping the first few.
type provFails struct {
	errs []error
	n    int
}

const provMaxFails = 12

// add records err if it is not nil.
func (f *provFails) add(err error) {
	if err == nil {
		return
	}
	f.n++
	if len(f.errs) < provMaxFails {
		f.errs = append(f.errs, err)
	}
}

// addf records a violation.
func (f *provFails) addf(format string, args ...any) { f.add(fmt.Errorf(format, args...)) }

// err returns the violations as one error, or nil.
func (f *provFails) err() error {
	if f.n == 0 {
		return nil
	}
	errs := f.errs
	if f.n > len(f.errs) {
		errs = append(errs[:len(errs):len(errs)], fmt.Errorf("... and %d more", f.n-len(f.errs)))
	}
	return errors.Join(errs...)
}

// codeName describes err's code for messages.
func codeName(err error) string {
	if c, ok := provider.CodeOf(err); ok {
		return c.String()
	}
	return "none"
}

// wantCode checks that a call described by what failed with an error
// wrapping want and returned no output.
func wantCode(what string, err error, want provider.Code, out []byte) error {
	if p := asPanic(err); p != nil {
		return fmt.Errorf("%s: %v; want an error wrapping %s", what, p, want.String())
	}
	if err == nil {
		return fmt.Errorf("%s: got success (%d bytes out), want an error wrapping %s (%s)", what, len(out), want.String(), want.Error())
	}
	if !errors.Is(err, want) {
		return fmt.Errorf("%s: got error %q (code %s), want one wrapping %s", what, err, codeName(err), want.String())
	}
	if len(out) != 0 {
		return fmt.Errorf("%s: failed as wanted but also returned %d bytes; want no output", what, len(out))
	}
	return nil
}

// wantFailure checks that a call failed (with any error) without
// panicking and returned no output; the error's code is logged.
func (s *provSuite) wantFailure(what string, err error, out []byte) error {
	if p := asPanic(err); p != nil {
		return fmt.Errorf("%s: %v; want an error", what, p)
	}
	if err == nil {
		return fmt.Errorf("%s: got success (%d bytes out), want an error", what, len(out))
	}
	if len(out) != 0 {
		return fmt.Errorf("%s: failed but also returned %d bytes; want no output", what, len(out))
	}
	if s.tally != nil {
		s.tally.add(err)
	}
	return nil
}

// bounded runs f and returns its error, or an error once s.hang has passed
// without f returning (f keeps running in the background).
func (s *provSuite) bounded(what string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(s.hang)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return &provHang{what: what, after: s.hang}
	}
}

// provHang reports a call that did not return.
type provHang struct {
	what  string
	after time.Duration
}

func (e *provHang) Error() string {
	return e.what + ": did not return within " + e.after.String() + " (hang)"
}

// pseudo returns n reproducible pseudo-random bytes derived from label.
func pseudo(label string, n int) []byte {
	if n == 0 {
		return []byte{}
	}
	return sha3.SumSHAKE256([]byte("keystored/conformance/"+label), n)
}

// otherName returns a valid segment that differs from name.
func otherName(name string) string {
	if len(name) < provider.MaxSegment {
		return name + "x"
	}
	return strings.Repeat("y", 8)
}

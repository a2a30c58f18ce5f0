package conformance

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// provBindingChecks returns one check per KeyRef field a handle is bound
// to.
func provBindingChecks() map[string]provCheckAlg {
	field := func(name string, variants func(s *provSuite, r provider.KeyRef) []provider.KeyRef) provCheckAlg {
		return func(s *provSuite, ctx context.Context, a provider.Algorithm) error {
			return s.checkBinding(ctx, a, name, variants)
		}
	}
	withID := func(r provider.KeyRef, app, purpose, name string) []provider.KeyRef {
		id, err := provider.NewKeyID(app, purpose, name)
		if err != nil {
			return nil // checkBinding reports an empty variant list
		}
		r.ID = id
		return []provider.KeyRef{r}
	}
	return map[string]provCheckAlg{
		"App": field("app ID", func(_ *provSuite, r provider.KeyRef) []provider.KeyRef {
			return withID(r, otherName(r.ID.App()), r.ID.Purpose(), r.ID.Name())
		}),
		"Purpose": field("purpose", func(_ *provSuite, r provider.KeyRef) []provider.KeyRef {
			return withID(r, r.ID.App(), otherName(r.ID.Purpose()), r.ID.Name())
		}),
		"Name": field("name", func(_ *provSuite, r provider.KeyRef) []provider.KeyRef {
			return withID(r, r.ID.App(), r.ID.Purpose(), otherName(r.ID.Name()))
		}),
		"Version": field("version", func(_ *provSuite, r provider.KeyRef) []provider.KeyRef {
			r2, rMax := r, r
			r2.Version = r.Version + 1
			rMax.Version = provider.MaxVersion
			return []provider.KeyRef{r2, rMax}
		}),
		"Algorithm": field("algorithm", func(s *provSuite, r provider.KeyRef) []provider.KeyRef {
			var out []provider.KeyRef
			for _, a := range s.reg.Names() {
				if sp, _ := s.reg.Lookup(a); sp != nil && sp.Use == r.Use && a != r.Algorithm {
					v := r
					v.Algorithm = a
					out = append(out, v)
				}
			}
			v := r
			v.Algorithm = "no-such-alg"
			return append(out, v)
		}),
		"Use": field("use", func(_ *provSuite, r provider.KeyRef) []provider.KeyRef {
			var out []provider.KeyRef
			for _, u := range otherUses(r.Use) {
				v := r
				v.Use = u
				out = append(out, v)
			}
			return out
		}),
		"Provider": field("provider name", func(s *provSuite, r provider.KeyRef) []provider.KeyRef {
			r.Provider = otherName(s.info.Name)
			return []provider.KeyRef{r}
		}),
	}
}

// checkBinding: key A's handle presented under a ref that differs from
// A's in exactly one field fails in every operation, Destroy included, with
// no output; afterwards A still works under its own ref.
func (s *provSuite) checkBinding(ctx context.Context, a provider.Algorithm, field string, variants func(*provSuite, provider.KeyRef) []provider.KeyRef) error {
	k, err := s.keyFor(ctx, "binding", field2seg(field), a)
	if err != nil {
		return err
	}
	refs := variants(s, k.ref)
	if len(refs) == 0 {
		return fmt.Errorf("suite: no ref differing from %s in its %s", k.ref, field)
	}
	var f provFails
	for _, ref := range refs {
		how := fmt.Sprintf("the handle of %s (%s %s)", k.ref, field, describeField(k.ref, ref))
		for _, at := range s.misuse(ctx, k, ref, k.g.Handle, how) {
			f.add(s.wantFailure(at.what, at.err, at.out))
		}
		err := s.p.Destroy(ctx, ref, k.g.Handle)
		f.add(s.wantFailure(fmt.Sprintf("Destroy(%s) with %s", ref, how), err, nil))
	}
	if err := s.works(ctx, k); err != nil {
		f.addf("after the mismatched calls: %v", err)
	}
	return f.err()
}

// field2seg turns a field description into a name segment.
func field2seg(field string) string {
	return strings.ReplaceAll(strings.ToLower(field), " ", "-")
}

// describeField says how ref differs from orig.
func describeField(orig, ref provider.KeyRef) string {
	switch {
	case orig.ID != ref.ID:
		return fmt.Sprintf("%s instead of %s", ref.ID, orig.ID)
	case orig.Version != ref.Version:
		return fmt.Sprintf("%d instead of %d", ref.Version, orig.Version)
	case orig.Algorithm != ref.Algorithm:
		return fmt.Sprintf("%q instead of %q", ref.Algorithm, orig.Algorithm)
	case orig.Use != ref.Use:
		return fmt.Sprintf("%s instead of %s", ref.Use, orig.Use)
	case orig.Provider != ref.Provider:
		return fmt.Sprintf("%q instead of %q", ref.Provider, orig.Provider)
	}
	return "unchanged"
}

// provMaxEvery is the handle length up to which every position is tried;
// longer handles are sampled.
const provMaxEvery = 512

// positions returns every index below n, or about provMaxEvery of them
// spread evenly (first and last included) when n is larger.
func positions(n int) []int {
	step := 1
	if n > provMaxEvery {
		step = n / provMaxEvery
	}
	var out []int
	for i := 0; i < n; i += step {
		out = append(out, i)
	}
	if n > 0 && out[len(out)-1] != n-1 {
		out = append(out, n-1)
	}
	return out
}

// corrupt checks that every handle in bad fails in every operation with
// k's ref, and that k works before and after.
func (s *provSuite) corrupt(ctx context.Context, k *provKey, bad []provider.Handle, how func(i int) string) error {
	if err := s.works(ctx, k); err != nil {
		return err
	}
	var f provFails
	for i, h := range bad {
		if bytes.Equal(h, k.g.Handle) {
			return fmt.Errorf("suite: %s equals the real handle", how(i))
		}
		for _, at := range s.misuse(ctx, k, k.ref, h, how(i)) {
			f.add(s.wantFailure(at.what, at.err, at.out))
		}
	}
	if err := s.works(ctx, k); err != nil {
		f.addf("after the corrupted handles: %v", err)
	}
	return f.err()
}

// checkHandleRandom: random handles (empty, nil, 1, 32 bytes, the real
// handle's length, MaxHandle) fail without panicking.
func (s *provSuite) checkHandleRandom(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "corrupt-handle", "random", a)
	if err != nil {
		return err
	}
	sizes := []int{1, 32, len(k.g.Handle), provider.MaxHandle}
	bad := []provider.Handle{nil, {}}
	for _, n := range sizes {
		bad = append(bad, pseudo(fmt.Sprintf("random-handle/%d", n), n))
	}
	return s.corrupt(ctx, k, bad, func(i int) string {
		return fmt.Sprintf("a %d-byte random handle", len(bad[i]))
	})
}

// checkHandleTruncated: every proper prefix of a handle (sampled for long
// handles) fails.
func (s *provSuite) checkHandleTruncated(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "corrupt-handle", "truncated", a)
	if err != nil {
		return err
	}
	var bad []provider.Handle
	for _, n := range positions(len(k.g.Handle)) {
		bad = append(bad, bytes.Clone(k.g.Handle[:n]))
	}
	return s.corrupt(ctx, k, bad, func(i int) string {
		return fmt.Sprintf("the handle truncated to %d of %d bytes", len(bad[i]), len(k.g.Handle))
	})
}

// checkHandleBitFlip: the handle with one bit flipped, at every byte
// (sampled for long handles), fails.
func (s *provSuite) checkHandleBitFlip(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "corrupt-handle", "bit-flip", a)
	if err != nil {
		return err
	}
	var bad []provider.Handle
	var where []string
	n := len(k.g.Handle)
	for _, i := range positions(n) {
		h := bytes.Clone(k.g.Handle)
		h[i] ^= 0x01
		bad = append(bad, h)
		where = append(where, fmt.Sprintf("byte %d xor 0x01", i))
	}
	for _, i := range []int{0, n / 2, n - 1} {
		h := bytes.Clone(k.g.Handle)
		h[i] ^= 0x80
		bad = append(bad, h)
		where = append(where, fmt.Sprintf("byte %d xor 0x80", i))
	}
	return s.corrupt(ctx, k, bad, func(i int) string {
		return fmt.Sprintf("the %d-byte handle with %s", n, where[i])
	})
}

// checkHandleExtended: the handle with bytes appended or prepended fails.
func (s *provSuite) checkHandleExtended(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "corrupt-handle", "extended", a)
	if err != nil {
		return err
	}
	h := k.g.Handle
	bad := []provider.Handle{
		append(bytes.Clone(h), 0),
		append(bytes.Clone(h), pseudo("extended-handle", 16)...),
		append([]byte{0}, h...),
		append(bytes.Clone(h), h...),
	}
	names := []string{"one zero byte appended", "16 bytes appended", "one zero byte prepended", "itself appended"}
	return s.corrupt(ctx, k, bad, func(i int) string { return "the handle with " + names[i] })
}

// checkHandleOversize: a handle of MaxHandle+1 bytes, starting with the
// real handle, fails.
func (s *provSuite) checkHandleOversize(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "corrupt-handle", "oversize", a)
	if err != nil {
		return err
	}
	if len(k.g.Handle) > provider.MaxHandle {
		return fmt.Errorf("Generate(%s): handle is %d bytes, over MaxHandle (%d)", k.ref, len(k.g.Handle), provider.MaxHandle)
	}
	h := make([]byte, provider.MaxHandle+1)
	copy(h, k.g.Handle)
	return s.corrupt(ctx, k, []provider.Handle{h}, func(int) string { return "a MaxHandle+1-byte handle" })
}

package conformance

import (
	"context"
	"fmt"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// checkWrongUse: an operation of a use the key's algorithm does not have
// fails with ErrPermission and no output: with the key's own ref, every
// operation of the other uses (Sign and SignDigest, Seal and Open, MAC,
// Decrypt); and with the same handle under a ref whose use was switched
// to each other use, every operation, that of the claimed use and those
// of the key's real use.
func (s *provSuite) checkWrongUse(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "wrong-use", "key", a)
	if err != nil {
		return err
	}
	type refHow struct {
		ref provider.KeyRef
		how string
	}
	cases := []refHow{{k.ref, "its own ref"}}
	for _, u := range otherUses(k.ref.Use) {
		switched := k.ref
		switched.Use = u
		cases = append(cases, refHow{switched, "its handle under a " + u.String() + "-use ref"})
	}
	var f provFails
	for _, c := range cases {
		ops := provOps
		if c.ref.Use == k.ref.Use { // else switched: every operation is of a use the ref or the algorithm lacks
			ops = otherOps(k.ref.Use)
		}
		for _, op := range ops {
			out, err := s.call(ctx, op, k, c.ref)
			f.add(wantCode(fmt.Sprintf("%s(%s) of the %s key, with %s", op, c.ref, a, c.how), err, provider.EPERM, out))
		}
	}
	return f.err()
}

// provOps are the operations call knows.
var provOps = []string{"Sign", "SignDigest", "Seal", "Open", "MAC", "Decrypt"}

// opUse is the use each of provOps needs.
var opUse = map[string]provider.Use{
	"Sign": provider.UseSign, "SignDigest": provider.UseSign,
	"Seal": provider.UseDecrypt, "Open": provider.UseDecrypt,
	"MAC": provider.UseMAC, "Decrypt": provider.UseAsymmetricDecrypt,
}

// otherOps returns the operations of provOps that u does not allow.
func otherOps(u provider.Use) []string {
	var out []string
	for _, op := range provOps {
		if opUse[op] != u {
			out = append(out, op)
		}
	}
	return out
}

// call runs op (one of provOps) with k's handle under ref. SignDigest
// signs a well-formed SHA-256 digest (k's own hash when it has one).
func (s *provSuite) call(ctx context.Context, op string, k *provKey, ref provider.KeyRef) ([]byte, error) {
	switch op {
	case "Sign":
		return s.p.Sign(ctx, ref, k.g.Handle, provKeyMsg)
	case "SignDigest":
		h := s.misuseDigestHash(k.ref.Algorithm)
		return s.p.SignDigest(ctx, ref, k.g.Handle, h, digestOf(h, provKeyMsg))
	case "Seal":
		return s.p.Seal(ctx, ref, k.g.Handle, provKeyPlaintext, provKeyAAD)
	case "MAC":
		return s.p.MAC(ctx, ref, k.g.Handle, provKeyMsg)
	case "Decrypt":
		m := k.hpkeMessage(ref)
		return s.p.Decrypt(ctx, ref, k.g.Handle, m.enc, m.ct, m.info, m.aad)
	}
	blob := k.sealed
	if blob == nil {
		blob = pseudo("wrong-use", 64)
	}
	return s.p.Open(ctx, ref, k.g.Handle, blob, provKeyAAD)
}

// checkUnsupported: Generate for an algorithm the provider does not
// announce fails with ErrNotSupported: a name no registry knows, an
// announced name in upper case, and every registry algorithm the provider
// does not announce.
func (s *provSuite) checkUnsupported(ctx context.Context) error {
	type cand struct {
		a   provider.Algorithm
		use provider.Use
	}
	var cands []cand
	for _, u := range provUses {
		cands = append(cands, cand{"no-such-alg", u})
	}
	if len(s.algs) > 0 {
		sp, err := s.spec(s.algs[0])
		if err != nil {
			return err
		}
		cands = append(cands, cand{provider.Algorithm(strings.ToUpper(string(s.algs[0]))), sp.Use})
	}
	unannounced := 0
	for _, a := range s.reg.Names() {
		if !s.info.Supports(a) {
			sp, err := s.spec(a)
			if err != nil {
				return err
			}
			cands = append(cands, cand{a, sp.Use})
			unannounced++
		}
	}
	if unannounced == 0 {
		s.logf("the provider announces every registry algorithm; only unknown names are tried")
	}
	var f provFails
	for _, c := range cands {
		id, err := provider.NewKeyID(provApp, "unsupported", "key")
		if err != nil {
			return err
		}
		ref := provider.KeyRef{ID: id, Version: 1, Algorithm: c.a, Use: c.use, Provider: s.info.Name}
		g, err := s.p.Generate(ctx, ref)
		f.add(wantCode(fmt.Sprintf("Generate(%s, algorithm %q, use %s)", ref, c.a, c.use), err, provider.ENOTSUP, g.Handle))
	}
	return f.err()
}

// checkProviderMismatch: Generate for a ref that names another provider
// fails.
func (s *provSuite) checkProviderMismatch(ctx context.Context) error {
	if len(s.algs) == 0 {
		return skipf("provider announces no algorithm the registry knows")
	}
	var f provFails
	for _, a := range s.algs {
		ref, err := s.ref("provider-mismatch", string(a), a)
		if err != nil {
			return err
		}
		ref.Provider = otherName(s.info.Name)
		g, err := s.p.Generate(ctx, ref)
		f.add(s.wantFailure(fmt.Sprintf("Generate(%s) for provider %q, asking provider %q", ref, ref.Provider, s.info.Name), err, g.Handle))
	}
	return f.err()
}

// provInvalidRefs are refs that fail KeyRef.Check, made from a good one.
var provInvalidRefs = []struct {
	name   string
	mutate func(*provider.KeyRef)
}{
	{"zero version", func(r *provider.KeyRef) { r.Version = 0 }},
	{"zero key ID", func(r *provider.KeyRef) { r.ID = provider.KeyID{} }},
	{"zero use", func(r *provider.KeyRef) { r.Use = 0 }},
	{"undefined use 7", func(r *provider.KeyRef) { r.Use = 7 }},
	{"empty algorithm", func(r *provider.KeyRef) { r.Algorithm = "" }},
	{"algorithm over MaxSegment bytes", func(r *provider.KeyRef) {
		r.Algorithm = provider.Algorithm(strings.Repeat("a", provider.MaxSegment+1))
	}},
	{"empty provider name", func(r *provider.KeyRef) { r.Provider = "" }},
	{"provider name not a segment", func(r *provider.KeyRef) { r.Provider = "Not/A Segment" }},
}

// checkInvalidRef: every method given a ref that fails KeyRef.Check (zero
// version, zero key ID, invalid use, empty or overlong algorithm, invalid
// provider name) fails with ErrInvalid and no output, even with a valid
// handle. Generate for an algorithm with another use fails.
func (s *provSuite) checkInvalidRef(ctx context.Context) error {
	if len(s.algs) == 0 {
		return skipf("provider announces no algorithm the registry knows")
	}
	var f provFails
	for _, a := range s.algs {
		k, err := s.keyFor(ctx, "invalid-ref", "key", a)
		if err != nil {
			return err
		}
		ref, g := k.ref, k.g
		for _, v := range provInvalidRefs {
			bad := ref
			v.mutate(&bad)
			if bad.Check() == nil {
				return fmt.Errorf("suite: ref with %s passes KeyRef.Check", v.name)
			}
			gen, err := s.p.Generate(ctx, bad)
			f.add(wantCode(fmt.Sprintf("Generate(%s ref with %s)", a, v.name), err, provider.EINVAL, gen.Handle))
			switch ref.Use {
			case provider.UseSign:
				out, err := s.p.Sign(ctx, bad, g.Handle, []byte("msg"))
				f.add(wantCode(fmt.Sprintf("Sign(%s ref with %s, valid handle)", a, v.name), err, provider.EINVAL, out))
				h := s.misuseDigestHash(a)
				out, err = s.p.SignDigest(ctx, bad, g.Handle, h, digestOf(h, []byte("msg")))
				f.add(wantCode(fmt.Sprintf("SignDigest(%s ref with %s, valid handle)", a, v.name), err, provider.EINVAL, out))
			case provider.UseMAC:
				out, err := s.p.MAC(ctx, bad, g.Handle, []byte("msg"))
				f.add(wantCode(fmt.Sprintf("MAC(%s ref with %s, valid handle)", a, v.name), err, provider.EINVAL, out))
			case provider.UseDecrypt:
				out, err := s.p.Seal(ctx, bad, g.Handle, []byte("pt"), nil)
				f.add(wantCode(fmt.Sprintf("Seal(%s ref with %s, valid handle)", a, v.name), err, provider.EINVAL, out))
				out, err = s.p.Open(ctx, bad, g.Handle, pseudo("invalid-ref", 64), nil)
				f.add(wantCode(fmt.Sprintf("Open(%s ref with %s, valid handle)", a, v.name), err, provider.EINVAL, out))
			case provider.UseAsymmetricDecrypt:
				m := k.hpkeMessage(ref)
				out, err := s.p.Decrypt(ctx, bad, g.Handle, m.enc, m.ct, m.info, m.aad)
				f.add(wantCode(fmt.Sprintf("Decrypt(%s ref with %s, valid handle)", a, v.name), err, provider.EINVAL, out))
			}
			err = s.p.Destroy(ctx, bad, g.Handle)
			f.add(wantCode(fmt.Sprintf("Destroy(%s ref with %s, valid handle)", a, v.name), err, provider.EINVAL, nil))
		}
		// A well-formed ref whose use is not its algorithm's.
		for _, u := range otherUses(ref.Use) {
			mixed, err := s.ref("invalid-ref", string(a)+"-other-use", a)
			if err != nil {
				return err
			}
			mixed.Use = u
			gen, err := s.p.Generate(ctx, mixed)
			f.add(s.wantFailure(fmt.Sprintf("Generate(%s, algorithm %s with use %s)", mixed, a, mixed.Use), err, gen.Handle))
		}
	}
	return f.err()
}

// provUses are the uses, in order.
var provUses = []provider.Use{provider.UseSign, provider.UseDecrypt, provider.UseMAC, provider.UseAsymmetricDecrypt}

// otherUses returns the uses that are not u.
func otherUses(u provider.Use) []provider.Use {
	var out []provider.Use
	for _, v := range provUses {
		if v != u {
			out = append(out, v)
		}
	}
	return out
}

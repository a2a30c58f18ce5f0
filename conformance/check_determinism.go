package conformance

import (
	"bytes"
	"context"
	"fmt"
	"reflect"

	"github.com/nexus-os/keystored/core/provider"
)

// checkDeterministic: two fresh providers that announce Deterministic give
// byte-identical public keys, handles, signatures and sealed blobs for the
// same refs and inputs, whatever the order the keys were generated in (A
// then B on one, B then A on the other).
func checkDeterministic(ctx context.Context, p1, p2 *provSuite) error {
	if !p1.info.Deterministic || !p2.info.Deterministic {
		return skipf("provider does not announce Deterministic: nothing to compare")
	}
	if !reflect.DeepEqual(p1.info, p2.info) {
		return fmt.Errorf("two fresh providers announce different Info: %+v and %+v", p1.info, p2.info)
	}
	var refs []provider.KeyRef
	for _, a := range p1.algs {
		for _, name := range []string{"a", "b"} {
			ref, err := p1.ref("deterministic", string(a)+"-"+name, a)
			if err != nil {
				return err
			}
			refs = append(refs, ref)
		}
	}
	gen := func(s *provSuite, order []provider.KeyRef) (map[provider.KeyRef]provider.Generated, error) {
		out := map[provider.KeyRef]provider.Generated{}
		for _, ref := range order {
			g, err := s.p.Generate(ctx, ref)
			if err != nil {
				return nil, fmt.Errorf("Generate(%s, %s): %w; want success", ref, ref.Algorithm, err)
			}
			out[ref] = g
		}
		return out, nil
	}
	reversed := make([]provider.KeyRef, len(refs))
	for i, ref := range refs {
		reversed[len(refs)-1-i] = ref
	}
	g1, err := gen(p1, refs)
	if err != nil {
		return err
	}
	g2, err := gen(p2, reversed)
	if err != nil {
		return err
	}
	var f provFails
	for _, ref := range refs {
		x, y := g1[ref], g2[ref]
		if !bytes.Equal(x.PublicKey, y.PublicKey) {
			f.addf("Generate(%s): public keys differ between two fresh providers; want identical", ref)
		}
		if !bytes.Equal(x.Handle, y.Handle) {
			f.addf("Generate(%s): handles differ between two fresh providers; want identical", ref)
		}
	}
	msg := []byte("conformance: deterministic signature")
	pt, aad := []byte("conformance: deterministic plaintext"), []byte("aad")
	for _, ref := range refs {
		var outs [2][]byte
		for i, c := range []struct {
			s *provSuite
			g provider.Generated
		}{{p1, g1[ref]}, {p2, g2[ref]}} {
			var err error
			switch ref.Use {
			case provider.UseSign:
				outs[i], err = c.s.p.Sign(ctx, ref, c.g.Handle, msg)
			case provider.UseDecrypt:
				outs[i], err = c.s.p.Seal(ctx, ref, c.g.Handle, pt, aad)
			}
			if err != nil {
				return fmt.Errorf("provider %d: using %s: %w; want success", i+1, ref, err)
			}
		}
		if !bytes.Equal(outs[0], outs[1]) {
			op := "Sign"
			if ref.Use == provider.UseDecrypt {
				op = "Seal"
			}
			f.addf("%s(%s): output differs between two fresh providers given the same input; want identical", op, ref)
		}
	}
	return f.err()
}

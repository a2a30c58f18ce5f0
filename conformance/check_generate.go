package conformance

import (
	"bytes"
	"context"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// checkGenerateSizes: Generate succeeds; the public key has the
// algorithm's size (none for an AEAD); the handle is 1..MaxHandle bytes.
func (s *provSuite) checkGenerateSizes(ctx context.Context, a provider.Algorithm) error {
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	ref, err := s.ref("generate", string(a)+"-sizes", a)
	if err != nil {
		return err
	}
	g, err := s.p.Generate(ctx, ref)
	if err != nil {
		return fmt.Errorf("Generate(%s, %s): %w; want success", ref, a, err)
	}
	var f provFails
	if len(g.PublicKey) != sp.PublicKeySize {
		f.addf("Generate(%s, %s): public key is %d bytes, want %d", ref, a, len(g.PublicKey), sp.PublicKeySize)
	}
	if len(g.PublicKey) > provider.MaxPublicKey {
		f.addf("Generate(%s, %s): public key is %d bytes, want at most MaxPublicKey (%d)", ref, a, len(g.PublicKey), provider.MaxPublicKey)
	}
	if len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle {
		f.addf("Generate(%s, %s): handle is %d bytes, want 1 to MaxHandle (%d)", ref, a, len(g.Handle), provider.MaxHandle)
	}
	return f.err()
}

// checkDistinctKeys: two Generates for different refs give different keys:
// different handles, different public keys, and for an AEAD a blob sealed
// under one key does not open under the other.
func (s *provSuite) checkDistinctKeys(ctx context.Context, a provider.Algorithm) error {
	refA, gA, err := s.generate(ctx, "generate", "distinct-a", a)
	if err != nil {
		return err
	}
	refB, gB, err := s.generate(ctx, "generate", "distinct-b", a)
	if err != nil {
		return err
	}
	var f provFails
	if bytes.Equal(gA.Handle, gB.Handle) {
		f.addf("Generate(%s) and Generate(%s) returned the same handle; want different keys", refA, refB)
	}
	if len(gA.PublicKey) > 0 && bytes.Equal(gA.PublicKey, gB.PublicKey) {
		f.addf("Generate(%s) and Generate(%s) returned the same public key; want different keys", refA, refB)
	}
	if refA.Use == provider.UseDecrypt {
		pt := []byte("sealed under key A")
		sealed, err := s.p.Seal(ctx, refA, gA.Handle, pt, nil)
		if err != nil {
			return fmt.Errorf("Seal(%s): %w; want success", refA, err)
		}
		out, err := s.p.Open(ctx, refB, gB.Handle, sealed, nil)
		f.add(wantCode(fmt.Sprintf("Open(%s) of a blob sealed under %s", refB, refA), err, provider.EBADMSG, out))
	}
	return f.err()
}

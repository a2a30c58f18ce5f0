package conformance

import (
	"bytes"
	"context"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// checkGenerateSizes: Generate succeeds; the public key has a size the
// algorithm allows (none for an AEAD or MAC; RSA's DER varies) and parses
// with an independent implementation (a point on the curve, a modulus of
// the algorithm's size with exponent 65537, a KEM public key for
// crypto/hpke); the handle is 1..MaxHandle bytes.
func (s *provSuite) checkGenerateSizes(ctx context.Context, a provider.Algorithm) error {
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	k, err := s.keyFor(ctx, "generate", "sizes", a)
	if err != nil {
		return err
	}
	ref, g := k.ref, k.g
	var f provFails
	if !sp.PublicKeySizeOK(len(g.PublicKey)) {
		f.addf("Generate(%s, %s): public key is %d bytes, want %s", ref, a, len(g.PublicKey), sizeWant(sp.PublicKeySize, sp.PublicKeyVaries))
	}
	switch sp.Use {
	case provider.UseSign:
		if valid, ok := independentPublicKey(a, g.PublicKey); ok && !valid {
			f.addf("Generate(%s, %s): the public key does not parse as a %s public key (independent parser)", ref, a, a)
		}
	case provider.UseAsymmetricDecrypt:
		if valid, ok := independentHPKEPublicKey(a, g.PublicKey); ok && !valid {
			f.addf("Generate(%s, %s): the public key does not parse as a %s public key (crypto/hpke)", ref, a, a)
		}
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
// different handles, different public keys, for an AEAD a blob sealed
// under one key does not open under the other, for a MAC key the tags of
// one message differ, and for an HPKE key a message to one does not
// decrypt with the other.
func (s *provSuite) checkDistinctKeys(ctx context.Context, a provider.Algorithm) error {
	var refA, refB provider.KeyRef
	var gA, gB provider.Generated
	if s.expensive(a) {
		kA, kB, err := s.keyPair(ctx, "generate", "distinct", a)
		if err != nil {
			return err
		}
		refA, gA, refB, gB = kA.ref, kA.g, kB.ref, kB.g
	} else {
		// Generate only, so that two keys that are one fail here, not in
		// the first use of the second.
		var err error
		if refA, gA, err = s.generate(ctx, "generate", "distinct-a", a); err != nil {
			return err
		}
		if refB, gB, err = s.generate(ctx, "generate", "distinct-b", a); err != nil {
			return err
		}
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
	if _, ok := hpkeSuites[a]; ok && refA.Use == provider.UseAsymmetricDecrypt {
		m, err := s.sealTo(&provKey{ref: refA, g: gA}, []byte("to key A"), nil, nil)
		if err != nil {
			return err
		}
		out, err := s.p.Decrypt(ctx, refB, gB.Handle, m.enc, m.ct, nil, nil)
		f.add(wantCode(fmt.Sprintf("Decrypt(%s) of a message sealed to %s", refB, refA), err, provider.EBADMSG, out))
	}
	if refA.Use == provider.UseMAC {
		tagA, errA := s.p.MAC(ctx, refA, gA.Handle, provKeyMsg)
		tagB, errB := s.p.MAC(ctx, refB, gB.Handle, provKeyMsg)
		switch {
		case errA != nil || errB != nil:
			f.addf("MAC(%s) and MAC(%s): %v, %v; want success", refA, refB, errA, errB)
		case bytes.Equal(tagA, tagB):
			f.addf("MAC(%s) and MAC(%s) give the same tag for the same message; want different keys", refA, refB)
		}
	}
	return f.err()
}

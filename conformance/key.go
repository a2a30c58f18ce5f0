package conformance

import (
	"bytes"
	"context"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// provKey is a key the suite generated, with a blob sealed under it when
// it is an AEAD key.
type provKey struct {
	ref    provider.KeyRef
	g      provider.Generated
	sealed []byte // nonce ‖ ciphertext ‖ tag of provKeyPlaintext under provKeyAAD
}

var (
	provKeyMsg       = []byte("conformance: message to sign")
	provKeyPlaintext = []byte("conformance: plaintext to seal")
	provKeyAAD       = []byte("conformance: aad")
)

// newKey generates conformance/<purpose>/<alg>-<name> and, for an AEAD,
// seals one blob under it.
func (s *provSuite) newKey(ctx context.Context, purpose, name string, a provider.Algorithm) (*provKey, error) {
	ref, g, err := s.generate(ctx, purpose, name, a)
	if err != nil {
		return nil, err
	}
	k := &provKey{ref: ref, g: g}
	if ref.Use == provider.UseDecrypt {
		k.sealed, err = s.p.Seal(ctx, ref, g.Handle, provKeyPlaintext, provKeyAAD)
		if err != nil {
			return nil, fmt.Errorf("Seal(%s): %w; want success", ref, err)
		}
	}
	return k, nil
}

// works checks that k still works with its own ref and handle: a fresh
// signature verifies (independently where the suite can), or the blob
// opens and a fresh seal round-trips.
func (s *provSuite) works(ctx context.Context, k *provKey) error {
	switch k.ref.Use {
	case provider.UseSign:
		sig, err := s.p.Sign(ctx, k.ref, k.g.Handle, provKeyMsg)
		if err != nil {
			return fmt.Errorf("Sign(%s) with its own handle: %w; want success", k.ref, err)
		}
		if v, ok := independentVerifiers[k.ref.Algorithm]; ok && !v(k.g.PublicKey, provKeyMsg, sig) {
			return fmt.Errorf("Sign(%s) with its own handle: signature does not verify; want valid", k.ref)
		}
	case provider.UseDecrypt:
		pt, err := s.p.Open(ctx, k.ref, k.g.Handle, k.sealed, provKeyAAD)
		if err != nil || !bytes.Equal(pt, provKeyPlaintext) {
			return fmt.Errorf("Open(%s) with its own handle: got %d bytes, error %v; want the plaintext", k.ref, len(pt), err)
		}
		sealed, err := s.p.Seal(ctx, k.ref, k.g.Handle, provKeyPlaintext, provKeyAAD)
		if err != nil {
			return fmt.Errorf("Seal(%s) with its own handle: %w; want success", k.ref, err)
		}
		pt, err = s.p.Open(ctx, k.ref, k.g.Handle, sealed, provKeyAAD)
		if err != nil || !bytes.Equal(pt, provKeyPlaintext) {
			return fmt.Errorf("Open(%s) of a fresh seal: got %d bytes, error %v; want the plaintext", k.ref, len(pt), err)
		}
	}
	return nil
}

// provAttempt is one call the suite expects to fail.
type provAttempt struct {
	what string
	out  []byte
	err  error
}

// misuse calls, with ref and h instead of k's own, every operation that
// could use k's material: Sign for a signature key; Open of k's blob and
// Seal for an AEAD key; and the operation of ref's use when that differs.
func (s *provSuite) misuse(ctx context.Context, k *provKey, ref provider.KeyRef, h provider.Handle, how string) []provAttempt {
	var out []provAttempt
	sign := func() {
		sig, err := s.p.Sign(ctx, ref, h, provKeyMsg)
		out = append(out, provAttempt{fmt.Sprintf("Sign(%s) with %s", ref, how), sig, err})
	}
	seal := func() {
		b, err := s.p.Seal(ctx, ref, h, provKeyPlaintext, provKeyAAD)
		out = append(out, provAttempt{fmt.Sprintf("Seal(%s) with %s", ref, how), b, err})
		blob := k.sealed
		if blob == nil {
			blob = pseudo("misuse", 64)
		}
		b, err = s.p.Open(ctx, ref, h, blob, provKeyAAD)
		out = append(out, provAttempt{fmt.Sprintf("Open(%s) with %s", ref, how), b, err})
	}
	if k.ref.Use == provider.UseSign || ref.Use == provider.UseSign {
		sign()
	}
	if k.ref.Use == provider.UseDecrypt || ref.Use == provider.UseDecrypt {
		seal()
	}
	return out
}

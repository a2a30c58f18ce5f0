package conformance

import (
	"bytes"
	"context"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// provSignSizes are the message sizes every signature algorithm is tested
// with: empty, one byte and the bound.
var provSignSizes = []int{0, 1, provider.MaxSignMessage}

// checkSignVerify: signatures of messages of 0, 1 and MaxSignMessage bytes
// have the algorithm's size and verify under the public key Generate
// returned, with an independent implementation; they do not verify for
// another message; Sign does not modify its input.
func (s *provSuite) checkSignVerify(ctx context.Context, a provider.Algorithm) error {
	verify, err := verifier(a)
	if err != nil {
		return err
	}
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	ref, g, err := s.generate(ctx, "sign", "verify", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, n := range provSignSizes {
		msg := pseudo("sign/"+string(a), n)
		orig := bytes.Clone(msg)
		sig, err := s.p.Sign(ctx, ref, g.Handle, msg)
		what := fmt.Sprintf("Sign(%s, %d-byte message)", ref, n)
		if err != nil {
			f.addf("%s: %v; want success", what, err)
			continue
		}
		if !bytes.Equal(msg, orig) {
			f.addf("%s modified the message", what)
		}
		if len(sig) != sp.SignatureSize {
			f.addf("%s: signature is %d bytes, want %d", what, len(sig), sp.SignatureSize)
		}
		if !verify(g.PublicKey, msg, sig) {
			f.addf("%s: signature does not verify with the independent %s verifier; want valid", what, a)
		}
		other := append(bytes.Clone(msg), 0)
		if verify(g.PublicKey, other, sig) {
			f.addf("%s: signature also verifies for the message with a byte appended; want invalid", what)
		}
	}
	return f.err()
}

// checkSignTooLarge: a message of MaxSignMessage+1 bytes fails with
// ErrTooLarge and no signature.
func (s *provSuite) checkSignTooLarge(ctx context.Context, a provider.Algorithm) error {
	ref, g, err := s.generate(ctx, "sign", "too-large", a)
	if err != nil {
		return err
	}
	msg := make([]byte, provider.MaxSignMessage+1)
	sig, err := s.p.Sign(ctx, ref, g.Handle, msg)
	return wantCode(fmt.Sprintf("Sign(%s, MaxSignMessage+1 bytes)", ref), err, provider.EMSGSIZE, sig)
}

// checkSignOtherKey: a signature by key A does not verify under key B's
// public key, and the other way round.
func (s *provSuite) checkSignOtherKey(ctx context.Context, a provider.Algorithm) error {
	verify, err := verifier(a)
	if err != nil {
		return err
	}
	refA, gA, err := s.generate(ctx, "sign", "other-key-a", a)
	if err != nil {
		return err
	}
	refB, gB, err := s.generate(ctx, "sign", "other-key-b", a)
	if err != nil {
		return err
	}
	msg := []byte("conformance: signed by one key")
	var f provFails
	for _, k := range []struct {
		ref      provider.KeyRef
		g        provider.Generated
		otherRef provider.KeyRef
		otherPub []byte
	}{{refA, gA, refB, gB.PublicKey}, {refB, gB, refA, gA.PublicKey}} {
		sig, err := s.p.Sign(ctx, k.ref, k.g.Handle, msg)
		if err != nil {
			f.addf("Sign(%s): %v; want success", k.ref, err)
			continue
		}
		if !verify(k.g.PublicKey, msg, sig) {
			f.addf("Sign(%s): signature does not verify under its own public key; want valid", k.ref)
		}
		if verify(k.otherPub, msg, sig) {
			f.addf("Sign(%s): signature verifies under the public key of %s; want invalid", k.ref, k.otherRef)
		}
	}
	return f.err()
}

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
// have a size the algorithm allows (ECDSA's DER varies) and verify under
// the public key Generate returned, with an independent implementation;
// they do not verify for another message; Sign does not modify its input.
// Where the scheme is deterministic (EdDSA, PKCS #1 v1.5) or the provider
// announces Deterministic, signing again gives the same bytes.
func (s *provSuite) checkSignVerify(ctx context.Context, a provider.Algorithm) error {
	verify, err := verifier(a)
	if err != nil {
		return err
	}
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	k, err := s.keyFor(ctx, "sign", "verify", a)
	if err != nil {
		return err
	}
	ref, g := k.ref, k.g
	same := s.info.Deterministic || deterministicSchemes[a]
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
		if !sp.SignatureSizeOK(len(sig)) {
			f.addf("%s: signature is %d bytes, want %s", what, len(sig), sizeWant(sp.SignatureSize, sp.SignatureVaries))
		}
		if !verify(g.PublicKey, msg, sig) {
			f.addf("%s: signature does not verify with the independent %s verifier; want valid", what, a)
		}
		other := append(bytes.Clone(msg), 0)
		if verify(g.PublicKey, other, sig) {
			f.addf("%s: signature also verifies for the message with a byte appended; want invalid", what)
		}
		if same {
			again, err := s.p.Sign(ctx, ref, g.Handle, msg)
			if err != nil || !bytes.Equal(again, sig) {
				f.addf("%s again: got other bytes or %v; want the same signature (%s)", what, err, sameWhy(s.info.Deterministic))
			}
		}
	}
	return f.err()
}

// sameWhy says why two signatures must be equal.
func sameWhy(deterministic bool) string {
	if deterministic {
		return "the provider announces Deterministic"
	}
	return "the scheme has no randomness"
}

// sizeWant describes a size bound for messages.
func sizeWant(size int, varies bool) string {
	if varies {
		return fmt.Sprintf("1 to %d", size)
	}
	return fmt.Sprintf("%d", size)
}

// checkSignTooLarge: a message of MaxSignMessage+1 bytes fails with
// ErrTooLarge and no signature.
func (s *provSuite) checkSignTooLarge(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "sign", "too-large", a)
	if err != nil {
		return err
	}
	msg := make([]byte, provider.MaxSignMessage+1)
	sig, err := s.p.Sign(ctx, k.ref, k.g.Handle, msg)
	return wantCode(fmt.Sprintf("Sign(%s, MaxSignMessage+1 bytes)", k.ref), err, provider.EMSGSIZE, sig)
}

// checkSignOtherKey: a signature by key A does not verify under key B's
// public key, and the other way round.
func (s *provSuite) checkSignOtherKey(ctx context.Context, a provider.Algorithm) error {
	verify, err := verifier(a)
	if err != nil {
		return err
	}
	kA, kB, err := s.keyPair(ctx, "sign", "other-key", a)
	if err != nil {
		return err
	}
	refA, gA, refB, gB := kA.ref, kA.g, kB.ref, kB.g
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

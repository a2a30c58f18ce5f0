package conformance

import (
	"bytes"
	"context"
	"crypto"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// provKey is a key the suite generated, with a blob sealed under it when
// it is an AEAD key, the tag of provKeyMsg when it is a MAC key, and a
// message crypto/hpke sealed to its public key when it is an HPKE key.
type provKey struct {
	ref    provider.KeyRef
	g      provider.Generated
	sealed []byte          // nonce ‖ ciphertext ‖ tag of provKeyPlaintext under provKeyAAD
	tag    []byte          // MAC of provKeyMsg
	msg    provHPKEMessage // provKeyPlaintext sealed to the public key, info provKeyInfo, AAD provKeyAAD
	hash   crypto.Hash
}

var (
	provKeyMsg       = []byte("conformance: message to sign")
	provKeyPlaintext = []byte("conformance: plaintext to seal")
	provKeyAAD       = []byte("conformance: aad")
	provKeyInfo      = []byte("conformance: hpke info")
)

// newKey generates conformance/<purpose>/<alg>-<name> and, for an AEAD,
// seals one blob under it; for a MAC key, it computes one tag; for an
// HPKE key, it seals one message to it with crypto/hpke.
func (s *provSuite) newKey(ctx context.Context, purpose, name string, a provider.Algorithm) (*provKey, error) {
	ref, g, err := s.generate(ctx, purpose, name, a)
	if err != nil {
		return nil, err
	}
	return s.keyOf(ctx, ref, g)
}

// keyOf is the provKey of ref with what Generate (or Import) returned,
// with its blob, tag or message made as newKey says.
func (s *provSuite) keyOf(ctx context.Context, ref provider.KeyRef, g provider.Generated) (*provKey, error) {
	a := ref.Algorithm
	var err error
	k := &provKey{ref: ref, g: g}
	if sp, err := s.spec(a); err == nil {
		k.hash = sp.Hash
	}
	switch ref.Use {
	case provider.UseDecrypt:
		k.sealed, err = s.p.Seal(ctx, ref, g.Handle, provKeyPlaintext, provKeyAAD)
		if err != nil {
			return nil, fmt.Errorf("Seal(%s): %w; want success", ref, err)
		}
	case provider.UseMAC:
		k.tag, err = s.p.MAC(ctx, ref, g.Handle, provKeyMsg)
		if err != nil {
			return nil, fmt.Errorf("MAC(%s): %w; want success", ref, err)
		}
	case provider.UseAsymmetricDecrypt:
		if _, ok := hpkeSuites[a]; !ok {
			break // misuse and works make do without a message
		}
		k.msg, err = s.sealTo(k, provKeyPlaintext, provKeyInfo, provKeyAAD)
		if err != nil {
			return nil, err
		}
	}
	return k, nil
}

// works checks that k still works with its own ref and handle: a fresh
// signature verifies (independently where the suite can), and so does a
// signature of a digest where the algorithm signs digests; or the blob
// opens and a fresh seal round-trips; or the tag is made again; or the
// HPKE message and a fresh one decrypt.
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
		if d, ok := digestVerifiers[k.ref.Algorithm]; ok && k.hash != 0 {
			digest := digestOf(k.hash, provKeyMsg)
			sig, err := s.p.SignDigest(ctx, k.ref, k.g.Handle, k.hash, digest)
			if err != nil {
				return fmt.Errorf("SignDigest(%s) with its own handle: %w; want success", k.ref, err)
			}
			if !d.verify(k.g.PublicKey, digest, sig) {
				return fmt.Errorf("SignDigest(%s) with its own handle: signature does not verify; want valid", k.ref)
			}
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
	case provider.UseMAC:
		tag, err := s.p.MAC(ctx, k.ref, k.g.Handle, provKeyMsg)
		if err != nil {
			return fmt.Errorf("MAC(%s) with its own handle: %w; want success", k.ref, err)
		}
		if !bytes.Equal(tag, k.tag) {
			return fmt.Errorf("MAC(%s) with its own handle: got another tag than at first for the same message; want the same", k.ref)
		}
	case provider.UseAsymmetricDecrypt:
		if k.msg.enc == nil {
			return nil // an algorithm the suite cannot seal to
		}
		if err := s.decrypts(ctx, k.ref, k.g.Handle, k.msg, "the message sealed at first, with its own handle"); err != nil {
			return err
		}
		m, err := s.sealTo(k, provKeyPlaintext, provKeyInfo, provKeyAAD)
		if err != nil {
			return err
		}
		return s.decrypts(ctx, k.ref, k.g.Handle, m, "a fresh message, with its own handle")
	}
	return nil
}

// provAttempt is one call the suite expects to fail.
type provAttempt struct {
	what string
	out  []byte
	err  error
}

// misuseDigestHash is the hash misuse signs digests of: the algorithm's
// own when it has one (so that the call reaches the handle), else SHA-256.
func (s *provSuite) misuseDigestHash(algs ...provider.Algorithm) crypto.Hash {
	for _, a := range algs {
		if sp, err := s.spec(a); err == nil && sp.Hash != 0 {
			return sp.Hash
		}
	}
	return crypto.SHA256
}

// misuse calls, with ref and h instead of k's own, every operation that
// could use k's material: Sign, and SignDigest where k's or ref's
// algorithm signs digests, for a signature key; Open of k's blob and Seal
// for an AEAD key; MAC for a MAC key; Decrypt of k's message for an HPKE
// key; and the operations of ref's use when that differs.
func (s *provSuite) misuse(ctx context.Context, k *provKey, ref provider.KeyRef, h provider.Handle, how string) []provAttempt {
	var out []provAttempt
	sign := func() {
		sig, err := s.p.Sign(ctx, ref, h, provKeyMsg)
		out = append(out, provAttempt{fmt.Sprintf("Sign(%s) with %s", ref, how), sig, err})
		if !s.signsDigests(k.ref.Algorithm) && !s.signsDigests(ref.Algorithm) {
			// An algorithm that signs no digests may refuse SignDigest
			// (EPERM) before it looks at the handle.
			return
		}
		hash := s.misuseDigestHash(k.ref.Algorithm, ref.Algorithm)
		sig, err = s.p.SignDigest(ctx, ref, h, hash, digestOf(hash, provKeyMsg))
		out = append(out, provAttempt{fmt.Sprintf("SignDigest(%s) with %s", ref, how), sig, err})
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
	mac := func() {
		tag, err := s.p.MAC(ctx, ref, h, provKeyMsg)
		out = append(out, provAttempt{fmt.Sprintf("MAC(%s) with %s", ref, how), tag, err})
	}
	if k.ref.Use == provider.UseSign || ref.Use == provider.UseSign {
		sign()
	}
	if k.ref.Use == provider.UseDecrypt || ref.Use == provider.UseDecrypt {
		seal()
	}
	if k.ref.Use == provider.UseMAC || ref.Use == provider.UseMAC {
		mac()
	}
	if k.ref.Use == provider.UseAsymmetricDecrypt || ref.Use == provider.UseAsymmetricDecrypt {
		m := k.hpkeMessage(ref)
		pt, err := s.p.Decrypt(ctx, ref, h, m.enc, m.ct, m.info, m.aad)
		out = append(out, provAttempt{fmt.Sprintf("Decrypt(%s) with %s", ref, how), pt, err})
	}
	return out
}

// hpkeMessage returns k's HPKE message, or for a key without one a
// well-formed stand-in of ref's algorithm (its enc size, random bytes)
// that reaches the handle before anything can fail.
func (k *provKey) hpkeMessage(ref provider.KeyRef) provHPKEMessage {
	if k.msg.enc != nil {
		return k.msg
	}
	n := 32
	if sp, err := ksRegistry.Lookup(ref.Algorithm); err == nil && sp.EncSize > 0 {
		n = sp.EncSize
	}
	return provHPKEMessage{enc: pseudo("misuse/enc", n), ct: pseudo("misuse/ct", 48), info: provKeyInfo, aad: provKeyAAD}
}

// signsDigests reports whether a is a signature algorithm with a Hash.
func (s *provSuite) signsDigests(a provider.Algorithm) bool {
	sp, err := s.reg.Lookup(a)
	return err == nil && sp.Use == provider.UseSign && sp.Hash != 0
}

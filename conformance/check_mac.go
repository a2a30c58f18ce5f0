package conformance

import (
	"bytes"
	"context"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// provMACSizes are the message sizes every MAC algorithm is tested with:
// empty, one byte, 1 KiB and the bound.
var provMACSizes = []int{0, 1, 1 << 10, provider.MaxMACMessage}

// checkMACTag: tags of messages of 0, 1, 1024 and MaxMACMessage bytes are
// the algorithm's full size (never truncated), the same every time for the
// same key and message, different for a message with one bit flipped;
// MAC does not modify its input; a nil and an empty message are the same.
func (s *provSuite) checkMACTag(ctx context.Context, a provider.Algorithm) error {
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	k, err := s.keyFor(ctx, "mac", "tag", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, n := range provMACSizes {
		msg := pseudo("mac/"+string(a), n)
		orig := bytes.Clone(msg)
		what := fmt.Sprintf("MAC(%s, %d-byte message)", k.ref, n)
		tag, err := s.p.MAC(ctx, k.ref, k.g.Handle, msg)
		if err != nil {
			f.addf("%s: %v; want success", what, err)
			continue
		}
		if !bytes.Equal(msg, orig) {
			f.addf("%s modified the message", what)
		}
		if len(tag) != sp.MACSize {
			f.addf("%s: tag is %d bytes, want %d (the full tag)", what, len(tag), sp.MACSize)
		}
		again, err := s.p.MAC(ctx, k.ref, k.g.Handle, msg)
		if err != nil || !bytes.Equal(again, tag) {
			f.addf("%s again: got another tag or %v; want the same tag", what, err)
		}
		otherMsg := []byte{0}
		if n > 0 {
			otherMsg = bytes.Clone(msg)
			otherMsg[n-1] ^= 1
		}
		other, err := s.p.MAC(ctx, k.ref, k.g.Handle, otherMsg)
		if err != nil || bytes.Equal(other, tag) {
			f.addf("%s with its last bit flipped (a byte for the empty one): got the same tag or %v; want another tag", what, err)
		}
	}
	empty, err1 := s.p.MAC(ctx, k.ref, k.g.Handle, []byte{})
	none, err2 := s.p.MAC(ctx, k.ref, k.g.Handle, nil)
	if err1 != nil || err2 != nil || !bytes.Equal(empty, none) {
		f.addf("MAC(%s) of an empty and of a nil message: %v, %v, equal %v; want the same tag", k.ref, err1, err2, bytes.Equal(empty, none))
	}
	return f.err()
}

// checkMACTooLarge: a message of MaxMACMessage+1 bytes fails with
// ErrTooLarge and no tag.
func (s *provSuite) checkMACTooLarge(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "mac", "too-large", a)
	if err != nil {
		return err
	}
	tag, err := s.p.MAC(ctx, k.ref, k.g.Handle, make([]byte, provider.MaxMACMessage+1))
	return wantCode(fmt.Sprintf("MAC(%s, MaxMACMessage+1 bytes)", k.ref), err, provider.EMSGSIZE, tag)
}

// checkMACOtherKey: two keys, and two versions of one key, give different
// tags for the same message.
func (s *provSuite) checkMACOtherKey(ctx context.Context, a provider.Algorithm) error {
	kA, kB, err := s.keyPair(ctx, "mac", "other-key", a)
	if err != nil {
		return err
	}
	v2 := kA.ref
	v2.Version = 2
	g2, err := s.p.Generate(ctx, v2)
	if err != nil {
		return fmt.Errorf("Generate(%s, %s): %w; want success", v2, a, err)
	}
	msg := []byte("conformance: tagged by one key")
	var f provFails
	tags := map[string][]byte{}
	for _, c := range []struct {
		ref provider.KeyRef
		h   provider.Handle
	}{{kA.ref, kA.g.Handle}, {kB.ref, kB.g.Handle}, {v2, g2.Handle}} {
		tag, err := s.p.MAC(ctx, c.ref, c.h, msg)
		if err != nil {
			f.addf("MAC(%s): %v; want success", c.ref, err)
			continue
		}
		for other, t := range tags {
			if bytes.Equal(t, tag) {
				f.addf("MAC(%s) and MAC(%s) give the same tag for the same message; want different keys", c.ref, other)
			}
		}
		tags[c.ref.String()] = tag
	}
	return f.err()
}

// checkMACKnown (needs WithKnownSecrets): every tag equals HMAC under the
// key's known secret, computed with crypto/hmac.
func (s *provSuite) checkMACKnown(ctx context.Context, a provider.Algorithm) error {
	if s.known == nil {
		return skipf("provider's private material is unknown; pass WithKnownSecrets to compare tags with crypto/hmac")
	}
	if _, ok := macHashes[a]; !ok {
		return skipf("the suite has no independent implementation of %q", a)
	}
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	k, err := s.keyFor(ctx, "mac", "known", a)
	if err != nil {
		return err
	}
	secrets, err := s.knownSecrets(k.ref)
	if err != nil {
		return err
	}
	var keys [][]byte
	for _, sec := range secrets {
		if len(sec) == sp.SecretSize {
			keys = append(keys, sec)
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("WithKnownSecrets(%s) gave no secret of %d bytes, the size of a %s key", k.ref, sp.SecretSize, a)
	}
	var f provFails
	for _, n := range provMACSizes {
		msg := pseudo("mac-known/"+string(a), n)
		tag, err := s.p.MAC(ctx, k.ref, k.g.Handle, msg)
		if err != nil {
			f.addf("MAC(%s, %d-byte message): %v; want success", k.ref, n, err)
			continue
		}
		match := false
		for _, key := range keys {
			match = match || bytes.Equal(tag, independentTag(a, key, msg))
		}
		if !match {
			f.addf("MAC(%s, %d-byte message): the tag is not crypto/hmac's under the key's known secret; want HMAC(key, message)", k.ref, n)
		}
	}
	return f.err()
}

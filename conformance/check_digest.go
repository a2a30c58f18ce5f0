package conformance

import (
	"bytes"
	"context"
	"crypto"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// provDigestSizes are the sizes of the messages whose digests are signed:
// empty, one byte, Sign's bound, one past it and 1 MiB (what digest
// signing is for).
var provDigestSizes = []int{0, 1, provider.MaxSignMessage, provider.MaxSignMessage + 1, 1 << 20}

// provDigestHashes are the hashes SignDigest may be asked for.
var provDigestHashes = []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}

// hashName names a hash for messages, whatever its value.
func hashName(h crypto.Hash) string {
	if n, ok := provider.HashName(h); ok {
		return n
	}
	return fmt.Sprintf("crypto.Hash(%d)", int(h))
}

// checkSignDigestVerify (algorithms with a hash): the signature of the
// digest of a message of 0, 1, MaxSignMessage, MaxSignMessage+1 and 1 MiB
// bytes has a size the algorithm allows and verifies independently, as a
// signature of that digest; it does not verify for another digest;
// SignDigest does not modify its input. For a message Sign accepts,
// Sign's signature verifies as one of the digest, and where signatures
// are deterministic (the scheme, or a Deterministic provider) SignDigest
// returns exactly Sign's bytes.
func (s *provSuite) checkSignDigestVerify(ctx context.Context, a provider.Algorithm) error {
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	if sp.Hash == 0 {
		return skipf("%s signs whole messages only (SignDigest/%s/Refused checks that it refuses digests)", a, a)
	}
	d, ok := digestVerifiers[a]
	if !ok {
		return skipf("the suite has no independent digest verifier for %q", a)
	}
	if d.hash != sp.Hash {
		return fmt.Errorf("suite: the registry signs %s digests for %s, the independent verifier %s", hashName(sp.Hash), a, hashName(d.hash))
	}
	k, err := s.keyFor(ctx, "sign-digest", "verify", a)
	if err != nil {
		return err
	}
	same := s.info.Deterministic || deterministicSchemes[a]
	var f provFails
	for _, n := range provDigestSizes {
		msg := pseudo("sign-digest/"+string(a), n)
		digest := digestOf(sp.Hash, msg)
		orig := bytes.Clone(digest)
		what := fmt.Sprintf("SignDigest(%s, %s digest of a %d-byte message)", k.ref, hashName(sp.Hash), n)
		sig, err := s.p.SignDigest(ctx, k.ref, k.g.Handle, sp.Hash, digest)
		if err != nil {
			f.addf("%s: %v; want success", what, err)
			continue
		}
		if !bytes.Equal(digest, orig) {
			f.addf("%s modified the digest", what)
		}
		if !sp.SignatureSizeOK(len(sig)) {
			f.addf("%s: signature is %d bytes, want %s", what, len(sig), sizeWant(sp.SignatureSize, sp.SignatureVaries))
		}
		if !d.verify(k.g.PublicKey, digest, sig) {
			f.addf("%s: signature does not verify with the independent %s verifier; want valid", what, a)
		}
		other := bytes.Clone(digest)
		other[0] ^= 1
		if d.verify(k.g.PublicKey, other, sig) {
			f.addf("%s: signature also verifies for the digest with a bit flipped; want invalid", what)
		}
		if n > provider.MaxSignMessage {
			continue
		}
		msgSig, err := s.p.Sign(ctx, k.ref, k.g.Handle, msg)
		switch {
		case err != nil:
			f.addf("Sign(%s, the %d-byte message): %v; want success", k.ref, n, err)
		case !d.verify(k.g.PublicKey, digest, msgSig):
			f.addf("Sign(%s, the %d-byte message): signature does not verify as a signature of its %s digest; want valid", k.ref, n, hashName(sp.Hash))
		case same && !bytes.Equal(msgSig, sig):
			f.addf("%s differs from Sign of the message; want the same bytes (%s)", what, sameWhy(s.info.Deterministic))
		}
	}
	return f.err()
}

// checkSignDigestRefused: an algorithm that signs whole messages only
// (Ed25519, Ed448, ML-DSA) refuses a well-formed digest of every hash
// with ErrPermission; one that signs digests refuses, with ErrInvalid, a
// digest of another hash (of that hash's size), a digest of its own hash
// one byte short, one byte long, empty or nil, and hashes SignDigest
// never takes (MD5, SHA-1, SHA3-256, the zero Hash, an undefined one).
// Never any output.
func (s *provSuite) checkSignDigestRefused(ctx context.Context, a provider.Algorithm) error {
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	k, err := s.keyFor(ctx, "sign-digest", "refused", a)
	if err != nil {
		return err
	}
	call := func(h crypto.Hash, digest []byte) ([]byte, error) {
		return s.p.SignDigest(ctx, k.ref, k.g.Handle, h, digest)
	}
	var f provFails
	if sp.Hash == 0 {
		for _, h := range provDigestHashes {
			sig, err := call(h, digestOf(h, provKeyMsg))
			f.add(wantCode(fmt.Sprintf("SignDigest(%s, a %s digest) of an algorithm that signs whole messages only", k.ref, hashName(h)), err, provider.EPERM, sig))
		}
		return f.err()
	}
	for _, h := range provDigestHashes {
		if h == sp.Hash {
			continue
		}
		sig, err := call(h, digestOf(h, provKeyMsg))
		f.add(wantCode(fmt.Sprintf("SignDigest(%s, a %s digest; the algorithm signs %s)", k.ref, hashName(h), hashName(sp.Hash)), err, provider.EINVAL, sig))
	}
	good := digestOf(sp.Hash, provKeyMsg)
	for _, c := range []struct {
		what   string
		digest []byte
	}{
		{"one byte short", good[:len(good)-1]},
		{"one byte long", append(bytes.Clone(good), 0)},
		{"empty", []byte{}},
		{"nil", nil},
		{"of MaxDigest+1 bytes", pseudo("digest/long", provider.MaxDigest+1)},
	} {
		sig, err := call(sp.Hash, c.digest)
		f.add(wantCode(fmt.Sprintf("SignDigest(%s, a %s digest %s)", k.ref, hashName(sp.Hash), c.what), err, provider.EINVAL, sig))
	}
	for _, c := range []struct {
		h crypto.Hash
		n int
	}{
		{crypto.MD5, 16}, {crypto.SHA1, 20}, {crypto.SHA3_256, 32}, {crypto.SHA512_256, 32},
		{0, len(good)}, {crypto.Hash(200), len(good)},
	} {
		sig, err := call(c.h, pseudo("digest/other-hash", c.n))
		f.add(wantCode(fmt.Sprintf("SignDigest(%s, hash %s, %d bytes)", k.ref, hashName(c.h), c.n), err, provider.EINVAL, sig))
	}
	return f.err()
}

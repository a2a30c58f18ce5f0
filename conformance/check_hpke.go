package conformance

import (
	"bytes"
	"context"
	"crypto/hpke"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// hpkeSuite is an HPKE algorithm's suite as RFC 9180 (and
// draft-ietf-hpke-pq for X-Wing) numbers it, written out here rather than
// read from core/alg, so that a registry with a wrong identifier fails.
type hpkeSuite struct{ kem, kdf, aead uint16 }

// hpkeSuites are the suites of the HPKE algorithms the suite knows.
var hpkeSuites = map[provider.Algorithm]hpkeSuite{
	provider.HPKEX25519:         {0x0020, 0x0001, 0x0003}, // DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
	provider.HPKEP256:           {0x0010, 0x0001, 0x0001}, // DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM
	provider.HPKEMLKEM768X25519: {0x647a, 0x0001, 0x0002}, // MLKEM768-X25519, HKDF-SHA256, AES-256-GCM
}

// hpkeParts returns crypto/hpke's KEM, KDF and AEAD of s.
func hpkeParts(s hpkeSuite) (hpke.KEM, hpke.KDF, hpke.AEAD, error) {
	kem, err := hpke.NewKEM(s.kem)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("suite: crypto/hpke KEM %#04x: %w", s.kem, err)
	}
	kdf, err := hpke.NewKDF(s.kdf)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("suite: crypto/hpke KDF %#04x: %w", s.kdf, err)
	}
	aead, err := hpke.NewAEAD(s.aead)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("suite: crypto/hpke AEAD %#04x: %w", s.aead, err)
	}
	return kem, kdf, aead, nil
}

// hpkeSealWith seals msg to the serialized public key pub with Go's
// crypto/hpke in base mode, as any sender would: the suite's own
// implementation, independent of keystored.
func hpkeSealWith(s hpkeSuite, pub, info, aad, msg []byte) (enc, ct []byte, err error) {
	kem, kdf, aead, err := hpkeParts(s)
	if err != nil {
		return nil, nil, err
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("the public key does not parse with crypto/hpke: %w", err)
	}
	enc, snd, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		return nil, nil, fmt.Errorf("crypto/hpke NewSender: %w", err)
	}
	ct, err = snd.Seal(aad, msg)
	if err != nil {
		return nil, nil, fmt.Errorf("crypto/hpke Seal: %w", err)
	}
	return enc, ct, nil
}

// hpkeSeal seals msg to pub, a public key of the HPKE algorithm a; a skip
// when the suite does not know a.
func hpkeSeal(a provider.Algorithm, pub, info, aad, msg []byte) (enc, ct []byte, err error) {
	s, ok := hpkeSuites[a]
	if !ok {
		return nil, nil, skipf("the suite has no independent HPKE implementation of %q", a)
	}
	return hpkeSealWith(s, pub, info, aad, msg)
}

// independentHPKEPublicKey reports whether pub parses with crypto/hpke as
// a public key of a's KEM; ok is false when the suite does not know a.
func independentHPKEPublicKey(a provider.Algorithm, pub []byte) (valid, ok bool) {
	s, known := hpkeSuites[a]
	if !known {
		return false, false
	}
	kem, err := hpke.NewKEM(s.kem)
	if err != nil {
		return false, true
	}
	_, err = kem.NewPublicKey(pub)
	return err == nil, true
}

// provHPKEMessage is one message the suite sealed to an HPKE key.
type provHPKEMessage struct {
	enc, ct, info, aad, pt []byte
}

// sealTo seals pt to k's public key under info and aad.
func (s *provSuite) sealTo(k *provKey, pt, info, aad []byte) (provHPKEMessage, error) {
	enc, ct, err := hpkeSeal(k.ref.Algorithm, k.g.PublicKey, info, aad, pt)
	if err != nil {
		return provHPKEMessage{}, fmt.Errorf("sealing to %s with crypto/hpke: %w", k.ref, err)
	}
	return provHPKEMessage{enc: enc, ct: ct, info: info, aad: aad, pt: pt}, nil
}

// decrypts checks that Decrypt(ref, h) of m gives m.pt and changes none
// of its inputs.
func (s *provSuite) decrypts(ctx context.Context, ref provider.KeyRef, h provider.Handle, m provHPKEMessage, what string) error {
	in := [][]byte{bytes.Clone(m.enc), bytes.Clone(m.ct), bytes.Clone(m.info), bytes.Clone(m.aad)}
	got, err := s.p.Decrypt(ctx, ref, h, m.enc, m.ct, m.info, m.aad)
	if err != nil {
		return fmt.Errorf("Decrypt(%s) of %s: %w; want success", ref, what, err)
	}
	if !bytes.Equal(got, m.pt) {
		return fmt.Errorf("Decrypt(%s) of %s: got %d bytes that differ from the %d sealed", ref, what, len(got), len(m.pt))
	}
	for i, b := range [][]byte{m.enc, m.ct, m.info, m.aad} {
		if !bytes.Equal(b, in[i]) {
			return fmt.Errorf("Decrypt(%s) of %s modified its %s", ref, what, []string{"enc", "ciphertext", "info", "AAD"}[i])
		}
	}
	return nil
}

// provHPKESizes are the plaintext sizes of the round trip: empty, one
// byte and the largest whose ciphertext is within MaxHPKECiphertext.
var provHPKESizes = []int{0, 1, provider.MaxHPKECiphertext - 16}

// checkDecryptRoundTrip: messages sealed with Go's crypto/hpke (base
// mode) to the public key Generate returned decrypt to their plaintext,
// for plaintexts of 0, 1 and the most bytes MaxHPKECiphertext allows,
// info of 0, 1 and MaxHPKEInfo bytes and AAD of 0, 1 and MaxAAD bytes;
// nil and empty info and AAD are the same; Decrypt modifies no input.
func (s *provSuite) checkDecryptRoundTrip(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "decrypt", "round-trip", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, n := range provHPKESizes {
		for _, l := range []int{0, 1, provider.MaxHPKEInfo} {
			for _, m := range []int{0, 1, provider.MaxAAD} {
				pt := pseudo(fmt.Sprintf("decrypt/pt/%s/%d", a, n), n)
				msg, err := s.sealTo(k, pt, pseudo("decrypt/info", l), pseudo("decrypt/aad", m))
				if err != nil {
					return err
				}
				f.add(s.decrypts(ctx, k.ref, k.g.Handle, msg, fmt.Sprintf("a %d-byte plaintext with %d bytes of info and %d of AAD", n, l, m)))
			}
		}
	}
	for _, c := range []struct{ sealInfo, sealAAD, info, aad []byte }{
		{nil, nil, []byte{}, []byte{}},
		{[]byte{}, []byte{}, nil, nil},
	} {
		msg, err := s.sealTo(k, []byte("nil or empty"), c.sealInfo, c.sealAAD)
		if err != nil {
			return err
		}
		msg.info, msg.aad = c.info, c.aad
		f.add(s.decrypts(ctx, k.ref, k.g.Handle, msg, "a message sealed with nil (empty) info and AAD, given empty (nil) ones"))
	}
	return f.err()
}

// checkDecryptTooLarge: an enc of MaxHPKEEnc+1 bytes, a ciphertext of
// MaxHPKECiphertext+1, info of MaxHPKEInfo+1 and AAD of MaxAAD+1 fail
// with ErrTooLarge and no output.
func (s *provSuite) checkDecryptTooLarge(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "decrypt", "too-large", a)
	if err != nil {
		return err
	}
	m, err := s.sealTo(k, []byte("x"), nil, nil)
	if err != nil {
		return err
	}
	var f provFails
	for _, c := range []struct {
		name               string
		enc, ct, info, aad []byte
	}{
		{"MaxHPKEEnc+1-byte enc", make([]byte, provider.MaxHPKEEnc+1), m.ct, nil, nil},
		{"MaxHPKECiphertext+1-byte ciphertext", m.enc, make([]byte, provider.MaxHPKECiphertext+1), nil, nil},
		{"MaxHPKEInfo+1-byte info", m.enc, m.ct, make([]byte, provider.MaxHPKEInfo+1), nil},
		{"MaxAAD+1-byte AAD", m.enc, m.ct, nil, make([]byte, provider.MaxAAD+1)},
	} {
		out, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, c.enc, c.ct, c.info, c.aad)
		f.add(wantCode(fmt.Sprintf("Decrypt(%s, %s)", k.ref, c.name), err, provider.EMSGSIZE, out))
	}
	return f.err()
}

// provHPKEInfo and provHPKEAAD are the context of the tampered messages.
var (
	provHPKEInfo = []byte("conformance-hpke-info")
	provHPKEAAD  = []byte("conformance-hpke-aad")
)

// checkDecryptTamper: a message with any one bit flipped (low or high) in
// any byte of its enc (sampled past provMaxEvery bytes) or ciphertext,
// or its enc or ciphertext truncated to any shorter length or extended,
// fails with ErrBadMessage and no output.
func (s *provSuite) checkDecryptTamper(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyFor(ctx, "decrypt", "tamper", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, n := range provTamperSizes {
		m, err := s.sealTo(k, pseudo("hpke-tamper", n), provHPKEInfo, provHPKEAAD)
		if err != nil {
			return err
		}
		if err := s.decrypts(ctx, k.ref, k.g.Handle, m, fmt.Sprintf("an unmodified %d-byte message", n)); err != nil {
			return err
		}
		try := func(what string, enc, ct []byte) {
			out, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, enc, ct, provHPKEInfo, provHPKEAAD)
			f.add(wantCode(fmt.Sprintf("Decrypt(%s) of a %d-byte message with %s", k.ref, n, what), err, provider.EBADMSG, out))
		}
		for _, i := range positions(len(m.enc)) {
			for _, mask := range []byte{0x01, 0x80} {
				bad := bytes.Clone(m.enc)
				bad[i] ^= mask
				try(fmt.Sprintf("enc byte %d xor %#x", i, mask), bad, m.ct)
			}
		}
		for i := range m.ct {
			for _, mask := range []byte{0x01, 0x80} {
				bad := bytes.Clone(m.ct)
				bad[i] ^= mask
				try(fmt.Sprintf("ciphertext byte %d xor %#x", i, mask), m.enc, bad)
			}
		}
		for _, l := range positions(len(m.enc)) {
			try(fmt.Sprintf("its enc truncated to %d bytes", l), bytes.Clone(m.enc[:l]), m.ct)
		}
		for l := 0; l < len(m.ct); l++ {
			try(fmt.Sprintf("its ciphertext truncated to %d bytes", l), m.enc, bytes.Clone(m.ct[:l]))
		}
		try("a zero byte appended to its enc", append(bytes.Clone(m.enc), 0), m.ct)
		try("a zero byte appended to its ciphertext", m.enc, append(bytes.Clone(m.ct), 0))
		try("its ciphertext appended to itself", m.enc, append(bytes.Clone(m.ct), m.ct...))
		try("its enc and ciphertext swapped", m.ct, m.enc)
	}
	return f.err()
}

// hpkeVariants returns v with its last byte dropped, a byte appended, a
// zero byte appended, each bit 0 of its bytes flipped, and empty.
func hpkeVariants(v []byte) []struct {
	name string
	b    []byte
} {
	out := []struct {
		name string
		b    []byte
	}{
		{"none", nil},
		{"without its last byte", bytes.Clone(v[:len(v)-1])},
		{"with a byte appended", append(bytes.Clone(v), 'x')},
		{"with a zero byte appended", append(bytes.Clone(v), 0)},
	}
	for i := range v {
		bad := bytes.Clone(v)
		bad[i] ^= 0x01
		out = append(out, struct {
			name string
			b    []byte
		}{fmt.Sprintf("with byte %d xor 0x01", i), bad})
	}
	return out
}

// checkDecryptWrongInfo: a message decrypted with an info other than the
// sender's (none, truncated, extended, any one bit flipped, the AAD in
// its place) or with info when it was sealed without, fails with
// ErrBadMessage and no output.
func (s *provSuite) checkDecryptWrongInfo(ctx context.Context, a provider.Algorithm) error {
	return s.checkDecryptWrongContext(ctx, a, "info")
}

// checkDecryptWrongAAD: likewise for the AAD.
func (s *provSuite) checkDecryptWrongAAD(ctx context.Context, a provider.Algorithm) error {
	return s.checkDecryptWrongContext(ctx, a, "AAD")
}

func (s *provSuite) checkDecryptWrongContext(ctx context.Context, a provider.Algorithm, which string) error {
	k, err := s.keyFor(ctx, "decrypt", "wrong-"+field2seg(which), a)
	if err != nil {
		return err
	}
	m, err := s.sealTo(k, []byte("conformance: the sender's context"), provHPKEInfo, provHPKEAAD)
	if err != nil {
		return err
	}
	if err := s.decrypts(ctx, k.ref, k.g.Handle, m, "an unmodified message"); err != nil {
		return err
	}
	var f provFails
	orig, swapped := provHPKEInfo, provHPKEAAD
	if which == "AAD" {
		orig, swapped = provHPKEAAD, provHPKEInfo
	}
	variants := append(hpkeVariants(orig), struct {
		name string
		b    []byte
	}{"the " + map[string]string{"info": "AAD", "AAD": "info"}[which] + " in its place", swapped})
	for _, v := range variants {
		info, aad := v.b, provHPKEAAD
		if which == "AAD" {
			info, aad = provHPKEInfo, v.b
		}
		out, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, m.enc, m.ct, info, aad)
		f.add(wantCode(fmt.Sprintf("Decrypt(%s) of a message with the %s %s", k.ref, which, v.name), err, provider.EBADMSG, out))
	}
	// Sealed without, decrypted with.
	bare, err := s.sealTo(k, []byte("no "+which), nil, nil)
	if err != nil {
		return err
	}
	for _, b := range [][]byte{{0}, []byte("x")} {
		info, aad := b, []byte(nil)
		if which == "AAD" {
			info, aad = nil, b
		}
		out, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, bare.enc, bare.ct, info, aad)
		f.add(wantCode(fmt.Sprintf("Decrypt(%s) of a message sealed without %s, with %s %q", k.ref, which, which, b), err, provider.EBADMSG, out))
	}
	return f.err()
}

// checkDecryptOtherKey: a message sealed to one key does not decrypt
// with another key, nor with another version of the same key
// (ErrBadMessage, no output); each decrypts its own.
func (s *provSuite) checkDecryptOtherKey(ctx context.Context, a provider.Algorithm) error {
	kA, kB, err := s.keyPair(ctx, "decrypt", "other-key", a)
	if err != nil {
		return err
	}
	v2 := kA.ref
	v2.Version = 2
	g2, err := s.p.Generate(ctx, v2)
	if err != nil {
		return fmt.Errorf("Generate(%s, %s): %w; want success", v2, a, err)
	}
	kV2 := &provKey{ref: v2, g: g2}
	keys := []*provKey{kA, kB, kV2}
	var f provFails
	for i, to := range keys {
		m, err := s.sealTo(to, []byte("conformance: for one key only"), provHPKEInfo, provHPKEAAD)
		if err != nil {
			return err
		}
		for j, by := range keys {
			if i == j {
				f.add(s.decrypts(ctx, by.ref, by.g.Handle, m, "a message sealed to its own public key"))
				continue
			}
			out, err := s.p.Decrypt(ctx, by.ref, by.g.Handle, m.enc, m.ct, m.info, m.aad)
			f.add(wantCode(fmt.Sprintf("Decrypt(%s) of a message sealed to %s", by.ref, to.ref), err, provider.EBADMSG, out))
		}
	}
	return f.err()
}

// checkDecryptSuite: the key decrypts with the announced suite and no
// other: a message sealed to its public key with another KDF or another
// AEAD of crypto/hpke fails with ErrBadMessage and no output.
func (s *provSuite) checkDecryptSuite(ctx context.Context, a provider.Algorithm) error {
	suite, ok := hpkeSuites[a]
	if !ok {
		return skipf("the suite has no independent HPKE implementation of %q", a)
	}
	k, err := s.keyFor(ctx, "decrypt", "suite", a)
	if err != nil {
		return err
	}
	var f provFails
	var others []hpkeSuite
	for _, kdf := range []uint16{0x0001, 0x0002, 0x0003} {
		if kdf != suite.kdf {
			others = append(others, hpkeSuite{suite.kem, kdf, suite.aead})
		}
	}
	for _, aead := range []uint16{0x0001, 0x0002, 0x0003} {
		if aead != suite.aead {
			others = append(others, hpkeSuite{suite.kem, suite.kdf, aead})
		}
	}
	for _, o := range others {
		enc, ct, err := hpkeSealWith(o, k.g.PublicKey, provHPKEInfo, provHPKEAAD, []byte("another suite"))
		if err != nil {
			return err
		}
		out, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, enc, ct, provHPKEInfo, provHPKEAAD)
		f.add(wantCode(fmt.Sprintf("Decrypt(%s) of a message sealed with KDF %#04x and AEAD %#04x instead of %#04x and %#04x", k.ref, o.kdf, o.aead, suite.kdf, suite.aead),
			err, provider.EBADMSG, out))
	}
	return f.err()
}

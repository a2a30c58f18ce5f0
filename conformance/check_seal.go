package conformance

import (
	"bytes"
	"context"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// provSealSizes and provAADSizes are the plaintext and AAD sizes of the
// round trip: empty, one byte and the bounds.
var (
	provSealSizes = []int{0, 1, provider.MaxSealPlaintext}
	provAADSizes  = []int{0, 1, provider.MaxAAD, provider.MaxProviderAAD}
)

// checkSealRoundTrip: for plaintexts of 0, 1 and MaxSealPlaintext bytes
// and AAD of 0, 1, MaxAAD and MaxProviderAAD bytes, Seal returns nonce ‖
// ciphertext ‖ tag of the algorithm's length, Open returns the plaintext,
// and neither modifies its inputs. A nil AAD and an empty one are the same.
func (s *provSuite) checkSealRoundTrip(ctx context.Context, a provider.Algorithm) error {
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	ref, g, err := s.generate(ctx, "seal", "round-trip", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, n := range provSealSizes {
		for _, m := range provAADSizes {
			pt := pseudo(fmt.Sprintf("seal/pt/%s/%d", a, n), n)
			aad := pseudo(fmt.Sprintf("seal/aad/%s/%d", a, m), m)
			f.add(s.roundTrip(ctx, ref, g.Handle, sp.NonceSize+n+sp.Overhead, pt, aad, aad))
		}
	}
	// nil and empty inputs are the same input.
	f.add(s.roundTrip(ctx, ref, g.Handle, sp.NonceSize+sp.Overhead, nil, nil, []byte{}))
	f.add(s.roundTrip(ctx, ref, g.Handle, sp.NonceSize+sp.Overhead, []byte{}, []byte{}, nil))
	return f.err()
}

// roundTrip seals pt with sealAAD, checks the length, opens with openAAD
// and checks the plaintext and that no input changed.
func (s *provSuite) roundTrip(ctx context.Context, ref provider.KeyRef, h provider.Handle, wantLen int, pt, sealAAD, openAAD []byte) error {
	what := fmt.Sprintf("Seal(%s, %d-byte plaintext, %d-byte AAD)", ref, len(pt), len(sealAAD))
	ptCopy, aadCopy := bytes.Clone(pt), bytes.Clone(sealAAD)
	sealed, err := s.p.Seal(ctx, ref, h, pt, sealAAD)
	if err != nil {
		return fmt.Errorf("%s: %w; want success", what, err)
	}
	if !bytes.Equal(pt, ptCopy) || !bytes.Equal(sealAAD, aadCopy) {
		return fmt.Errorf("%s modified its plaintext or AAD", what)
	}
	if len(sealed) != wantLen {
		return fmt.Errorf("%s: sealed blob is %d bytes, want %d (nonce + plaintext + tag)", what, len(sealed), wantLen)
	}
	sealedCopy := bytes.Clone(sealed)
	got, err := s.p.Open(ctx, ref, h, sealed, openAAD)
	if err != nil {
		return fmt.Errorf("Open of %s: %w; want success", what, err)
	}
	if !bytes.Equal(sealed, sealedCopy) {
		return fmt.Errorf("Open of %s modified the sealed blob", what)
	}
	if !bytes.Equal(got, pt) {
		return fmt.Errorf("Open of %s: got a %d-byte plaintext that differs from the %d bytes sealed", what, len(got), len(pt))
	}
	return nil
}

// checkSealTooLarge: a plaintext of MaxSealPlaintext+1 bytes, an AAD of
// MaxProviderAAD+1 bytes (Seal and Open) and a sealed blob of MaxSealed+1
// bytes fail with ErrTooLarge and no output.
func (s *provSuite) checkSealTooLarge(ctx context.Context, a provider.Algorithm) error {
	ref, g, err := s.generate(ctx, "seal", "too-large", a)
	if err != nil {
		return err
	}
	sealed, err := s.p.Seal(ctx, ref, g.Handle, []byte("x"), nil)
	if err != nil {
		return fmt.Errorf("Seal(%s): %w; want success", ref, err)
	}
	bigAAD := make([]byte, provider.MaxProviderAAD+1)
	var f provFails
	out, err := s.p.Seal(ctx, ref, g.Handle, make([]byte, provider.MaxSealPlaintext+1), nil)
	f.add(wantCode(fmt.Sprintf("Seal(%s, MaxSealPlaintext+1-byte plaintext)", ref), err, provider.EMSGSIZE, out))
	out, err = s.p.Seal(ctx, ref, g.Handle, []byte("x"), bigAAD)
	f.add(wantCode(fmt.Sprintf("Seal(%s, MaxProviderAAD+1-byte AAD)", ref), err, provider.EMSGSIZE, out))
	out, err = s.p.Open(ctx, ref, g.Handle, sealed, bigAAD)
	f.add(wantCode(fmt.Sprintf("Open(%s, MaxProviderAAD+1-byte AAD)", ref), err, provider.EMSGSIZE, out))
	out, err = s.p.Open(ctx, ref, g.Handle, make([]byte, provider.MaxSealed+1), nil)
	f.add(wantCode(fmt.Sprintf("Open(%s, MaxSealed+1-byte blob)", ref), err, provider.EMSGSIZE, out))
	return f.err()
}

// checkSealRandomized: unless the provider is Deterministic, sealing the
// same plaintext and AAD again gives a different blob with a different
// nonce, and every one of them opens.
func (s *provSuite) checkSealRandomized(ctx context.Context, a provider.Algorithm) error {
	if s.info.Deterministic {
		return skipf("provider announces Deterministic: equal inputs may give equal sealed bytes")
	}
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	ref, g, err := s.generate(ctx, "seal", "randomized", a)
	if err != nil {
		return err
	}
	const n = 8
	pt, aad := []byte("the same plaintext"), []byte("the same aad")
	var f provFails
	seen := map[string]int{}
	nonces := map[string]int{}
	for i := 0; i < n; i++ {
		sealed, err := s.p.Seal(ctx, ref, g.Handle, pt, aad)
		if err != nil {
			return fmt.Errorf("Seal(%s) #%d: %w; want success", ref, i, err)
		}
		if j, dup := seen[string(sealed)]; dup {
			f.addf("Seal(%s) #%d returned the same bytes as seal #%d of the same plaintext and AAD; want a fresh nonce each time", ref, i, j)
		}
		seen[string(sealed)] = i
		if len(sealed) >= sp.NonceSize {
			nonce := string(sealed[:sp.NonceSize])
			if j, dup := nonces[nonce]; dup {
				f.addf("Seal(%s) #%d reused the nonce of seal #%d; want a fresh nonce each time", ref, i, j)
			}
			nonces[nonce] = i
		}
		got, err := s.p.Open(ctx, ref, g.Handle, sealed, aad)
		if err != nil || !bytes.Equal(got, pt) {
			f.addf("Open(%s) of seal #%d: got %d bytes, error %v; want the plaintext", ref, i, len(got), err)
		}
	}
	return f.err()
}

// provTamperSizes are the plaintext sizes of the blobs the tampering
// checks modify: small, so that every byte and every length is tried.
var provTamperSizes = []int{0, 1, 33}

// provTamperAAD is the AAD of the tampered blobs.
var provTamperAAD = []byte("conformance-aad")

// tamperBlobs seals one blob per provTamperSizes entry and checks each
// opens unmodified.
func (s *provSuite) tamperBlobs(ctx context.Context, purpose string, a provider.Algorithm) (provider.KeyRef, provider.Generated, [][]byte, error) {
	ref, g, err := s.generate(ctx, "seal", purpose, a)
	if err != nil {
		return ref, g, nil, err
	}
	var blobs [][]byte
	for _, n := range provTamperSizes {
		pt := pseudo("tamper", n)
		sealed, err := s.p.Seal(ctx, ref, g.Handle, pt, provTamperAAD)
		if err != nil {
			return ref, g, nil, fmt.Errorf("Seal(%s, %d bytes): %w; want success", ref, n, err)
		}
		got, err := s.p.Open(ctx, ref, g.Handle, sealed, provTamperAAD)
		if err != nil || !bytes.Equal(got, pt) {
			return ref, g, nil, fmt.Errorf("Open(%s) of an unmodified %d-byte seal: got %d bytes, error %v; want the plaintext", ref, n, len(got), err)
		}
		blobs = append(blobs, sealed)
	}
	return ref, g, blobs, nil
}

// byteClass names the part of nonce ‖ ciphertext ‖ tag that byte i is in.
func byteClass(i, size, nonce, tag int) string {
	switch {
	case i < nonce:
		return "nonce"
	case i >= size-tag:
		return "tag"
	}
	return "ciphertext"
}

// checkSealTamper: flipping any one bit (low or high) of any byte of a
// sealed blob (nonce, ciphertext or tag) makes Open fail with
// ErrBadMessage and no output.
func (s *provSuite) checkSealTamper(ctx context.Context, a provider.Algorithm) error {
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	ref, g, blobs, err := s.tamperBlobs(ctx, "tamper", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, blob := range blobs {
		for i := range blob {
			for _, mask := range []byte{0x01, 0x80} {
				bad := bytes.Clone(blob)
				bad[i] ^= mask
				out, err := s.p.Open(ctx, ref, g.Handle, bad, provTamperAAD)
				f.add(wantCode(fmt.Sprintf("Open(%s) of a %d-byte blob with %s byte %d xor %#x", ref, len(blob),
					byteClass(i, len(blob), sp.NonceSize, sp.Overhead), i, mask), err, provider.EBADMSG, out))
			}
		}
	}
	return f.err()
}

// checkSealTruncate: every proper prefix of a sealed blob, the empty one
// included, fails to open with ErrBadMessage and no output.
func (s *provSuite) checkSealTruncate(ctx context.Context, a provider.Algorithm) error {
	ref, g, blobs, err := s.tamperBlobs(ctx, "truncate", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, blob := range blobs {
		for n := 0; n < len(blob); n++ {
			out, err := s.p.Open(ctx, ref, g.Handle, bytes.Clone(blob[:n]), provTamperAAD)
			f.add(wantCode(fmt.Sprintf("Open(%s) of a %d-byte blob truncated to %d bytes", ref, len(blob), n), err, provider.EBADMSG, out))
		}
	}
	return f.err()
}

// checkSealExtend: a sealed blob with bytes appended or prepended, or two
// blobs concatenated, fails to open with ErrBadMessage and no output.
func (s *provSuite) checkSealExtend(ctx context.Context, a provider.Algorithm) error {
	ref, g, blobs, err := s.tamperBlobs(ctx, "extend", a)
	if err != nil {
		return err
	}
	var f provFails
	for _, blob := range blobs {
		for _, c := range []struct {
			name string
			b    []byte
		}{
			{"one zero byte appended", append(bytes.Clone(blob), 0)},
			{"16 bytes appended", append(bytes.Clone(blob), pseudo("extend", 16)...)},
			{"one zero byte prepended", append([]byte{0}, blob...)},
			{"itself appended", append(bytes.Clone(blob), blob...)},
		} {
			out, err := s.p.Open(ctx, ref, g.Handle, c.b, provTamperAAD)
			f.add(wantCode(fmt.Sprintf("Open(%s) of a %d-byte blob with %s", ref, len(blob), c.name), err, provider.EBADMSG, out))
		}
	}
	return f.err()
}

// checkSealWrongAAD: a blob opened with an AAD other than the one it was
// sealed with (missing, truncated, extended, any one bit flipped, or
// present when it was sealed without) fails with ErrBadMessage and no
// output.
func (s *provSuite) checkSealWrongAAD(ctx context.Context, a provider.Algorithm) error {
	ref, g, blobs, err := s.tamperBlobs(ctx, "wrong-aad", a)
	if err != nil {
		return err
	}
	type variant struct {
		name string
		aad  []byte
	}
	variants := []variant{
		{"no AAD", nil},
		{"the AAD without its last byte", bytes.Clone(provTamperAAD[:len(provTamperAAD)-1])},
		{"the AAD with a byte appended", append(bytes.Clone(provTamperAAD), 'x')},
		{"the AAD with a zero byte appended", append(bytes.Clone(provTamperAAD), 0)},
	}
	for i := range provTamperAAD {
		bad := bytes.Clone(provTamperAAD)
		bad[i] ^= 0x01
		variants = append(variants, variant{fmt.Sprintf("AAD byte %d xor 0x01", i), bad})
	}
	var f provFails
	for _, blob := range blobs {
		for _, v := range variants {
			out, err := s.p.Open(ctx, ref, g.Handle, blob, v.aad)
			f.add(wantCode(fmt.Sprintf("Open(%s) of a %d-byte blob with %s", ref, len(blob), v.name), err, provider.EBADMSG, out))
		}
	}
	// Sealed without AAD, opened with one.
	sealed, err := s.p.Seal(ctx, ref, g.Handle, []byte("no aad"), nil)
	if err != nil {
		return fmt.Errorf("Seal(%s, no AAD): %w; want success", ref, err)
	}
	for _, aad := range [][]byte{{0}, []byte("x")} {
		out, err := s.p.Open(ctx, ref, g.Handle, sealed, aad)
		f.add(wantCode(fmt.Sprintf("Open(%s) of a blob sealed without AAD, with AAD %q", ref, aad), err, provider.EBADMSG, out))
	}
	return f.err()
}

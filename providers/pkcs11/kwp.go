package pkcs11

import (
	"crypto/aes"
	"encoding/binary"

	"github.com/nexus-os/keystored/core/provider"
)

// kwpIV is the first half of RFC 5649's alternative initial value; the
// second half is the plaintext's length (32 bits, big-endian).
var kwpIV = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// maxKWP bounds what kwpWrap wraps: far more than any key's PKCS#8 DER
// (provider.MaxImportMaterial) and well within RFC 5649's 2^32 octets.
const maxKWP = 1 << 20

// kwpWrap is AES Key Wrap with Padding (RFC 5649; NIST SP 800-38F KWP)
// of plaintext under kek (16, 24 or 32 bytes): what CKM_AES_KEY_WRAP_PAD
// unwraps (PKCS#11 3.0 section 2.14.3). The output is 8 bytes longer
// than plaintext padded to a multiple of 8. Empty input and input over
// maxKWP are EINVAL.
func kwpWrap(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 || len(plaintext) > maxKWP {
		return nil, provider.Errorf(provider.EINVAL, "key wrap of %d bytes: 1 to %d allowed", len(plaintext), maxKWP)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "key wrap: %v", err)
	}
	n := (len(plaintext) + 7) / 8 // semiblocks of padded plaintext
	out := make([]byte, 8+8*n)
	copy(out, kwpIV[:])
	binary.BigEndian.PutUint32(out[4:8], uint32(len(plaintext)))
	copy(out[8:], plaintext) // the padding is out's zeros
	var b [16]byte
	defer clear(b[:])
	if n == 1 {
		// One semiblock: a single AES block of AIV ‖ P (RFC 5649 4.1).
		block.Encrypt(out, out)
		return out, nil
	}
	// RFC 3394 2.2.1 W with the alternative initial value as A; out
	// holds A ‖ R[1..n] throughout.
	for j := range 6 {
		for i := 1; i <= n; i++ {
			copy(b[:8], out[:8])
			copy(b[8:], out[8*i:8*i+8])
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(b[:8])^t)
			copy(out[8*i:8*i+8], b[8:])
		}
	}
	return out, nil
}

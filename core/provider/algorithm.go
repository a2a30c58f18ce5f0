package provider

import "strconv"

// Algorithm names a key algorithm. The set is closed: the values below are
// the names keystored knows; a registry (package core/alg) gives each its
// sizes and implementation. The zero Algorithm is invalid.
type Algorithm string

// The algorithms.
const (
	Ed25519           Algorithm = "ed25519"            // sign: RFC 8032 pure Ed25519
	Ed448             Algorithm = "ed448"              // sign: RFC 8032 pure Ed448, empty context
	MLDSA44           Algorithm = "ml-dsa-44"          // sign: FIPS 204, empty context
	MLDSA65           Algorithm = "ml-dsa-65"          // sign: FIPS 204, empty context
	MLDSA87           Algorithm = "ml-dsa-87"          // sign: FIPS 204, empty context
	XChaCha20Poly1305 Algorithm = "xchacha20-poly1305" // decrypt: 192-bit random nonce (the default)
	ChaCha20Poly1305  Algorithm = "chacha20-poly1305"  // decrypt: RFC 8439, 96-bit nonce
	AES256GCM         Algorithm = "aes-256-gcm"        // decrypt: 96-bit nonce
)

// String returns the algorithm name.
func (a Algorithm) String() string { return string(a) }

// Use is what a key may do. Each algorithm has exactly one use, fixed when
// the key is created; it never widens. The zero Use is invalid.
type Use uint8

// The uses.
const (
	_          Use = iota
	UseSign        // sign and verify
	UseDecrypt     // seal and unseal (AEAD)
)

// String returns "sign" or "decrypt".
func (u Use) String() string {
	switch u {
	case UseSign:
		return "sign"
	case UseDecrypt:
		return "decrypt"
	}
	return "invalid-use(" + strconv.Itoa(int(u)) + ")"
}

// Valid reports whether u is a defined use.
func (u Use) Valid() bool { return u == UseSign || u == UseDecrypt }

// ParseUse parses "sign" or "decrypt".
func ParseUse(s string) (Use, error) {
	switch s {
	case "sign":
		return UseSign, nil
	case "decrypt":
		return UseDecrypt, nil
	}
	if len(s) > MaxSegment {
		s = s[:MaxSegment]
	}
	return 0, Errorf(EINVAL, "use %q is not sign or decrypt", s)
}

// MarshalText implements encoding.TextMarshaler.
func (u Use) MarshalText() ([]byte, error) {
	if !u.Valid() {
		return nil, Errorf(EINVAL, "invalid use")
	}
	return []byte(u.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (u *Use) UnmarshalText(b []byte) error {
	v, err := ParseUse(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}

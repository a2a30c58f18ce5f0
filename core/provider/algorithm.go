package provider

import "strconv"

// Algorithm names a key algorithm. The set is closed: the values below are
// the names keystored knows; a registry (package core/alg) gives each its
// sizes and implementation. The zero Algorithm is invalid.
type Algorithm string

// The algorithms.
const (
	Ed25519           Algorithm = "ed25519"               // sign: RFC 8032 pure Ed25519
	Ed448             Algorithm = "ed448"                 // sign: RFC 8032 pure Ed448, empty context
	MLDSA44           Algorithm = "ml-dsa-44"             // sign: FIPS 204, empty context
	MLDSA65           Algorithm = "ml-dsa-65"             // sign: FIPS 204, empty context
	MLDSA87           Algorithm = "ml-dsa-87"             // sign: FIPS 204, empty context
	ECDSAP256         Algorithm = "ecdsa-p256-sha256"     // sign: ECDSA on P-256 over SHA-256, ASN.1 DER signatures
	ECDSAP384         Algorithm = "ecdsa-p384-sha384"     // sign: ECDSA on P-384 over SHA-384, ASN.1 DER signatures
	RSA2048PSS        Algorithm = "rsa-2048-pss-sha256"   // sign: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
	RSA3072PSS        Algorithm = "rsa-3072-pss-sha256"   // sign: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
	RSA4096PSS        Algorithm = "rsa-4096-pss-sha256"   // sign: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
	RSA2048PKCS1      Algorithm = "rsa-2048-pkcs1-sha256" // sign: RSASSA-PKCS1-v1_5, SHA-256
	RSA3072PKCS1      Algorithm = "rsa-3072-pkcs1-sha256" // sign: RSASSA-PKCS1-v1_5, SHA-256
	RSA4096PKCS1      Algorithm = "rsa-4096-pkcs1-sha256" // sign: RSASSA-PKCS1-v1_5, SHA-256
	Ed25519ph         Algorithm = "ed25519ph"             // sign: RFC 8032 Ed25519ph (SHA-512 prehash), empty context
	XChaCha20Poly1305 Algorithm = "xchacha20-poly1305"    // decrypt: 192-bit random nonce (the default)
	ChaCha20Poly1305  Algorithm = "chacha20-poly1305"     // decrypt: RFC 8439, 96-bit nonce
	AES256GCM         Algorithm = "aes-256-gcm"           // decrypt: 96-bit nonce
	HMACSHA256        Algorithm = "hmac-sha256"           // mac: HMAC-SHA-256, 32-byte key and tag
	HMACSHA384        Algorithm = "hmac-sha384"           // mac: HMAC-SHA-384, 48-byte key and tag
	HMACSHA512        Algorithm = "hmac-sha512"           // mac: HMAC-SHA-512, 64-byte key and tag

	// asymmetric-decrypt: HPKE (RFC 9180) base mode; senders encrypt to
	// the public key with any RFC 9180 implementation.
	HPKEX25519         Algorithm = "hpke-x25519-sha256-chacha20poly1305"  // DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
	HPKEP256           Algorithm = "hpke-p256-sha256-aes128gcm"           // DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM
	HPKEMLKEM768X25519 Algorithm = "hpke-mlkem768x25519-sha256-aes256gcm" // MLKEM768-X25519 (X-Wing), HKDF-SHA256, AES-256-GCM
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
	UseMAC         // mac and verify-mac (HMAC)
	// UseAsymmetricDecrypt: decrypt (HPKE) what senders encrypted to the
	// public key; the keystore never encrypts with it.
	UseAsymmetricDecrypt
)

// String returns "sign", "decrypt", "mac" or "asymmetric-decrypt".
func (u Use) String() string {
	switch u {
	case UseSign:
		return "sign"
	case UseDecrypt:
		return "decrypt"
	case UseMAC:
		return "mac"
	case UseAsymmetricDecrypt:
		return "asymmetric-decrypt"
	}
	return "invalid-use(" + strconv.Itoa(int(u)) + ")"
}

// Valid reports whether u is a defined use.
func (u Use) Valid() bool { return u >= UseSign && u <= UseAsymmetricDecrypt }

// ParseUse parses "sign", "decrypt", "mac" or "asymmetric-decrypt".
func ParseUse(s string) (Use, error) {
	switch s {
	case "sign":
		return UseSign, nil
	case "decrypt":
		return UseDecrypt, nil
	case "mac":
		return UseMAC, nil
	case "asymmetric-decrypt":
		return UseAsymmetricDecrypt, nil
	}
	if len(s) > MaxSegment {
		s = s[:MaxSegment]
	}
	return 0, Errorf(EINVAL, "use %q is not sign, decrypt, mac or asymmetric-decrypt", s)
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

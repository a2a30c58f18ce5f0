package provider

import (
	"context"
	"crypto"
)

// The checks every provider makes before any work, so that every provider
// (and the plugin wire layer on both sides) refuses the same inputs with
// the same codes and messages. Over a bound the result is EMSGSIZE.

// CheckContext returns an error wrapping ErrUnavailable, and ctx's own
// error, once ctx is done.
func CheckContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return Errorf(EUNAVAILABLE, "request cancelled: %w", err)
	}
	return nil
}

// CheckSign checks Sign's message against MaxSignMessage.
func CheckSign(msg []byte) error {
	if len(msg) > MaxSignMessage {
		return Errorf(EMSGSIZE, "message to sign is over %d bytes", MaxSignMessage)
	}
	return nil
}

// CheckSeal checks Seal's plaintext against MaxSealPlaintext and its
// associated data against MaxProviderAAD.
func CheckSeal(plaintext, aad []byte) error {
	if len(plaintext) > MaxSealPlaintext {
		return Errorf(EMSGSIZE, "plaintext is over %d bytes", MaxSealPlaintext)
	}
	return checkProviderAAD(aad)
}

// CheckOpen checks Open's sealed input against MaxSealed and its
// associated data against MaxProviderAAD.
func CheckOpen(sealed, aad []byte) error {
	if len(sealed) > MaxSealed {
		return Errorf(EMSGSIZE, "sealed message is over %d bytes", MaxSealed)
	}
	return checkProviderAAD(aad)
}

func checkProviderAAD(aad []byte) error {
	if len(aad) > MaxProviderAAD {
		return Errorf(EMSGSIZE, "associated data is over %d bytes", MaxProviderAAD)
	}
	return nil
}

// CheckMAC checks MAC's message against MaxMACMessage.
func CheckMAC(msg []byte) error {
	if len(msg) > MaxMACMessage {
		return Errorf(EMSGSIZE, "message to MAC is over %d bytes", MaxMACMessage)
	}
	return nil
}

// Digest hashes: the hashes whose digests SignDigest takes.
var digestHashes = [...]crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}

// CheckDigest checks a digest SignDigest is given: hash is SHA-256,
// SHA-384 or SHA-512 and digest is exactly its size (EINVAL otherwise).
func CheckDigest(hash crypto.Hash, digest []byte) error {
	name, ok := HashName(hash)
	if !ok {
		return Errorf(EINVAL, "digest hash must be sha256, sha384 or sha512")
	}
	if len(digest) != hash.Size() {
		return Errorf(EINVAL, "a %s digest is %d bytes, not %d", name, hash.Size(), len(digest))
	}
	return nil
}

// HashName returns the wire name of a digest hash ("sha256", "sha384",
// "sha512") and whether hash is one of them.
func HashName(hash crypto.Hash) (string, bool) {
	switch hash {
	case crypto.SHA256:
		return "sha256", true
	case crypto.SHA384:
		return "sha384", true
	case crypto.SHA512:
		return "sha512", true
	}
	return "", false
}

// ParseHash parses a digest hash's wire name: "sha256", "sha384" or
// "sha512" (EINVAL otherwise).
func ParseHash(s string) (crypto.Hash, error) {
	for _, h := range digestHashes {
		if n, _ := HashName(h); n == s {
			return h, nil
		}
	}
	if len(s) > MaxSegment {
		s = s[:MaxSegment]
	}
	return 0, Errorf(EINVAL, "digest hash %q is not sha256, sha384 or sha512", s)
}

// CheckDecrypt checks Decrypt's input: enc, ciphertext, info and aad
// against MaxHPKEEnc, MaxHPKECiphertext, MaxHPKEInfo and MaxAAD. The
// sizes a suite fixes (enc, the tag) are checked with the key's
// algorithm (core/alg Spec.CheckHPKE: EBADMSG).
func CheckDecrypt(enc, ciphertext, info, aad []byte) error {
	switch {
	case len(enc) > MaxHPKEEnc:
		return Errorf(EMSGSIZE, "HPKE enc over %d bytes", MaxHPKEEnc)
	case len(ciphertext) > MaxHPKECiphertext:
		return Errorf(EMSGSIZE, "HPKE ciphertext over %d bytes", MaxHPKECiphertext)
	case len(info) > MaxHPKEInfo:
		return Errorf(EMSGSIZE, "HPKE info over %d bytes", MaxHPKEInfo)
	case len(aad) > MaxAAD:
		return Errorf(EMSGSIZE, "AAD over %d bytes", MaxAAD)
	}
	return nil
}

// CheckImport checks Import's wrapped material: enc against MaxHPKEEnc,
// wrapped against MaxImportWrapped.
func CheckImport(enc, wrapped []byte) error {
	switch {
	case len(enc) > MaxHPKEEnc:
		return Errorf(EMSGSIZE, "HPKE enc over %d bytes", MaxHPKEEnc)
	case len(wrapped) > MaxImportWrapped:
		return Errorf(EMSGSIZE, "wrapped material over %d bytes", MaxImportWrapped)
	}
	return nil
}

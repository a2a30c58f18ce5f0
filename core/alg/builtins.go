package alg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/provider"
)

// Seal budgets. A 96-bit random nonce is safe for 2^32 seals under one key
// (NIST SP 800-38D; x/crypto's chacha20poly1305 doc); a 192-bit one for far
// more, capped at 2^48 (collision chance about 2^-97).
const (
	SealLimit96  = 1 << 32
	SealLimit192 = 1 << 48
)

// Builtins returns the specs of every built-in algorithm. IDs are stable
// and never reused: signatures from 1, AEADs from 16.
func Builtins() []Spec {
	return []Spec{
		{
			Name: provider.Ed25519, ID: 1, Use: provider.UseSign,
			SecretSize: ed25519.SeedSize, PublicKeySize: ed25519.PublicKeySize, SignatureSize: ed25519.SignatureSize,
			verify: func(pub, msg, sig []byte) bool { return ed25519.Verify(pub, msg, sig) },
			newSigner: func(seed []byte, _ bool) (signFunc, []byte, error) {
				k := ed25519.NewKeyFromSeed(seed)
				return func(msg []byte) ([]byte, error) { return ed25519.Sign(k, msg), nil },
					append([]byte(nil), k[32:]...), nil
			},
		},
		{
			Name: provider.Ed448, ID: 2, Use: provider.UseSign,
			SecretSize: ed448.SeedSize, PublicKeySize: ed448.PublicKeySize, SignatureSize: ed448.SignatureSize,
			verify: func(pub, msg, sig []byte) bool { return ed448.Verify(ed448.PublicKey(pub), msg, sig, "") },
			newSigner: func(seed []byte, _ bool) (signFunc, []byte, error) {
				k := ed448.NewKeyFromSeed(seed)
				pub, ok := k.Public().(ed448.PublicKey)
				if !ok {
					return nil, nil, provider.Errorf(provider.EIO, "ed448 public key has an unexpected type")
				}
				return func(msg []byte) ([]byte, error) { return ed448.Sign(k, msg, ""), nil },
					append([]byte(nil), pub...), nil
			},
		},
		{
			Name: provider.MLDSA44, ID: 3, Use: provider.UseSign,
			SecretSize: mldsa44.SeedSize, PublicKeySize: mldsa44.PublicKeySize, SignatureSize: mldsa44.SignatureSize,
			verify: func(pub, msg, sig []byte) bool {
				var pk mldsa44.PublicKey
				if pk.UnmarshalBinary(pub) != nil {
					return false
				}
				return mldsa44.Verify(&pk, msg, nil, sig)
			},
			newSigner: func(seed []byte, hedged bool) (signFunc, []byte, error) {
				var s [mldsa44.SeedSize]byte
				copy(s[:], seed)
				pk, sk := mldsa44.NewKeyFromSeed(&s)
				clear(s[:])
				return func(msg []byte) ([]byte, error) {
					sig := make([]byte, mldsa44.SignatureSize)
					if err := mldsa44.SignTo(sk, msg, nil, hedged, sig); err != nil {
						return nil, provider.Errorf(provider.EIO, "ml-dsa-44 sign failed: %w", err)
					}
					return sig, nil
				}, pk.Bytes(), nil
			},
		},
		{
			Name: provider.MLDSA65, ID: 4, Use: provider.UseSign,
			SecretSize: mldsa65.SeedSize, PublicKeySize: mldsa65.PublicKeySize, SignatureSize: mldsa65.SignatureSize,
			verify: func(pub, msg, sig []byte) bool {
				var pk mldsa65.PublicKey
				if pk.UnmarshalBinary(pub) != nil {
					return false
				}
				return mldsa65.Verify(&pk, msg, nil, sig)
			},
			newSigner: func(seed []byte, hedged bool) (signFunc, []byte, error) {
				var s [mldsa65.SeedSize]byte
				copy(s[:], seed)
				pk, sk := mldsa65.NewKeyFromSeed(&s)
				clear(s[:])
				return func(msg []byte) ([]byte, error) {
					sig := make([]byte, mldsa65.SignatureSize)
					if err := mldsa65.SignTo(sk, msg, nil, hedged, sig); err != nil {
						return nil, provider.Errorf(provider.EIO, "ml-dsa-65 sign failed: %w", err)
					}
					return sig, nil
				}, pk.Bytes(), nil
			},
		},
		{
			Name: provider.MLDSA87, ID: 5, Use: provider.UseSign,
			SecretSize: mldsa87.SeedSize, PublicKeySize: mldsa87.PublicKeySize, SignatureSize: mldsa87.SignatureSize,
			verify: func(pub, msg, sig []byte) bool {
				var pk mldsa87.PublicKey
				if pk.UnmarshalBinary(pub) != nil {
					return false
				}
				return mldsa87.Verify(&pk, msg, nil, sig)
			},
			newSigner: func(seed []byte, hedged bool) (signFunc, []byte, error) {
				var s [mldsa87.SeedSize]byte
				copy(s[:], seed)
				pk, sk := mldsa87.NewKeyFromSeed(&s)
				clear(s[:])
				return func(msg []byte) ([]byte, error) {
					sig := make([]byte, mldsa87.SignatureSize)
					if err := mldsa87.SignTo(sk, msg, nil, hedged, sig); err != nil {
						return nil, provider.Errorf(provider.EIO, "ml-dsa-87 sign failed: %w", err)
					}
					return sig, nil
				}, pk.Bytes(), nil
			},
		},
		{
			Name: provider.XChaCha20Poly1305, ID: 16, Use: provider.UseDecrypt,
			SecretSize: chacha20poly1305.KeySize, NonceSize: chacha20poly1305.NonceSizeX, Overhead: chacha20poly1305.Overhead,
			SealLimit: SealLimit192,
			newAEAD:   chacha20poly1305.NewX,
		},
		{
			Name: provider.ChaCha20Poly1305, ID: 17, Use: provider.UseDecrypt,
			SecretSize: chacha20poly1305.KeySize, NonceSize: chacha20poly1305.NonceSize, Overhead: chacha20poly1305.Overhead,
			SealLimit: SealLimit96,
			newAEAD:   chacha20poly1305.New,
		},
		{
			Name: provider.AES256GCM, ID: 18, Use: provider.UseDecrypt,
			SecretSize: 32, NonceSize: 12, Overhead: 16,
			SealLimit: SealLimit96,
			newAEAD: func(key []byte) (cipher.AEAD, error) {
				b, err := aes.NewCipher(key)
				if err != nil {
					return nil, err
				}
				return cipher.NewGCM(b)
			},
		},
	}
}

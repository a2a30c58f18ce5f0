// Package software is keystored's secure default provider: private keys
// come from crypto/rand and are kept at rest only wrapped under a 256-bit
// key-encryption key (KEK).
//
// # KEK sources
//
// Config names exactly one source of the KEK:
//
//   - KEKFile: a file holding the 32 raw KEK bytes. If the file does not
//     exist, New creates it from crypto/rand with mode 0600, atomically and
//     durably (a temporary file in the same directory, fsync, a hard link
//     to the final name that never replaces an existing file, fsync of the
//     directory). An existing file is never overwritten, and is refused if
//     it is a symlink, not a regular file, not exactly 32 bytes, readable
//     or writable by group or others (mode&0077 != 0), or owned by another
//     user. The parent directory must exist.
//   - KEK: the 32 KEK bytes themselves, from wherever the caller keeps them.
//   - Passphrase and ParamsFile: the KEK is Argon2id(passphrase, salt) with
//     time 3, memory 64 MiB, 4 threads, 32 bytes out and a random 16-byte
//     salt. ParamsFile (JSON, mode 0600, created durably on first use, with
//     the same checks as a KEK file afterwards) records the salt, the
//     parameters and a verifier, HMAC-SHA256(KEK, "keystored/kek-verifier/v1"),
//     so a wrong passphrase fails at New with EPERM "wrong passphrase"
//     instead of failing every unwrap later. The verifier lets whoever reads
//     the file test passphrase guesses offline at Argon2id's cost: choose a
//     strong passphrase.
//
// # Keys, handles, cache
//
// Every key's private material (a seed for signature algorithms, a key for
// AEADs) comes from crypto/rand; so do wrap and seal nonces. A handle is
// "KSW1" ‖ KEK ID (8) ‖ nonce (24) ‖ XChaCha20-Poly1305 of the material
// with "keystored/softkey/handle/v1" ‖ KeyRef.AppendBinary as associated
// data, so a handle presented under another key, version, algorithm, use or
// provider fails (EIO). ML-DSA signs hedged (randomized). Unwrapped keys
// are cached (CacheSize, default 1024) so a signature costs the signature
// only. docs/software-provider.md has the byte-level format.
//
// # Destroy and its limit
//
// For a software provider the key material IS the wrapped handle. Destroy
// forgets the cached key and refuses the handle (ENOENT) for as long as the
// provider runs; the core deletes the handle file. A copy of the handle in
// a backup still unwraps with the KEK: destroying keys for good
// (crypto-shredding) needs a KEK rotation, which this provider does not
// do yet.
//
// # Memory
//
// The provider clears the buffers it owns that hold private material
// (material read from a handle, Argon2id output, a KEK read from a file)
// once the keys are built. The cipher and signer objects keep their own
// copies for as long as the key is cached, and Go may have copied any of
// them (stack growth, registers): no further zeroing is promised.
package software

import (
	"crypto/rand"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/internal/softkey"
)

// Name is the provider name, part of every KeyRef this provider serves.
const Name = "software"

// Version is the provider's version, as Info reports it.
const Version = "1"

// Config configures New. Exactly one KEK source is set: KEKFile, KEK, or
// Passphrase together with ParamsFile.
type Config struct {
	// KEKFile is the path of a file holding the 32 raw KEK bytes; it is
	// created (mode 0600) if missing.
	KEKFile string
	// KEK is the 32-byte KEK itself. New does not keep or wipe this value.
	KEK secret.Bytes
	// Passphrase derives the KEK with Argon2id; it needs ParamsFile. At
	// most MaxPassphrase bytes.
	Passphrase secret.Bytes
	// ParamsFile is the path of the JSON file holding the Argon2id salt,
	// parameters and verifier; it is created (mode 0600) if missing.
	ParamsFile string
	// CacheSize bounds the number of unwrapped keys kept in memory; 0
	// means 1024.
	CacheSize int

	// kdf overrides the Argon2id parameters used when creating a
	// ParamsFile. Tests only: it is unexported so that no caller can
	// weaken the production parameters.
	kdf *kdfParams
}

// softProvider is the software provider: the shared engine under its name.
// It prints as "softkey(software)" under every verb.
type softProvider struct {
	*softkey.Engine
}

// New returns a software provider whose KEK comes from opts.
func New(opts Config) (provider.Provider, error) {
	kek, owned, err := loadKEK(opts)
	if err != nil {
		return nil, err
	}
	if owned {
		defer kek.Wipe()
	}
	reg := alg.Default()
	e, err := softkey.New(softkey.Config{
		Info: provider.Info{
			Name:          Name,
			Version:       Version,
			Secure:        true,
			Deterministic: false,
			Algorithms:    reg.Names(),
		},
		Registry:  reg,
		KEK:       kek,
		Source:    randSource{},
		Hedged:    true,
		CacheSize: opts.CacheSize,
	})
	if err != nil {
		return nil, err
	}
	return &softProvider{Engine: e}, nil
}

// loadKEK returns the KEK named by opts, and whether the caller owns (and
// must wipe) it.
func loadKEK(opts Config) (secret.Bytes, bool, error) {
	n := 0
	if opts.KEKFile != "" {
		n++
	}
	if !opts.KEK.IsZero() {
		n++
	}
	if !opts.Passphrase.IsZero() || opts.ParamsFile != "" {
		n++
	}
	if n != 1 {
		return secret.Bytes{}, false, provider.Errorf(provider.EINVAL,
			"software provider needs exactly one KEK source: KEKFile, KEK, or Passphrase with ParamsFile")
	}
	switch {
	case opts.KEKFile != "":
		kek, err := loadOrCreateKEKFile(opts.KEKFile)
		return kek, true, err
	case !opts.KEK.IsZero():
		if opts.KEK.Len() != softkey.KEKSize {
			return secret.Bytes{}, false, provider.Errorf(provider.EINVAL, "KEK must be %d bytes", softkey.KEKSize)
		}
		return opts.KEK, false, nil
	}
	kdf := defaultKDF
	if opts.kdf != nil {
		kdf = *opts.kdf
	}
	kek, err := passphraseKEK(opts.Passphrase, opts.ParamsFile, kdf)
	return kek, true, err
}

// randSource draws every key and nonce from crypto/rand.
type randSource struct{}

func (randSource) Material(_ provider.KeyRef, out []byte) error { return fill(out) }

func (randSource) WrapNonce(_ provider.KeyRef, out []byte) error { return fill(out) }

func (randSource) SealNonce(_ provider.KeyRef, _, _, out []byte) error { return fill(out) }

func fill(out []byte) error {
	if _, err := rand.Read(out); err != nil {
		return provider.Errorf(provider.EUNAVAILABLE, "crypto/rand failed: %w", err)
	}
	return nil
}

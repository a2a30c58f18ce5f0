// Package software is keystored's secure default provider: private keys
// come from crypto/rand and are kept at rest only wrapped under a 256-bit
// key-encryption key (KEK), so a handle is the wrapped key, bound to its
// KeyRef as associated data.
//
// [New] takes a [Config] naming exactly one KEK source: a KEK file
// (refused if it is a symlink, of another owner or readable by others),
// the KEK bytes, or a passphrase stretched with Argon2id with its salt and
// a verifier in a parameters file. A missing KEK file or parameters file
// is created (0600) only when [Config.Create] says so: a KEK is made only
// for a state that holds no keys, never silently in place of a lost one. Unwrapped
// keys are cached, so a signature costs the signature only; ML-DSA signs
// hedged.
//
// Destroy forgets the key while the provider runs, but a copy of a handle
// in a backup still unwraps with the KEK. docs/software-provider.md has
// the KEK sources, the handle format, the cache, the limit of Destroy and
// what is and is not promised about memory.
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
	// created (mode 0600) if missing and Create is set.
	KEKFile string
	// KEK is the 32-byte KEK itself. New does not keep or wipe this value.
	KEK secret.Bytes
	// Passphrase derives the KEK with Argon2id; it needs ParamsFile. At
	// most MaxPassphrase bytes.
	Passphrase secret.Bytes
	// ParamsFile is the path of the JSON file holding the Argon2id salt,
	// parameters and verifier; it is created (mode 0600) if missing and
	// Create is set.
	ParamsFile string
	// Create allows New to create a missing KEKFile (a new random KEK) or
	// ParamsFile (a new salt, so a new KEK). Set it only for a state that
	// holds no keys: a KEK made for a state with keys would leave every
	// key unusable ("wrong KEK"). Without it a missing file is ENOENT,
	// naming the path. An existing file is never overwritten either way.
	Create bool
	// CacheSize bounds the number of unwrapped keys kept in memory
	// (least recently used evicted first); 0 means
	// softkey's DefaultCacheSize (2^17), at most 2^20.
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
	var next secret.Bytes // a KEK file's pending rotation (kekrot.go)
	if opts.KEKFile != "" {
		var err error
		if next, err = loadNextKEK(opts.KEKFile); err != nil {
			return nil, err
		}
		defer next.Wipe()
	}
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
		Registry:    reg,
		KEK:         kek,
		NextKEK:     next,
		Source:      randSource{},
		Hedged:      true,
		AnnounceKEK: true,
		CacheSize:   opts.CacheSize,
	})
	if err != nil {
		return nil, err
	}
	if opts.KEKFile != "" {
		return &fileProvider{softProvider: softProvider{Engine: e}, path: opts.KEKFile}, nil
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
		kek, err := loadOrCreateKEKFile(opts.KEKFile, opts.Create)
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
	kek, err := passphraseKEK(opts.Passphrase, opts.ParamsFile, kdf, opts.Create)
	return kek, true, err
}

// randSource draws every key and nonce from crypto/rand, the one-time
// import wrapping keys and their handles' names included.
type randSource struct{}

func (randSource) Material(_ provider.KeyRef, out []byte) error { return fill(out) }

func (randSource) WrapNonce(_ provider.KeyRef, out []byte) error { return fill(out) }

func (randSource) SealNonce(_ provider.KeyRef, _, _, out []byte) error { return fill(out) }

func (randSource) ImportRandom(_ provider.KeyRef, out []byte) error { return fill(out) }

func fill(out []byte) error {
	if _, err := rand.Read(out); err != nil {
		return provider.Errorf(provider.EUNAVAILABLE, "crypto/rand failed: %w", err)
	}
	return nil
}

package conformance_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// memName is the example provider's name, part of every KeyRef it serves.
const memName = "memory"

// memAlgorithms are the algorithms it announces: one per use, and ECDSA
// for a signer of digests.
var memAlgorithms = []provider.Algorithm{provider.Ed25519, provider.ECDSAP256, provider.XChaCha20Poly1305, provider.HMACSHA256}

// memProvider is a complete provider that keeps its keys in process
// memory. A handle is a random name for an entry of a map, and the entry
// remembers the KeyRef it was made for, so a handle presented under any
// other KeyRef fails. The cryptography is core/alg's (the same code the
// software provider runs).
//
// Its keys vanish when the process exits, so a keystore's handles would
// dangle after a restart: it announces Secure false. Destroyed keys stay
// in the map as tombstones; a real provider bounds what it keeps.
type memProvider struct {
	reg  *alg.Registry
	mu   sync.Mutex
	keys map[string]*memKey // by handle
}

type memKey struct {
	ref    provider.KeyRef
	signer *alg.Signer // sign keys
	aead   *alg.AEAD   // decrypt keys
	mac    *alg.MAC    // mac keys
	gone   bool        // destroyed
}

func newMemProvider() provider.Provider {
	return &memProvider{reg: alg.Default(), keys: map[string]*memKey{}}
}

func (p *memProvider) Info(context.Context) (provider.Info, error) {
	return provider.Info{Name: memName, Version: "1", Algorithms: slices.Clone(memAlgorithms)}, nil
}

// check is every method's preamble: a live context, a well-formed ref of
// this provider for an announced algorithm of the ref's use.
func (p *memProvider) check(ctx context.Context, ref provider.KeyRef) (*alg.Spec, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, err
	}
	if err := ref.Check(); err != nil {
		return nil, err
	}
	if ref.Provider != memName {
		return nil, provider.Errorf(provider.EINVAL, "key ref names provider %q, not %q", ref.Provider, memName)
	}
	if !slices.Contains(memAlgorithms, ref.Algorithm) {
		return nil, provider.Errorf(provider.ENOTSUP, "algorithm not supported")
	}
	spec, err := p.reg.Lookup(ref.Algorithm)
	if err != nil {
		return nil, err
	}
	if spec.Use != ref.Use {
		return nil, provider.Errorf(provider.EPERM, "%s is not a %s algorithm", string(ref.Algorithm), ref.Use)
	}
	return spec, nil
}

// key returns a copy of the live key behind h, for an operation of use.
func (p *memProvider) key(ctx context.Context, ref provider.KeyRef, h provider.Handle, use provider.Use) (memKey, error) {
	if _, err := p.check(ctx, ref); err != nil {
		return memKey{}, err
	}
	if ref.Use != use {
		return memKey{}, provider.Errorf(provider.EPERM, "a %s key cannot be used to %s", ref.Use, use)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.keys[string(h)]
	switch {
	case !ok || k.ref != ref:
		return memKey{}, provider.Errorf(provider.EIO, "handle was not made for %s", ref)
	case k.gone:
		return memKey{}, provider.Errorf(provider.ENOENT, "key %s was destroyed", ref)
	}
	return *k, nil
}

func (p *memProvider) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	spec, err := p.check(ctx, ref)
	if err != nil {
		return provider.Generated{}, err
	}
	random := make([]byte, spec.RandomSize)
	defer clear(random)
	h := make([]byte, 16)
	if _, err := rand.Read(random); err != nil {
		return provider.Generated{}, provider.Errorf(provider.EIO, "random: %w", err)
	}
	if _, err := rand.Read(h); err != nil {
		return provider.Generated{}, provider.Errorf(provider.EIO, "random: %w", err)
	}
	secret, err := spec.NewMaterial(random, false) // a valid ECDSA scalar, an RSA key, or random itself
	if err != nil {
		return provider.Generated{}, err
	}
	defer clear(secret)
	k := &memKey{ref: ref}
	var pub []byte
	switch spec.Use {
	case provider.UseSign:
		if k.signer, err = spec.NewSigner(secret, true); err != nil {
			return provider.Generated{}, err
		}
		pub = k.signer.PublicKey()
	case provider.UseDecrypt:
		k.aead, err = spec.NewAEAD(secret)
	case provider.UseMAC:
		k.mac, err = spec.NewMAC(secret)
	}
	if err != nil {
		return provider.Generated{}, err
	}
	p.mu.Lock()
	p.keys[string(h)] = k
	p.mu.Unlock()
	return provider.Generated{PublicKey: pub, Handle: h}, nil
}

func (p *memProvider) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	k, err := p.key(ctx, ref, h, provider.UseSign)
	if err != nil {
		return nil, err
	}
	if err := provider.CheckSign(msg); err != nil {
		return nil, err
	}
	return k.signer.Sign(msg)
}

// SignDigest signs a digest the caller computed; the signer refuses a
// digest of another hash or size (EINVAL) and an algorithm that signs
// whole messages only (EPERM).
func (p *memProvider) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	k, err := p.key(ctx, ref, h, provider.UseSign)
	if err != nil {
		return nil, err
	}
	return k.signer.SignDigest(hash, digest)
}

func (p *memProvider) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	k, err := p.key(ctx, ref, h, provider.UseMAC)
	if err != nil {
		return nil, err
	}
	return k.mac.Tag(msg) // EMSGSIZE over MaxMACMessage
}

func (p *memProvider) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	k, err := p.key(ctx, ref, h, provider.UseDecrypt)
	if err != nil {
		return nil, err
	}
	if err := provider.CheckSeal(plaintext, aad); err != nil {
		return nil, err
	}
	return k.aead.SealTo(nil, plaintext, aad, func(nonce []byte) error {
		_, err := rand.Read(nonce)
		return err
	})
}

func (p *memProvider) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	k, err := p.key(ctx, ref, h, provider.UseDecrypt)
	if err != nil {
		return nil, err
	}
	if err := provider.CheckOpen(sealed, aad); err != nil {
		return nil, err
	}
	return k.aead.Open(nil, sealed, aad)
}

func (p *memProvider) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	if _, err := p.check(ctx, ref); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.keys[string(h)]
	if !ok || k.ref != ref {
		return provider.Errorf(provider.EIO, "handle was not made for %s", ref)
	}
	k.gone, k.signer, k.aead, k.mac = true, nil, nil, nil // again: still gone
	return nil
}

// testMemProvider is the test a provider's package adds, there named
// TestConformance: the provider suite and the keystore suite over fresh
// providers. (It is not a Test function here so that this file is shown
// whole; TestMemProvider runs it.)
func testMemProvider(t *testing.T) {
	newProvider := func(*testing.T) provider.Provider { return newMemProvider() }
	t.Run("Provider", func(t *testing.T) { conformance.Run(t, newProvider) })
	t.Run("Keystore", func(t *testing.T) { conformance.RunKeystore(t, newProvider) })
}

// This example is a whole provider, memProvider, and the test that proves
// it keeps the contract, testMemProvider. Below, the provider is used as
// the keystore core uses it.
func ExampleRun() {
	ctx := context.Background()
	p := newMemProvider()
	id, err := provider.NewKeyID("example", "signing", "release")
	if err != nil {
		fmt.Println(err)
		return
	}
	ref := provider.KeyRef{ID: id, Version: 1, Algorithm: provider.Ed25519, Use: provider.UseSign, Provider: memName}
	g, err := p.Generate(ctx, ref)
	if err != nil {
		fmt.Println(err)
		return
	}
	sig, err := p.Sign(ctx, ref, g.Handle, []byte("release v1.0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("verifies:", ed25519.Verify(g.PublicKey, []byte("release v1.0"), sig))

	other := ref
	other.Version = 2 // the handle was made for version 1
	_, err = p.Sign(ctx, other, g.Handle, []byte("release v1.0"))
	fmt.Println("under another ref:", err)
	// Output:
	// verifies: true
	// under another ref: handle was not made for example/signing/release@2
}

// Decrypt: memProvider announces no HPKE algorithm, so its keys are all
// of another use (EPERM), after the preamble's checks (a ref of an
// HPKE algorithm it does not announce is ENOTSUP there).
func (p *memProvider) Decrypt(ctx context.Context, ref provider.KeyRef, _ provider.Handle, _, _, _, _ []byte) ([]byte, error) {
	if _, err := p.check(ctx, ref); err != nil {
		return nil, err
	}
	return nil, provider.Errorf(provider.EPERM, "a %s key cannot decrypt HPKE messages", ref.Use)
}

// NewImportKey and Import: memProvider cannot import; the suite accepts
// a consistent ENOTSUP.
func (*memProvider) NewImportKey(context.Context, provider.KeyRef) (provider.Generated, error) {
	return provider.Generated{}, provider.Errorf(provider.ENOTSUP, "memProvider: no import")
}

func (*memProvider) Import(context.Context, provider.KeyRef, provider.KeyRef, provider.Handle, []byte, []byte) (provider.Generated, error) {
	return provider.Generated{}, provider.Errorf(provider.ENOTSUP, "memProvider: no import")
}

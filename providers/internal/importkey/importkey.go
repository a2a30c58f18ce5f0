// Package importkey holds the one-time import wrapping keys of an
// in-process provider (provider.Provider's NewImportKey and Import), shared
// by providers/software, providers/testseed and providers/pkcs11.
//
// A wrapping key is an HPKE key pair whose private half lives only in this
// table, in the provider's memory: its handle is a random name ("KSI1" and
// 16 bytes), never the key, so nothing on disk or in the core can open
// material sealed to it. A key is spent by Open whatever the outcome,
// forgotten by Forget, and the table holds at most provider.MaxImportKeys,
// forgetting the oldest past that. A provider restart forgets them all.
package importkey

import (
	"bytes"
	"context"
	"sync"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// handlePrefix starts every import wrapping key handle.
const handlePrefix = "KSI1"

// handleLen is the length of a handle: the prefix and 16 random bytes.
const handleLen = len(handlePrefix) + 16

// IsHandle reports whether h is an import wrapping key's handle (as
// opposed to a key version's), so Destroy can route it to Forget.
func IsHandle(h provider.Handle) bool {
	return len(h) == handleLen && bytes.HasPrefix(h, []byte(handlePrefix))
}

// Random fills out with randomness for the wrapping key of wrap: the
// key's material (32 bytes) or its handle's name (16 bytes). A secure
// provider reads crypto/rand; the INSECURE deterministic one derives it.
type Random func(wrap provider.KeyRef, out []byte) error

type entry struct {
	wrap provider.KeyRef
	dec  *alg.Decrypter
}

// Table is a provider's set of import wrapping keys. It is safe for
// concurrent use.
type Table struct {
	reg    *alg.Registry
	random Random
	max    int

	mu    sync.Mutex
	keys  map[string]*entry
	order []string // names, oldest first; may hold names already gone
}

// New returns an empty table drawing randomness from random.
func New(reg *alg.Registry, random Random) *Table {
	return &Table{reg: reg, random: random, max: provider.MaxImportKeys, keys: map[string]*entry{}}
}

// New makes a wrapping key for wrap (an asymmetric-decrypt KeyRef; its
// algorithm the HPKE suite) and returns its public key and handle.
func (t *Table) New(ctx context.Context, wrap provider.KeyRef) (provider.Generated, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return provider.Generated{}, err
	}
	if err := wrap.Check(); err != nil {
		return provider.Generated{}, err
	}
	spec, err := t.reg.Lookup(wrap.Algorithm)
	if err != nil {
		return provider.Generated{}, err
	}
	if spec.Use != provider.UseAsymmetricDecrypt || wrap.Use != provider.UseAsymmetricDecrypt {
		return provider.Generated{}, provider.Errorf(provider.EINVAL, "an import wrapping key is an HPKE (asymmetric-decrypt) key, not %s", string(spec.Name))
	}
	random := make([]byte, spec.RandomSize)
	defer clear(random)
	if err := t.random(wrap, random); err != nil {
		return provider.Generated{}, provider.Errorf(provider.EIO, "random source failed: %v", err)
	}
	material, err := spec.NewMaterial(random, false)
	if err != nil {
		return provider.Generated{}, err
	}
	dec, err := spec.NewDecrypter(material)
	clear(material)
	if err != nil {
		return provider.Generated{}, err
	}
	h := make(provider.Handle, handleLen)
	copy(h, handlePrefix)
	if err := t.random(wrap, h[len(handlePrefix):]); err != nil {
		return provider.Generated{}, provider.Errorf(provider.EIO, "random source failed: %v", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.keys[string(h)]; dup {
		return provider.Generated{}, provider.Errorf(provider.EIO, "import wrapping key name repeated; the random source is broken")
	}
	t.keys[string(h)] = &entry{wrap: wrap, dec: dec}
	t.order = append(t.order, string(h))
	for len(t.keys) > t.max || len(t.order) > 2*t.max {
		delete(t.keys, t.order[0])
		t.order = t.order[1:]
	}
	return provider.Generated{PublicKey: dec.PublicKey(), Handle: h}, nil
}

// take removes and returns the key named h, which must have been made for
// wrap: ENOENT for one that is unknown, spent or forgotten, or made for
// another KeyRef (the handle names nothing else).
func (t *Table) take(wrap provider.KeyRef, h provider.Handle) (*entry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.keys[string(h)]
	if !ok || e.wrap != wrap {
		return nil, provider.Errorf(provider.ENOENT, "no such import wrapping key (spent, expired or forgotten); get new import parameters")
	}
	delete(t.keys, string(h))
	return e, nil
}

// Open spends the wrapping key wrap/wh and opens the material sealed to
// it for ref (HPKE base mode, info provider.ImportInfo(ref.ID,
// ref.Algorithm), empty aad), then converts it with ref's algorithm
// (alg.Spec.ImportMaterial). It returns the provider's private material
// (the caller clears it) and the public key.
func (t *Table) Open(ctx context.Context, ref, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (material, pub []byte, err error) {
	if err := provider.CheckContext(ctx); err != nil {
		return nil, nil, err
	}
	if err := ref.Check(); err != nil {
		return nil, nil, err
	}
	spec, err := t.reg.Lookup(ref.Algorithm)
	if err != nil {
		return nil, nil, err
	}
	if spec.Use != ref.Use {
		return nil, nil, provider.Errorf(provider.EINVAL, "key ref %s has use %s, not its algorithm's %s", ref, ref.Use, spec.Use)
	}
	if !spec.Importable() {
		return nil, nil, provider.Errorf(provider.ENOTSUP, "%s keys cannot be imported", string(spec.Name))
	}
	if len(wh) > provider.MaxHandle || len(enc) > provider.MaxHPKEEnc {
		return nil, nil, provider.Errorf(provider.EMSGSIZE, "import handle or enc over its bound")
	}
	if len(wrapped) > provider.MaxImportWrapped {
		return nil, nil, provider.Errorf(provider.EMSGSIZE, "wrapped material over %d bytes", provider.MaxImportWrapped)
	}
	e, err := t.take(wrap, wh)
	if err != nil {
		return nil, nil, err
	}
	pt, err := e.dec.Decrypt(enc, wrapped, provider.ImportInfo(ref.ID, ref.Algorithm), nil)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pt)
	return spec.ImportMaterial(pt)
}

// Forget drops the wrapping key wrap/wh if the table holds it; forgetting
// one that is gone succeeds (Destroy's contract).
func (t *Table) Forget(wrap provider.KeyRef, wh provider.Handle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.keys[string(wh)]; ok && e.wrap == wrap {
		delete(t.keys, string(wh))
	}
}

// Len returns how many wrapping keys the table holds.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

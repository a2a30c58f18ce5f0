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
	"fmt"
	"strconv"
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
// key's material (32 bytes) or its handle's name (16 bytes), one call
// for each. A secure provider reads crypto/rand; the INSECURE
// deterministic one derives it, and must then make every call's output
// independent of every other's (a counter in the derivation), or a
// handle's name could give away the material of the same key.
type Random func(wrap provider.KeyRef, out []byte) error

type entry struct {
	wrap provider.KeyRef
	dec  *alg.Decrypter
}

// Table is a provider's set of import wrapping keys. It is safe for
// concurrent use, and prints as its size only.
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
	for len(t.keys) > t.max {
		delete(t.keys, t.order[0])
		t.order = t.order[1:]
	}
	if len(t.order) > 2*t.max {
		// Mostly names of spent keys: drop those, keeping the live ones
		// in order. (Popping the oldest name here would forget a live key
		// while the table is far from full, because others were spent.)
		live := make([]string, 0, len(t.keys))
		for _, n := range t.order {
			if _, ok := t.keys[n]; ok {
				live = append(live, n)
			}
		}
		t.order = live
	}
	return provider.Generated{PublicKey: dec.PublicKey(), Handle: h}, nil
}

// Key is a wrapping key Take has spent: it opens one import's material,
// and the table no longer holds it.
type Key struct {
	dec *alg.Decrypter
}

// Take spends the wrapping key wrap/wh and returns it: ENOENT for one
// that is unknown, spent or forgotten, or made for another KeyRef (the
// handle names nothing else). A provider's Import calls it before any
// other check, so that the key is spent whatever the outcome.
func (t *Table) Take(wrap provider.KeyRef, wh provider.Handle) (*Key, error) {
	if !IsHandle(wh) {
		return nil, errNoKey
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.keys[string(wh)]
	if !ok || e.wrap != wrap {
		return nil, errNoKey
	}
	delete(t.keys, string(wh))
	return &Key{dec: e.dec}, nil
}

// errNoKey is Take's error; it names nothing the caller did not send.
var errNoKey = provider.Errorf(provider.ENOENT, "no such import wrapping key (spent, expired or forgotten); get new import parameters")

// Open opens the material sealed to k for ref (HPKE base mode, info
// provider.ImportInfo(ref.ID, ref.Algorithm), empty aad) and converts it
// with spec, ref's algorithm (alg.Spec.ImportMaterial). It returns the
// provider's private material (the caller clears it) and the public key
// Generate would return. A wrapped form that does not open is EBADMSG,
// material of another algorithm or size EINVAL, an algorithm that cannot
// be imported ENOTSUP; the plaintext material is cleared before Open
// returns.
func (k *Key) Open(ref provider.KeyRef, spec *alg.Spec, enc, wrapped []byte) (material, pub []byte, err error) {
	if spec == nil || spec.Name != ref.Algorithm {
		return nil, nil, provider.Errorf(provider.EINVAL, "import of %s: no spec for its algorithm", ref)
	}
	if spec.Use != ref.Use {
		return nil, nil, provider.Errorf(provider.EINVAL, "key ref %s has use %s, not its algorithm's %s", ref, ref.Use, spec.Use)
	}
	if !spec.Importable() {
		return nil, nil, provider.Errorf(provider.ENOTSUP, "%s keys cannot be imported (no standard PKCS #8 form keystored parses)", string(spec.Name))
	}
	if err := provider.CheckImport(enc, wrapped); err != nil {
		return nil, nil, err
	}
	pt, err := k.dec.Decrypt(enc, wrapped, provider.ImportInfo(ref.ID, ref.Algorithm), nil)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pt)
	return spec.ImportMaterial(pt)
}

// String returns "import wrapping key"; a Key prints nothing else.
func (k *Key) String() string { return "import wrapping key" }

// Format prints the same as String under every verb.
func (k *Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// Open spends the wrapping key wrap/wh (Take) and opens the material
// sealed to it for ref (Key.Open), after checking ref: Take, then
// everything else, so the key is spent whatever the outcome. It returns
// the provider's private material (the caller clears it) and the public
// key.
func (t *Table) Open(ctx context.Context, ref, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (material, pub []byte, err error) {
	k, err := t.Take(wrap, wh)
	if err != nil {
		return nil, nil, err
	}
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
	return k.Open(ref, spec, enc, wrapped)
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

// String returns "import wrapping keys (<n>)".
func (t *Table) String() string { return "import wrapping keys (" + strconv.Itoa(t.Len()) + ")" }

// Format prints the same as String under every verb.
func (t *Table) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// Len returns how many wrapping keys the table holds.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

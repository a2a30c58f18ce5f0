package softkey

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// entry is one unwrapped key. Exactly one of signer, aead, mac and dec is
// set. All print as their algorithm only.
type entry struct {
	ref    provider.KeyRef
	signer *alg.Signer
	aead   *alg.AEAD
	mac    *alg.MAC
	dec    *alg.Decrypter
}

// cache holds unwrapped keys by handle, and the tombstones of destroyed
// handles. A hit costs a read lock and a map lookup; eviction takes
// whichever entry the map yields first (no LRU bookkeeping on the hot
// path).
//
// Invariant: a handle in dead is never in keys. Destroy deletes and
// tombstones under the write lock, and put refuses a tombstoned handle
// under the same lock, so a hit is never a destroyed key.
type cache struct {
	mu   sync.RWMutex
	max  int
	keys map[string]*entry
	dead map[[sha256.Size]byte]struct{}
}

// String returns "entry(<ref>)".
func (e entry) String() string { return "entry(" + e.ref.String() + ")" }

// GoString returns the same as String.
func (e entry) GoString() string { return e.String() }

// Format prints the same as String under every verb.
func (e entry) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(e.String())) }

// String returns "cache(<n> keys)".
func (c *cache) String() string { return "cache(" + strconv.Itoa(c.len()) + " keys)" }

// GoString returns the same as String.
func (c *cache) GoString() string { return c.String() }

// Format prints the same as String under every verb.
func (c *cache) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

func newCache(max int) *cache {
	return &cache{
		max:  max,
		keys: make(map[string]*entry),
		dead: make(map[[sha256.Size]byte]struct{}),
	}
}

// get returns the entry for h if it was made for ref.
func (c *cache) get(ref provider.KeyRef, h provider.Handle) *entry {
	c.mu.RLock()
	ent := c.keys[string(h)]
	c.mu.RUnlock()
	if ent == nil || ent.ref != ref {
		return nil
	}
	return ent
}

// destroyed reports whether the handle with SHA-256 sum was destroyed.
func (c *cache) destroyed(sum *[sha256.Size]byte) bool {
	c.mu.RLock()
	_, ok := c.dead[*sum]
	c.mu.RUnlock()
	return ok
}

// put caches ent for h unless h was destroyed meanwhile; it reports
// whether h is live.
func (c *cache) put(h provider.Handle, sum *[sha256.Size]byte, ent *entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.dead[*sum]; ok {
		return false
	}
	if _, ok := c.keys[string(h)]; !ok && len(c.keys) >= c.max {
		for k := range c.keys {
			delete(c.keys, k)
			break
		}
	}
	c.keys[string(h)] = ent
	return true
}

// destroy forgets h and remembers it as destroyed. When the tombstone set
// is full, an arbitrary older tombstone is forgotten.
func (c *cache) destroy(h provider.Handle, sum *[sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.keys, string(h))
	if _, ok := c.dead[*sum]; ok {
		return
	}
	if len(c.dead) >= MaxTombstones {
		for k := range c.dead {
			delete(c.dead, k)
			break
		}
	}
	c.dead[*sum] = struct{}{}
}

// purge forgets every cached key whose handle drop reports true for
// (tombstones stay).
func (c *cache) purge(drop func(h string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h := range c.keys {
		if drop(h) {
			delete(c.keys, h)
		}
	}
}

// forget drops h's cached key, if any.
func (c *cache) forget(h provider.Handle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.keys, string(h))
}

// len returns the number of cached keys.
func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys)
}

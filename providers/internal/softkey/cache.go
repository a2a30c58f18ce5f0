package softkey

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

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
// handles. A hit costs a read lock, a map lookup and, for a key not
// marked used since the eviction hand last passed it, one atomic store.
// Eviction is CLOCK (second chance, an approximation of LRU with no list
// to reorder on a hit): when the cache is full, the hand goes round the
// ring of slots clearing the marks of used keys and drops the first key
// not marked. A new key starts unmarked, so a pass over many keys used
// once (a scan) recycles its own slots before it evicts the keys in use.
//
// Invariant: a handle in dead is never in keys. Destroy deletes and
// tombstones under the write lock, and put refuses a tombstoned handle
// under the same lock, so a hit is never a destroyed key.
type cache struct {
	mu   sync.RWMutex
	max  int
	keys map[string]*slot
	ring []*slot // by slot index; nil: free
	free []int
	hand int
	dead map[[sha256.Size]byte]struct{}
}

// slot is a cached key with its CLOCK mark and its place in the ring.
type slot struct {
	ent  *entry
	h    string
	used atomic.Bool
	i    int // guarded by cache.mu
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
		keys: make(map[string]*slot),
		dead: make(map[[sha256.Size]byte]struct{}),
	}
}

// get returns the entry for h if it was made for ref.
func (c *cache) get(ref provider.KeyRef, h provider.Handle) *entry {
	c.mu.RLock()
	sl := c.keys[string(h)]
	var ent *entry
	if sl != nil {
		ent = sl.ent
	}
	c.mu.RUnlock()
	if ent == nil || ent.ref != ref {
		return nil
	}
	if !sl.used.Load() {
		sl.used.Store(true)
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
	if sl := c.keys[string(h)]; sl != nil {
		sl.ent = ent
		return true
	}
	sl := &slot{ent: ent, h: string(h), i: -1}
	switch {
	case len(c.free) > 0:
		sl.i = c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
	case len(c.ring) < c.max:
		sl.i = len(c.ring)
		c.ring = append(c.ring, nil)
	default:
		sl.i = c.evictLocked()
	}
	c.ring[sl.i] = sl
	c.keys[sl.h] = sl
	return true
}

// evictLocked drops one key (the ring is full) and returns its slot.
func (c *cache) evictLocked() int {
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.ring)
		sl := c.ring[i]
		if sl == nil {
			return i
		}
		if sl.used.Load() {
			sl.used.Store(false)
			continue
		}
		delete(c.keys, sl.h)
		c.ring[i] = nil
		return i
	}
}

// removeLocked drops h's key, if cached, freeing its slot.
func (c *cache) removeLocked(h string) {
	sl := c.keys[h]
	if sl == nil {
		return
	}
	delete(c.keys, h)
	c.ring[sl.i] = nil
	c.free = append(c.free, sl.i)
}

// destroy forgets h and remembers it as destroyed. When the tombstone set
// is full, an arbitrary older tombstone is forgotten.
func (c *cache) destroy(h provider.Handle, sum *[sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(string(h))
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
			c.removeLocked(h)
		}
	}
}

// forget drops h's cached key, if any.
func (c *cache) forget(h provider.Handle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(string(h))
}

// len returns the number of cached keys.
func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys)
}

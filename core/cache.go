package core

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// keyCache is the keystore's cache of key entries: a fixed number of
// shards, each a map with a CLOCK (second-chance) eviction ring. A hit
// costs the shard's read lock and, for an entry not yet marked used since
// the hand last passed it, one atomic store: no global lock and no list
// to reorder on the hot path.
//
// Room is made only for keys that exist: get never evicts (a lookup's
// new entry takes a free slot or grows the ring), and once an entry is
// known to name a key (loaded with a record, or given one by a create)
// its shard is trimmed back to its size (trim). A lookup of a key that
// does not exist (an attacker's guess) thus evicts nothing: its entry is
// dropped as soon as it is read or unlocked (drop), and until then it
// holds one slot beyond the shard's size, so the overshoot is bounded by
// the lookups in flight.
//
// Eviction (trim) advances the shard's hand over its ring: an entry
// marked used is given a second chance (the mark is cleared); the first
// one not marked, not pinned and not locked by a caller is dropped. An
// entry that names no key is dropped before any other whatever its mark.
type keyCache struct {
	seed   maphash.Seed
	shards []cacheShard // a power of two of them
	max    int          // per shard
}

// maxCacheShards is the number of shards of a large cache; a small one
// has fewer, each of at least minShardSize entries, so that its bound
// stays close to the total asked for.
const (
	maxCacheShards = 64
	minShardSize   = 16
)

type cacheShard struct {
	mu   sync.RWMutex
	m    map[string]*entry
	ring []*entry // slot i holds the entry whose slot is i; nil: free
	free []int
	hand int
	_    [40]byte // keep shards' locks on separate cache lines
}

func newKeyCache(size int) *keyCache {
	n := 1
	for n < maxCacheShards && size/(2*n) >= minShardSize {
		n *= 2
	}
	c := &keyCache{seed: maphash.MakeSeed(), max: (size + n - 1) / n, shards: make([]cacheShard, n)}
	for i := range c.shards {
		c.shards[i].m = map[string]*entry{}
	}
	return c
}

func (c *keyCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)&uint64(len(c.shards)-1)]
}

// get returns the entry for key, creating an empty one.
func (c *keyCache) get(key string) *entry {
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	if e != nil {
		if !e.used.Load() {
			e.used.Store(true)
		}
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e = s.m[key]; e != nil {
		e.used.Store(true)
		return e
	}
	// No eviction here: the key may not exist (see keyCache).
	slot := -1
	if len(s.free) > 0 {
		slot = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	}
	e = &entry{idStr: key}
	if slot < 0 {
		slot = len(s.ring)
		s.ring = append(s.ring, nil)
	}
	e.slot = slot
	s.ring[slot] = e
	s.m[key] = e
	return e
}

// trim evicts entries of e's shard until it holds at most its size (or
// every other entry is pinned or busy: it then stays over until a later
// trim). e names a key: it is marked used, so it is not the one evicted
// unless the hand passes it twice.
func (c *keyCache) trim(e *entry) {
	e.used.Store(true)
	s := c.shard(e.idStr)
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.m) > c.max {
		i := s.evictLocked()
		if i < 0 {
			return
		}
		s.free = append(s.free, i)
	}
}

// evictLocked drops one entry and returns its slot, or -1 when every
// entry is pinned or busy. s.mu is held for writing.
func (s *cacheShard) evictLocked() int {
	n := len(s.ring)
	for step := 0; step < 2*n+1; step++ {
		i := s.hand
		s.hand++
		if s.hand >= n {
			s.hand = 0
		}
		e := s.ring[i]
		if e == nil {
			continue // a free slot (in s.free)
		}
		if e.pinned.Load() {
			continue
		}
		absent := e.loaded.Load() && e.rec.Load() == nil
		if !absent && e.used.Load() {
			e.used.Store(false)
			continue
		}
		if !e.mu.TryLock() {
			continue
		}
		e.evicted.Store(true)
		delete(s.m, e.idStr)
		s.ring[i] = nil
		e.mu.Unlock()
		return i
	}
	return -1
}

// drop removes e if it names no key (no record: the key does not exist,
// or it did not load) and no caller holds it: readKey drops such an entry once read, and unlockKey once
// unlocked, so that lookups of keys that do not exist (an attacker's
// guesses) take no room.
func (c *keyCache) drop(e *entry) {
	if !e.mu.TryLock() {
		return
	}
	defer e.mu.Unlock()
	if e.evicted.Load() || e.rec.Load() != nil || e.pinned.Load() {
		return
	}
	s := c.shard(e.idStr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[e.idStr] != e {
		return
	}
	e.evicted.Store(true)
	delete(s.m, e.idStr)
	s.ring[e.slot] = nil
	s.free = append(s.free, e.slot)
}

// len returns the number of entries held.
func (c *keyCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// usedMark is an entry's CLOCK mark; slot is its place in its shard's
// ring (guarded by the shard's lock).
type usedMark struct {
	used atomic.Bool
	slot int
}

package core

import (
	"strconv"
	"testing"
)

// A flood of lookups of keys that do not exist (an attacker's guesses)
// must not evict the keys in use: absent entries are dropped first.
func TestKeyCacheFloodOfAbsentKeysKeepsRealKeys(t *testing.T) {
	c := newKeyCache(64)
	real := map[string]*entry{}
	for i := 0; i < 8; i++ {
		key := "app/p/real" + strconv.Itoa(i)
		e := c.get(key)
		e.rec.Store(&record{})
		e.loaded.Store(true)
		real[key] = e
	}
	var inFlight []*entry // lookups under way: locked, not yet loaded
	for i := 0; i < 10000; i++ {
		e := c.get("app/p/guess" + strconv.Itoa(i))
		if i%10 == 0 && len(inFlight) < 8 {
			e.mu.Lock()
			inFlight = append(inFlight, e)
			continue
		}
		e.loaded.Store(true) // loaded: no such key
		c.drop(e)            // as readKey and unlockKey do
		if len(inFlight) == 8 {
			for _, f := range inFlight {
				f.loaded.Store(true)
				f.mu.Unlock()
				c.drop(f)
			}
			inFlight = inFlight[:0]
		}
		if i%100 == 0 {
			for key := range real {
				c.get(key) // the real keys are in use
			}
		}
	}
	for key, e := range real {
		if e.evicted.Load() || c.get(key) != e {
			t.Fatalf("%s was evicted by lookups of absent keys", key)
		}
	}
	if n := c.len(); n > 64 {
		t.Fatalf("cache holds %d entries, more than its size 64", n)
	}
}

// The cache evicts the entry not used since the hand passed it (second
// chance), not one in use; a busy (locked) or pinned entry stays.
func TestKeyCacheSecondChance(t *testing.T) {
	c := newKeyCache(4) // one shard of 4
	if len(c.shards) != 1 {
		t.Fatalf("a cache of 4 has %d shards, want 1", len(c.shards))
	}
	es := make([]*entry, 4)
	for i := range es {
		es[i] = c.get("a/p/k" + strconv.Itoa(i))
		es[i].rec.Store(&record{})
		es[i].loaded.Store(true)
	}
	es[0].pinned.Store(true)
	es[1].mu.Lock() // busy
	c.get("a/p/k2") // used again: marked
	c.get("a/p/k3")
	es[3].used.Store(false) // k3 not used since
	n := c.get("a/p/new")   // grows the ring: the key may not exist
	if es[3].evicted.Load() {
		t.Fatal("a lookup evicted an entry before its key was known to exist")
	}
	n.rec.Store(&record{}) // it does: its shard is trimmed
	n.loaded.Store(true)
	c.trim(n)
	es[1].mu.Unlock()
	if !es[3].evicted.Load() {
		t.Fatal("the entry not used since the hand passed was not evicted")
	}
	for _, i := range []int{0, 1, 2} {
		if es[i].evicted.Load() {
			t.Fatalf("entry %d (pinned, busy or used) was evicted", i)
		}
	}
}

// When every entry is busy, the cache grows rather than evict one in use.
func TestKeyCacheAllBusyGrows(t *testing.T) {
	c := newKeyCache(2)
	a, b := c.get("a/p/a"), c.get("a/p/b")
	a.mu.Lock()
	b.mu.Lock()
	c.get("a/p/c")
	a.mu.Unlock()
	b.mu.Unlock()
	if a.evicted.Load() || b.evicted.Load() || c.len() != 3 {
		t.Fatalf("busy entries evicted (a %v, b %v) or size %d, want 3", a.evicted.Load(), b.evicted.Load(), c.len())
	}
}

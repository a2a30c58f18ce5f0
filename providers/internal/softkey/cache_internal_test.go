package softkey

import (
	"crypto/sha256"
	"strconv"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

func cacheRef(t *testing.T, i int) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID("app", "p", "k"+strconv.Itoa(i))
	if err != nil {
		t.Fatal(err)
	}
	return provider.KeyRef{ID: id, Version: 1}
}

// A key in use survives a pass over many keys used once (CLOCK keeps the
// marked key); destroy frees its slot for reuse; the size bound holds.
func TestCacheClock(t *testing.T) {
	c := newCache(8)
	hot := provider.Handle("hot")
	hotRef := cacheRef(t, -1)
	sum := sha256.Sum256(hot)
	c.put(hot, &sum, &entry{ref: hotRef})
	for i := 0; i < 1000; i++ {
		if c.get(hotRef, hot) == nil {
			t.Fatalf("the key in use was evicted after %d other keys", i)
		}
		h := provider.Handle("h" + strconv.Itoa(i))
		s := sha256.Sum256(h)
		c.put(h, &s, &entry{ref: cacheRef(t, i)})
		if n := c.len(); n > 8 {
			t.Fatalf("cache holds %d keys, more than 8", n)
		}
	}
	c.destroy(hot, &sum)
	if c.get(hotRef, hot) != nil {
		t.Fatal("a destroyed key is still cached")
	}
	if len(c.free) != 1 {
		t.Fatalf("destroy left %d free slots, want 1", len(c.free))
	}
	if c.put(hot, &sum, &entry{ref: hotRef}) {
		t.Fatal("put accepted a destroyed handle")
	}
	h := provider.Handle("again")
	s := sha256.Sum256(h)
	c.put(h, &s, &entry{ref: cacheRef(t, 5000)})
	if len(c.free) != 0 || len(c.ring) != 8 {
		t.Fatalf("free slot not reused: %d free, ring %d", len(c.free), len(c.ring))
	}
}

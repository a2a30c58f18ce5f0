package core

import (
	"fmt"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// Before the index is built (or while its walks fail), repeated writes of
// the same keys do not grow pending by one entry per write.
func TestIndexPendingBoundedBeforeBuild(t *testing.T) {
	var x keyIndex
	ids := make([]KeyID, 10)
	for i := range ids {
		id, err := provider.ParseKeyID(fmt.Sprintf("app/p/k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	for i := range 100000 {
		x.add(ids[i%len(ids)])
	}
	if n := len(x.pending); n > maxPending {
		t.Fatalf("pending holds %d entries after 100000 writes of %d keys; want at most %d", n, len(ids), maxPending)
	}
	for _, id := range ids {
		if !x.hasLocked(id) {
			t.Fatalf("%s lost from pending", id)
		}
	}
}

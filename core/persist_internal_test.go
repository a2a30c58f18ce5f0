package core

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/testseed"
)

// A seal-budget reservation is used only once it is durable: while its
// metadata write is in flight, the lock-free check that admits seals still
// sees the old, durable reservation. Otherwise a crash during the write
// would forget seals already made, and the version could exceed its
// budget after the restart.
func TestSealReservationPublishedOnlyWhenDurable(t *testing.T) {
	p, err := testseed.NewInsecure([]byte("seal reservation seed"))
	if err != nil {
		t.Fatal(err)
	}
	mem := storage.NewMemory()
	ctx := context.Background()
	ks, err := Open(ctx, Config{Storage: mem, Provider: p, Clock: clock.NewFake(time.Unix(1e9, 0)), Audit: DiscardAudit{}})
	if err != nil {
		t.Fatal(err)
	}
	c := Caller{App: "app"}
	id, err := provider.NewKeyID("app", "p", "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Create(ctx, c, id, CreateOptions{Algorithm: provider.ChaCha20Poly1305}); err != nil {
		t.Fatal(err)
	}
	_, rec, err := ks.readKey(ctx, id)
	if err != nil || rec == nil {
		t.Fatalf("readKey: %v", err)
	}
	vr := rec.versions[0]
	crash := errors.New("simulated crash")
	var during []uint64
	mem.SetHook(func(s storage.Step, path string) error {
		if s == storage.StepRename && path == metaPath(id) {
			during = append(during, vr.reserved.Load())
			return crash
		}
		return nil
	})
	_, err = ks.Seal(ctx, c, id, []byte("x"), nil)
	if code, _ := provider.CodeOf(err); code != provider.EIO {
		t.Fatalf("seal with a failing reservation write: got %v, want EIO", err)
	}
	if len(during) != 1 {
		t.Fatalf("reservation writes seen: got %d, want 1", len(during))
	}
	if during[0] != 0 {
		t.Errorf("reservation visible to concurrent seals while its write was in flight: got %d, want 0 (the durable value)", during[0])
	}
	if got := vr.reserved.Load(); got != 0 {
		t.Errorf("reservation after the failed write: got %d, want 0", got)
	}
}

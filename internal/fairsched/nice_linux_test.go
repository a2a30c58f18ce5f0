package fairsched

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// threadNice returns the nice value of the calling thread.
func threadNice(t *testing.T) int {
	t.Helper()
	// The raw system call returns 20 - nice.
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	return 20 - p
}

// TestHeavyCallsRunNiced: a call of HeavyCost or more runs on a thread
// whose nice value is the caller's raised by Nice, a cheaper one on the caller's thread;
// with Nice -1 every call runs on the caller's thread. A heavy call's
// panic is EIO to the caller, and the pool thread serves the next call.
func TestHeavyCallsRunNiced(t *testing.T) {
	base := threadNice(t)
	if base >= 15 {
		t.Skipf("the test runs at nice %d already; it needs to see a thread 4 above", base)
	}
	s := newSched(t, Config{Workers: 2, Nice: 4})
	var heavy, cheap int
	if err := s.Do(context.Background(), "a", HeavyCost, func() { heavy = threadNice(t) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Do(context.Background(), "a", HeavyCost-1, func() { cheap = threadNice(t) }); err != nil {
		t.Fatal(err)
	}
	if heavy != base+4 || cheap != base {
		t.Fatalf("nice of a heavy call's thread %d, of a cheap one's %d; want %d and %d", heavy, cheap, base+4, base)
	}
	off := newSched(t, Config{Workers: 2, Nice: -1})
	if err := off.Do(context.Background(), "a", 100*Unit, func() { heavy = threadNice(t) }); err != nil {
		t.Fatal(err)
	}
	if heavy != base {
		t.Fatalf("Nice -1: a heavy call ran at nice %d, want the caller's %d", heavy, base)
	}
	if err := s.Do(context.Background(), "x", HeavyCost, func() { panic("heavy bug") }); !errors.Is(err, provider.ErrIO) {
		t.Fatalf("a panicking heavy call: %v, want EIO", err)
	}
	if err := s.Do(context.Background(), "x", HeavyCost, func() {}); err != nil {
		t.Fatalf("a heavy call after a panic (the pool thread must live on): %v", err)
	}
	if !s.idle() {
		t.Fatal("a panicking heavy call leaked its slot")
	}
	for _, bad := range []int{-2, 20} {
		if _, err := New(Config{Nice: bad}); err == nil {
			t.Errorf("New(Nice: %d) succeeded", bad)
		}
	}
}

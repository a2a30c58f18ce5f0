package main

import (
	"testing"
	"time"
)

// The releaser releases at the first quiet interval after enough work,
// once, and not while work goes on or after a little work.
func TestIdleReleaser(t *testing.T) {
	const mib = 1 << 20
	r := idleReleaser{}
	steps := []struct {
		allocs uint64
		want   bool
	}{
		{10 * mib, false},  // busy, too little since the start
		{100 * mib, false}, // busy: 90 MiB this interval
		{100 * mib, true},  // quiet after 100 MiB: release
		{100 * mib, false}, // still quiet: nothing new to release
		{101 * mib, false}, // a little work (1 MiB), quiet
		{200 * mib, false}, // busy again
		{200*mib + 1000, true},
	}
	for i, s := range steps {
		if got := r.check(s.allocs); got != s.want {
			t.Fatalf("step %d (allocs %d): release %v, want %v", i, s.allocs, got, s.want)
		}
	}
}

// The loop calls release when the releaser says so, and stops with its
// ticker.
func TestRunIdleRelease(t *testing.T) {
	tick := make(chan time.Time)
	counter := []uint64{0, 80 << 20, 80 << 20, 80 << 20}
	n := 0
	allocs := func() uint64 { v := counter[min(n, len(counter)-1)]; n++; return v }
	released := 0
	done := make(chan struct{})
	go func() {
		runIdleRelease(tick, allocs, func() { released++ })
		close(done)
	}()
	for range len(counter) - 1 {
		tick <- time.Time{}
	}
	close(tick)
	<-done
	if released != 1 {
		t.Fatalf("%d releases after 80 MiB then two quiet intervals, want 1", released)
	}
}

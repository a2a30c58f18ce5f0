package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// gcFloor is the heap size below which the daemon's garbage collector
// does not start a cycle (unless $GOGC is set: then the runtime's own
// policy holds). A daemon's live heap is small — about 1 MiB with a few
// keys — and Go's default policy (a cycle when the heap doubles, at
// least every 4 MiB) then runs a cycle every few hundred requests: some
// 40 per second at 64 signing callers, a seventh of the daemon's CPU.
// Below the floor the daemon trades at most gcFloor bytes of garbage for
// most of those cycles; a daemon whose live heap is half the floor or
// more (tens of thousands of keys in cache) keeps the default GOGC=100,
// so its memory per key is what it would be without the floor
// (docs/performance.md, "Daemon").
const gcFloor = 32 << 20

// maxGCPercent bounds the percentage gcPercent sets (a live heap of
// 320 KiB or less gets it).
const maxGCPercent = 10000

// gcPercent is the GOGC that puts the next cycle's heap goal, live ×
// (1 + GOGC/100), at floor: at least the default 100, at most
// maxGCPercent.
func gcPercent(live, floor uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	if live >= floor/2 {
		return 100
	}
	return int(min(maxGCPercent, (floor-live)*100/live))
}

var gcFloorOnce sync.Once

// gcSentinel is an object whose finalizer runs once per garbage
// collection cycle (it is unreachable as soon as it is made); it holds a
// pointer so that it is not a tiny allocation (whose finalizers may wait
// for their neighbours).
type gcSentinel struct {
	_ *int
	_ [16]byte
}

// startGCFloor sets, after every garbage collection cycle, the GC
// percentage that keeps the heap goal at floor or more (gcPercent), from
// the live heap that cycle found. Once per process.
func startGCFloor(floor uint64) {
	gcFloorOnce.Do(func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		last := -1
		var arm func()
		arm = func() {
			runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
				metrics.Read(sample)
				if sample[0].Value.Kind() == metrics.KindUint64 {
					if p := gcPercent(sample[0].Value.Uint64(), floor); p != last {
						debug.SetGCPercent(p)
						last = p
					}
				}
				arm()
			})
		}
		arm()
	})
}

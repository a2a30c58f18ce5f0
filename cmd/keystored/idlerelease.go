package main

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The daemon returns its free heap memory to the operating system once
// it has gone idle after work, so that a keystore that has used many keys
// does not keep the collector's headroom (with GOGC=100 the heap grows to
// twice what is live before a cycle) resident while nothing happens. Like
// the GC floor, it is off when $GOGC is set (docs/operations.md,
// "Memory").
const (
	// idleCheckEvery is how often the allocation counter is read.
	idleCheckEvery = 2 * time.Second
	// idleAllocs is the most the daemon may allocate in one check
	// interval and still count as idle (checkpoints, probes, metrics
	// scrapes allocate a little).
	idleAllocs = 1 << 20
	// releaseAfterAllocs is how much it must have allocated since the
	// last release before it releases again: a release costs a full
	// collection, which is worth it only after real work.
	releaseAfterAllocs = 64 << 20
)

// idleReleaser decides, from the cumulative allocation counter read at
// each check, when to release: at the first quiet interval after at
// least releaseAfterAllocs bytes were allocated since the last release.
type idleReleaser struct {
	last        uint64 // the counter at the previous check
	lastRelease uint64 // the counter at the last release
}

// check takes the counter now and reports whether to release.
func (r *idleReleaser) check(allocs uint64) bool {
	quiet := allocs-r.last <= idleAllocs
	r.last = allocs
	if quiet && allocs-r.lastRelease >= releaseAfterAllocs {
		r.lastRelease = allocs
		return true
	}
	return false
}

var idleReleaseOnce sync.Once

// startIdleRelease checks the allocation counter every idleCheckEvery
// and calls debug.FreeOSMemory when idleReleaser says so, for the
// process's life. Once per process.
func startIdleRelease() {
	idleReleaseOnce.Do(func() {
		go runIdleRelease(time.NewTicker(idleCheckEvery).C, readAllocs, debug.FreeOSMemory)
	})
}

// runIdleRelease is startIdleRelease's loop, its clock, counter and
// release injected (tests); it returns when tick is closed.
func runIdleRelease(tick <-chan time.Time, allocs func() uint64, release func()) {
	r := idleReleaser{last: allocs()}
	r.lastRelease = r.last
	for range tick {
		if r.check(allocs()) {
			release()
		}
	}
}

// readAllocs returns the bytes the heap has allocated since the process
// began (0 if the runtime does not have the metric).
func readAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

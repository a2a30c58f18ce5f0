package audit

import (
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// SyncMode says when a Log fsyncs its file. The zero value is the default,
// SyncInterval(DefaultSyncInterval).
type SyncMode int64

// SyncEveryRecord fsyncs after every batch write; Append returns only once
// its record is on stable storage. Slower: one fsync per batch.
const SyncEveryRecord SyncMode = -1

// DefaultSyncInterval is the fsync interval of the default SyncMode.
const DefaultSyncInterval = 100 * time.Millisecond

// SyncInterval fsyncs in the background at most every d, d after the first
// write not yet synced; Append returns once its record is written (in the
// page cache). A crash of the daemon loses nothing written; a power loss
// or kernel crash can lose up to d of records. d <= 0 means
// DefaultSyncInterval.
func SyncInterval(d time.Duration) SyncMode {
	if d <= 0 {
		return 0
	}
	return SyncMode(d)
}

// interval returns the background fsync interval, or 0 for SyncEveryRecord.
func (m SyncMode) interval() time.Duration {
	switch {
	case m < 0:
		return 0
	case m == 0:
		return DefaultSyncInterval
	}
	return time.Duration(m)
}

// String describes the mode: "every-record" or "interval(100ms)".
func (m SyncMode) String() string {
	if m < 0 {
		return "every-record"
	}
	return "interval(" + m.interval().String() + ")"
}

// Clock gives the time of the records the Log writes itself (the torn-tail
// recovery record). clock.System and *clock.Fake satisfy it.
type Clock interface {
	Now() time.Time
}

// Option configures Open.
type Option func(*config)

type config struct {
	sync        SyncMode
	clock       Clock
	segSize     int64                   // 0: DefaultSegmentSize
	maxSegments int                     // 0: keep every segment
	wrap        func(file) file         // tests: wraps the opened file
	fault       func(step string) error // tests: fails a rotation at a step
	onSync      func(time.Duration)     // WithSyncObserver
	onDurable   func(seq uint64)        // WithDurableObserver
}

// check refuses (EINVAL) a segment size or count out of bounds.
func (c *config) check() error {
	if c.segSize != 0 && (c.segSize < MinSegmentSize || c.segSize > MaxSegmentSize) {
		return provider.Errorf(provider.EINVAL, "audit segment size %d is out of range (%d to %d bytes)", c.segSize, MinSegmentSize, int64(MaxSegmentSize))
	}
	if c.maxSegments != 0 && (c.maxSegments < MinMaxSegments || c.maxSegments > MaxMaxSegments) {
		return provider.Errorf(provider.EINVAL, "audit max segments %d is out of range (%d to %d)", c.maxSegments, MinMaxSegments, MaxMaxSegments)
	}
	return nil
}

func (c *config) segmentSize() int64 {
	if c.segSize == 0 {
		return DefaultSegmentSize
	}
	return c.segSize
}

// WithSegmentSize sets the size at which the current file is sealed and a
// new one started: a batch of records that would make the current file
// larger than n bytes goes to a new file instead (a single batch larger
// than n makes a segment of its own). 0 means DefaultSegmentSize (16 MiB);
// otherwise MinSegmentSize (4 KiB) to MaxSegmentSize (1 TiB).
func WithSegmentSize(n int64) Option {
	return func(c *config) { c.segSize = n }
}

// WithMaxSegments keeps at most n segment files, the current one
// included: when a rotation makes more, the oldest sealed segments are
// removed, each after an OpSegmentPruned record naming it and its last
// record is durable, so that the verifier can tell a removal by the
// daemon from a deletion. 0 (the default) keeps every segment; otherwise
// MinMaxSegments (2) to MaxMaxSegments.
func WithMaxSegments(n int) Option {
	return func(c *config) { c.maxSegments = n }
}

// WithSyncObserver has f called with the duration of every successful
// fsync of the log file (the daemon feeds a latency histogram with it).
// f runs on the goroutine that fsyncs, with no lock of the Log held; it
// must be quick and safe for concurrent use.
func WithSyncObserver(f func(time.Duration)) Option {
	return func(c *config) { c.onSync = f }
}

// WithDurableObserver has f called with seq each time the Log learns that
// every record through seq is on stable storage: after the fsync that
// made it so (an interval fsync, Sync, AppendSync, the fsync of a
// SyncEveryRecord batch, or that of a segment a rotation seals). Seqs
// only grow. A record past the last seq
// reported may be on disk too, but nothing promises it: a power-cut
// simulation (internal/powercut) keeps exactly the records through the
// last seq reported. f runs with the Log's lock held: it must be quick
// and must not call the Log.
func WithDurableObserver(f func(seq uint64)) Option {
	return func(c *config) { c.onDurable = f }
}

// WithSync sets when the log fsyncs (default SyncInterval(100ms)).
func WithSync(m SyncMode) Option {
	return func(c *config) { c.sync = m }
}

// WithClock sets the clock for the records the Log writes itself (default:
// the system clock). Records given to Append carry their own Time.
func WithClock(c Clock) Option {
	return func(cfg *config) {
		if c != nil {
			cfg.clock = c
		}
	}
}

// systemClock is the default Clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

package audit

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// OpRecoveredTornTail is the Op of the record Open appends after cutting
// off a torn last line; its Detail says how many bytes were dropped.
const OpRecoveredTornTail = "audit.recovered-torn-tail"

// file is what a Log needs of its file. Tests wrap the *os.File to inject
// failures.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// maxSpare bounds the write buffer a Log keeps between batches.
const maxSpare = 1 << 20

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	path     string
	f        file
	interval time.Duration // 0: fsync after every batch

	mu      sync.Mutex
	idle    sync.Cond // broadcast when writing turns false
	x       *hasher
	seq     uint64 // last Seq assigned
	prev    string // last Hash assigned (Genesis before the first record)
	pending []byte // encoded lines not yet written
	spare   []byte
	cur     *batch // the batch pending belongs to; nil if pending is empty
	writing bool   // a goroutine owns the file's write side; pending non-empty implies writing
	closed  bool
	failure error // set once, by the first failed write or fsync
	syncDue bool  // an interval fsync is scheduled
	timer   *time.Timer
	written Checkpoint // last record written
	prune   *prunePlan // segments to remove once their records are written

	// state is nil while the log is usable, else the error Ready returns.
	state atomic.Pointer[error]

	syncMu     sync.Mutex // serialises fsync with the file's Close and a rotation's swap
	fileClosed bool       // guarded by syncMu

	// The write side: used by Open, then only by the goroutine that owns
	// it (writing is true) or by Close once no one does.
	dfd      int    // the log's directory, locked (see openLockedDir)
	dir      string // its path
	base     string // the current file's name
	segSize  int64  // the current file is sealed before a write would pass it
	maxSegs  int    // keep at most this many files; 0: all
	size     int64  // bytes in the current file
	segFirst uint64 // Seq of the current file's first record; 0 while empty
	sealed   []segment
	wrap     func(file) file
	fault    func(step string) error // tests only; nil in use
	clock    Clock

	// Counters for Stats, and the fsync observer (WithSyncObserver).
	statRecords, statBytes, statSyncs     atomic.Uint64
	statCheckpoints, statCheckpointErrors atomic.Uint64
	statSinkErrors, statPrunePostponed    atomic.Uint64
	onSync                                func(time.Duration)
	onDurable                             func(seq uint64) // WithDurableObserver

	// Group fsync (syncThrough), guarded by mu.
	syncing    bool      // a goroutine is fsyncing for syncThrough
	synced     uint64    // every record up to this Seq is known fsynced
	syncStarts uint64    // fsyncs begun by syncThrough
	syncDone   uint64    // the number of the last one that completed
	syncCond   sync.Cond // broadcast when syncing turns false or written advances
	observer   func(Record)
	guard      func(lastSeq uint64) error
	pruning    bool // a planned removal is being carried out (see flush)
	closing    bool // Close has begun: only the Log's own records are accepted
	cp         *signerState
}

// Stats are what a Log has written since it was opened: the daemon
// exports them as metrics.
type Stats struct {
	Records uint64 // records written (a record is written once its batch's write(2) returned)
	Bytes   uint64 // bytes of those records, newlines included
	Syncs   uint64 // fsyncs of the log file that succeeded
	// Checkpoints counts the signed checkpoint records written and
	// fsynced (SetSigner); CheckpointErrors the checkpoints that could
	// not be made (the signer failed or the log refused the record), each
	// retried at the next trigger.
	Checkpoints, CheckpointErrors uint64
	// SinkErrors counts checkpoint lines a CheckpointSink did not take
	// (an error, a FIFO without a reader, a full pipe).
	SinkErrors uint64
	// PrunesPostponed counts segment removals the prune guard
	// (SetPruneGuard) refused; the segments stay until the next rotation.
	PrunesPostponed uint64
}

// Stats returns the Log's counters. It is safe to call at any time.
func (l *Log) Stats() Stats {
	return Stats{
		Records: l.statRecords.Load(), Bytes: l.statBytes.Load(), Syncs: l.statSyncs.Load(),
		Checkpoints: l.statCheckpoints.Load(), CheckpointErrors: l.statCheckpointErrors.Load(),
		SinkErrors: l.statSinkErrors.Load(), PrunesPostponed: l.statPrunePostponed.Load(),
	}
}

// setSynced records that every record through seq is fsynced and tells
// the durable observer (WithDurableObserver). Called with l.mu held.
func (l *Log) setSynced(seq uint64) {
	l.synced = seq
	if l.onDurable != nil {
		l.onDurable(seq)
	}
}

// fsync fsyncs the current file, counting it and telling the observer
// how long it took.
func (l *Log) fsync() error {
	start := time.Now()
	err := l.f.Sync()
	if err == nil {
		l.statSyncs.Add(1)
		if l.onSync != nil {
			l.onSync(time.Since(start))
		}
	}
	return err
}

// prunePlan is a removal of the oldest sealed segments: their
// OpSegmentPruned records are queued, and once the record with seq is
// written and synced the files are removed.
type prunePlan struct {
	seq      uint64
	through  uint64 // the last record of the last segment removed
	segments []segment
}

// batch is the set of records written by one write(2).
type batch struct {
	done chan struct{} // closed once written (or failed)
	err  error         // set before done is closed
	last Checkpoint
}

// Open opens the log whose current file is path, creating its directory
// (0700, its parent must exist) and the file (0600) if missing, and
// continues its chain.
//
// It refuses (EIO) a directory or file that is a symlink, owned by another
// user, a directory writable by group or others, a file whose mode is not
// exactly 0600 or that has other hard links; and (EUNAVAILABLE) a
// directory another Log holds (an exclusive flock, kept until Close).
//
// The log is a series of segment files (see WithSegmentSize): Open reads
// and verifies the current file, streaming, and of the sealed segments
// only the last record of the newest, which the current file's first
// record must follow (without a sealed segment, it must start at seq 1
// with the genesis Prev). If the current file is missing or empty (a crash
// during a rotation leaves that), the chain continues from that record. A
// torn last line — no newline at the end, or a last line that does not
// decode as a record, what a crash in the middle of a write leaves — is
// cut off, and a record with Op OpRecoveredTornTail, Result "ok" and
// Detail "dropped N bytes" is appended and synced. Any other verification
// failure makes Open fail with EIO wrapping the *VerifyError that names
// the first bad line: the chain is not continued past a record that does
// not verify.
func Open(path string, opts ...Option) (*Log, error) {
	cfg := config{clock: systemClock{}}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	dir, base, err := splitPath(path)
	if err != nil {
		return nil, err
	}
	dfd, err := openLockedDir(dir)
	if err != nil {
		return nil, err
	}
	sealed, err := listSealed(dfd, dir, base)
	if err != nil {
		closeFD(dfd)
		return nil, err
	}
	// Where the current file's chain starts: after the newest sealed
	// segment's last record, or at the genesis.
	from := Checkpoint{Hash: Genesis}
	if len(sealed) > 0 {
		if from, err = sealedEnd(dfd, dir, sealed[len(sealed)-1]); err != nil {
			closeFD(dfd)
			return nil, err
		}
	}
	f, size, err := openFile(dfd, path, base, false)
	if err != nil {
		closeFD(dfd)
		return nil, err
	}
	abandon := func(err error) (*Log, error) {
		// The error being returned is the one to report; the file was
		// not written since it was opened or the failure is in err.
		_ = f.Close()
		closeFD(dfd)
		return nil, err
	}

	w := newWalker(io.NewSectionReader(f, 0, size))
	w.continueFrom(from.Seq, from.Hash)
	var torn *badRecord
	var dropped int64
	for {
		rec, bad, err := w.next()
		if err != nil {
			return abandon(provider.WithOp("open", path, err))
		}
		if bad != nil {
			if !bad.tail {
				return abandon(provider.Errorf(provider.EIO, "audit log %s does not verify; refusing to continue its chain (move it aside to start a new log): %w", path, bad.err))
			}
			torn = bad
			break
		}
		if rec == nil {
			break
		}
	}
	if torn != nil {
		if err := f.Truncate(torn.start); err != nil {
			return abandon(provider.Errorf(provider.EIO, "audit log %s: cut off the torn last line: %w", path, err))
		}
		if err := f.Sync(); err != nil {
			return abandon(provider.Errorf(provider.EIO, "audit log %s: fsync: %w", path, err))
		}
		dropped, size = size-torn.start, torn.start
	}

	l := &Log{
		path:      path,
		f:         f,
		interval:  cfg.sync.interval(),
		x:         newHasher(),
		seq:       w.seq,
		prev:      w.prev,
		written:   Checkpoint{Seq: w.seq, Hash: w.prev},
		dfd:       dfd,
		dir:       dir,
		base:      base,
		segSize:   cfg.segmentSize(),
		onSync:    cfg.onSync,
		onDurable: cfg.onDurable,
		maxSegs:   cfg.maxSegments,
		size:      size,
		segFirst:  w.first,
		sealed:    sealed,
		wrap:      cfg.wrap,
		fault:     cfg.fault,
		clock:     cfg.clock,
	}
	l.idle.L = &l.mu
	l.syncCond.L = &l.mu
	if cfg.wrap != nil {
		l.f = cfg.wrap(f)
	}
	if torn != nil {
		rec := l.ownRecord(OpRecoveredTornTail, "", "dropped "+strconv.FormatInt(dropped, 10)+" bytes")
		_, err := l.Append(context.Background(), rec)
		if err == nil {
			err = l.Sync()
		}
		if err != nil {
			return nil, errors.Join(err, l.Close())
		}
	}
	return l, nil
}

// ownRecord is a record the Log writes itself, with the daemon's own
// identity as caller and no app.
func (l *Log) ownRecord(op, key, detail string) Record {
	return Record{
		Time:   l.clock.Now(),
		Caller: Caller{UID: int64(os.Geteuid()), GID: int64(os.Getegid()), PID: int64(os.Getpid())},
		Op:     op,
		Key:    key,
		Result: "ok",
		Detail: detail,
	}
}

// Append assigns r its Seq, Prev and Hash, writes it, and returns it as
// written. It refuses (EINVAL, nothing written) a record whose Op or
// Result is empty, whose App, Op, Key, Result or Detail is over MaxField
// bytes or holds a control character or invalid UTF-8, whose Time is zero
// or outside the years 1..9999, or whose batch counts are not
// 0 <= Failed <= Items. Seq, Prev and Hash given by the caller are
// ignored; Time is stored in UTC.
//
// Concurrent Appends are written together (group commit): each call
// returns once the single write(2) that holds its line has completed, and
// with SyncEveryRecord once the fsync after it has too. If the write or an
// fsync fails, every record of that batch and all later ones fail with EIO
// and the Log stays failed until reopened.
//
// If ctx ends before the record is queued, nothing is written; if it ends
// while waiting for the write, Append returns an error (EUNAVAILABLE) but
// the record has its place in the chain and is still written.
func (l *Log) Append(ctx context.Context, r Record) (Record, error) {
	return l.append(ctx, r, false, nil)
}

// AppendSync is Append, and returns only once the record is also on
// stable storage (fsynced), whatever the SyncMode. Concurrent callers
// share fsyncs: one fsync covers every record written before it began.
// An fsync failure fails the log (EIO), as Sync's does.
func (l *Log) AppendSync(ctx context.Context, r Record) (Record, error) {
	rec, err := l.append(ctx, r, false, nil)
	if err != nil {
		return rec, err
	}
	if err := l.syncThrough(rec.Seq, false); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// append is Append. own marks the Log's own records (checkpoints), which
// are accepted while Close is under way and do not wait for a checkpoint
// being made. after, if not nil, is the head the record must follow
// (errHeadMoved otherwise, nothing queued).
func (l *Log) append(ctx context.Context, r Record, own bool, after *Checkpoint) (Record, error) {
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	if err := ctx.Err(); err != nil {
		return Record{}, provider.Errorf(provider.EUNAVAILABLE, "audit record not written: %w", err)
	}
	r.Time = r.Time.UTC()

	l.mu.Lock()
	for !own && l.cp != nil && l.cp.hold && l.unusable() == nil {
		// A checkpoint is being signed: it must directly follow the
		// record it covers.
		l.syncCond.Wait()
	}
	err := l.unusable()
	if own && err != nil && l.failure == nil && !l.closed {
		err = nil // Close has begun (closing) but waits for these
	}
	if err == nil && after != nil && (after.Seq != l.seq || after.Hash != l.prev) {
		err = errHeadMoved
	}
	if err != nil {
		l.mu.Unlock()
		return Record{}, err
	}
	l.assign(&r)
	if own && l.cp != nil && l.cp.hold {
		l.cp.hold = false
		l.syncCond.Broadcast()
	}
	b := l.cur
	lead := !l.writing
	l.writing = true
	trigger := !own && l.cp.due(l.seq)
	l.mu.Unlock()

	if trigger {
		go l.checkpoint(reasonEvery)
	}
	if lead {
		// No write in progress: this Append writes. It first lets the
		// goroutines that are ready to run do so once, so that those
		// about to append (concurrent requests, each a few tens of
		// microseconds from its record) join this batch: one write(2)
		// for the group instead of one per record. Alone, it writes at
		// once (nothing else is ready).
		runtime.Gosched()
		l.flush()
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return Record{}, provider.Errorf(provider.EUNAVAILABLE, "audit record seq %d not yet written: %w", r.Seq, ctx.Err())
	}
	if b.err != nil {
		return Record{}, b.err
	}
	return r, nil
}

// assign gives r its place in the chain (Seq, Prev, Hash), queues its
// line in the current batch and tells the observer. Called with l.mu
// held, r validated and its Time in UTC.
func (l *Log) assign(r *Record) {
	r.Seq, r.Prev = l.seq+1, l.prev
	l.pending, r.Hash = appendLine(l.x, l.pending, r)
	l.seq, l.prev = r.Seq, r.Hash
	if l.cur == nil {
		l.cur = &batch{done: make(chan struct{})}
	}
	l.cur.last = Checkpoint{Seq: r.Seq, Hash: r.Hash}
	if l.observer != nil {
		l.observer(*r)
	}
}

// SetObserver has f called with every record appended after the call —
// the Log's own records included (torn-tail note, segment-pruned notes,
// checkpoints) — in Seq order, once the record has its Seq, Prev and Hash
// and before it is written. f runs under the Log's lock: it must be quick
// and must not call the Log. A nil f removes the observer. SetObserver
// returns the head at that instant: the Seq and Hash of the last record
// appended (not necessarily written yet), so that f plus the records up to
// the head are the whole log.
func (l *Log) SetObserver(f func(Record)) Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observer = f
	return Checkpoint{Seq: l.seq, Hash: l.prev}
}

// SetPruneGuard has f called before the Log removes sealed segments for
// WithMaxSegments, with the Seq of the last record they hold, once the
// OpSegmentPruned records announcing the removal are written and
// fsynced. If f returns an error, nothing is removed: the removal is
// postponed to the next rotation (which plans it again, with new
// OpSegmentPruned records) and counted in Stats.PrunesPostponed; the log
// goes on. f runs on a goroutine of the Log's with no lock of the Log
// held; it may call Sync and Checkpoint but must not Append (a removal
// waits for f). A nil f removes the guard.
func (l *Log) SetPruneGuard(f func(lastSeq uint64) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.guard = f
}

// flush writes the pending batch. The caller has set l.writing; flush
// clears it when nothing is left, or hands the batch that formed during
// the write to a new goroutine, so that no Append waits for records queued
// after its own.
func (l *Log) flush() {
	l.mu.Lock()
	buf, b := l.pending, l.cur
	l.pending, l.cur = l.spare[:0], nil
	l.spare = nil
	first := l.written.Seq + 1 // the Seq of buf's first record
	l.mu.Unlock()

	// A batch that would pass the segment size goes to a new segment.
	var err error
	if l.size > 0 && l.size+int64(len(buf)) > l.segSize {
		err = l.rotate()
	}
	if err == nil {
		err = l.write(buf)
	}
	if err == nil {
		l.size += int64(len(buf))
		if l.segFirst == 0 {
			l.segFirst = first
		}
		l.statRecords.Add(b.last.Seq - first + 1)
		l.statBytes.Add(uint64(len(buf)))
	}

	l.mu.Lock()
	if cap(buf) <= maxSpare {
		l.spare = buf[:0]
	}
	var plan *prunePlan
	if err == nil {
		l.written = b.last
		if l.interval == 0 {
			l.setSynced(b.last.Seq) // write fsynced it
		}
		l.syncCond.Broadcast()
		l.scheduleSync()
		if l.prune != nil && b.last.Seq >= l.prune.seq {
			plan, l.prune = l.prune, nil
			l.pruning = true
		}
	}
	if err != nil {
		err = l.fail(err)
	}
	if l.failure != nil {
		if c := l.cur; c != nil {
			// Queued behind the failed write: never written.
			c.err = l.failure
			close(c.done)
			l.cur, l.pending = nil, l.pending[:0]
		}
		l.syncCond.Broadcast()
	}
	more := l.cur != nil
	if !more {
		l.writing = false
		l.idle.Broadcast()
	}
	l.mu.Unlock()

	if more {
		// Records queued meanwhile are written by another goroutine, also
		// while this one removes segments: a prune guard may wait for
		// them (Sync).
		go l.flush()
	}
	if plan != nil {
		removed, perr := l.removeSegments(plan)
		if perr == nil && removed {
			// Segments still in excess (a rotation skipped its plan
			// while this one ran): plan them now.
			perr = l.planPrune(true)
		}
		l.mu.Lock()
		if perr != nil {
			// The batch is written; only later records are refused.
			l.fail(perr)
			l.syncCond.Broadcast()
		}
		start := l.cur != nil && !l.writing
		if start && l.failure != nil {
			// Planned, but the log failed: never written.
			l.cur.err = l.failure
			close(l.cur.done)
			l.cur, l.pending, start = nil, l.pending[:0], false
		}
		if start {
			l.writing = true // the planned records need a writer
		}
		l.pruning = false
		l.idle.Broadcast()
		l.mu.Unlock()
		if start {
			go l.flush()
		}
	}

	b.err = err
	close(b.done)
}

// write writes buf with one write(2) and, with SyncEveryRecord, fsyncs.
func (l *Log) write(buf []byte) error {
	n, err := l.f.Write(buf)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return provider.Errorf(provider.EIO, "audit log %s: write: %w", l.path, err)
	}
	if l.interval == 0 {
		if err := l.fsync(); err != nil {
			return provider.Errorf(provider.EIO, "audit log %s: fsync: %w", l.path, err)
		}
	}
	return nil
}

// fail puts the log in the failed state, once, and returns the error every
// later call gets. Called with l.mu held.
func (l *Log) fail(cause error) error {
	if l.failure == nil {
		l.failure = provider.Errorf(provider.EIO, "audit log %s failed; no more records until it is reopened: %w", l.path, cause)
		err := l.failure
		l.state.Store(&err)
	}
	return l.failure
}

// unusable returns why no record can be appended, or nil. Called with
// l.mu held.
func (l *Log) unusable() error {
	if l.failure != nil {
		return l.failure
	}
	if l.closed || l.closing {
		return errClosed(l.path)
	}
	return nil
}

func errClosed(path string) error {
	return provider.Errorf(provider.EIO, "audit log %s is closed", path)
}

// scheduleSync arranges an interval fsync after a write. Called with l.mu
// held.
func (l *Log) scheduleSync() {
	if l.interval == 0 || l.syncDue || l.closed {
		return
	}
	l.syncDue = true
	if l.timer == nil {
		l.timer = time.AfterFunc(l.interval, l.intervalSync)
		return
	}
	l.timer.Reset(l.interval)
}

// intervalSync is the timer's fsync. A failure fails the log.
func (l *Log) intervalSync() {
	l.mu.Lock()
	l.syncDue = false
	target := l.written.Seq
	l.mu.Unlock()
	// The error, if any, failed the log; nobody waits for this one.
	_ = l.syncThrough(target, false)
}

// syncFile fsyncs the file unless it is closed.
func (l *Log) syncFile() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.fileClosed {
		return nil
	}
	if err := l.fsync(); err != nil {
		return provider.Errorf(provider.EIO, "audit log %s: fsync: %w", l.path, err)
	}
	return nil
}

// syncThrough returns once every record up to seq is written and
// fsynced, or the log failed. Callers share fsyncs: one caller fsyncs
// for all the records written when it began, the others wait for it and
// fsync again only if their record was not covered. A failed fsync fails
// the log.
//
// With force, it also waits for an fsync that began after the call (Sync's
// promise to fsync now).
func (l *Log) syncThrough(seq uint64, force bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	after := l.syncStarts
	for {
		if l.failure != nil {
			return l.failure
		}
		if l.synced >= seq && (!force || l.syncDone > after) {
			return nil
		}
		if l.written.Seq < seq || l.syncing {
			if l.closed && !l.writing && l.written.Seq < seq {
				return errClosed(l.path)
			}
			l.syncCond.Wait()
			continue
		}
		l.syncing = true
		l.syncStarts++
		gen := l.syncStarts
		target := l.written.Seq
		l.mu.Unlock()
		err := l.syncFile()
		l.mu.Lock()
		l.syncing = false
		if err != nil {
			l.fail(err)
		} else {
			l.setSynced(max(l.synced, target))
			l.syncDone = gen
		}
		l.syncCond.Broadcast()
	}
}

// Sync fsyncs the file: every record appended before Sync was called —
// every record whose Append returned, and every record already given its
// Seq (so what an observer saw) — is written and on stable storage when it
// returns nil. Concurrent calls share fsyncs with each other and with
// AppendSync. A failure (EIO) fails the log.
//
// It works while Close waits for the records being written (a prune
// guard may call it then), and fails (EIO) once Close has closed the file.
func (l *Log) Sync() error {
	l.mu.Lock()
	err := l.failure
	target := l.seq
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.syncMu.Lock()
	closed := l.fileClosed
	l.syncMu.Unlock()
	if closed {
		return errClosed(l.path)
	}
	return l.syncThrough(target, true)
}

// Ready returns nil if the next Append can succeed as far as the Log
// knows: it is open and no write or fsync has failed. Otherwise it returns
// the error Append would (EIO). It makes no system call.
func (l *Log) Ready(context.Context) error {
	if p := l.state.Load(); p != nil {
		return *p
	}
	return nil
}

// Checkpoint returns the Seq and Hash of the last record written. Logging
// it somewhere else (the daemon's journal at shutdown, a ticket) lets a
// later Verify detect truncation up to that record.
func (l *Log) Checkpoint() Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written
}

// Close waits for queued records to be written, fsyncs and closes the file
// and releases its lock. Later Appends fail with EIO; a second Close does
// nothing.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed || l.closing {
		l.mu.Unlock()
		return nil
	}
	l.closing = true
	if l.failure == nil {
		err := errClosed(l.path)
		l.state.Store(&err)
	}
	l.syncCond.Broadcast() // Appends waiting for a checkpoint now fail
	sinks := l.stopCheckpoints()
	l.closed = true
	for l.writing || l.pruning {
		l.idle.Wait()
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()

	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.fileClosed = true
	var errs []error
	if l.f != nil {
		if err := l.f.Sync(); err != nil {
			errs = append(errs, provider.Errorf(provider.EIO, "audit log %s: fsync: %w", l.path, err))
		}
		if err := l.f.Close(); err != nil {
			errs = append(errs, provider.Errorf(provider.EIO, "audit log %s: close: %w", l.path, err))
		}
	}
	// Closing the directory releases the lock.
	if err := unix.Close(l.dfd); err != nil {
		errs = append(errs, provider.Errorf(provider.EIO, "audit directory %s: close: %w", l.dir, err))
	}
	for _, s := range sinks {
		if err := s.Close(); err != nil {
			l.statSinkErrors.Add(1) // a sink never fails the log
		}
	}
	return errors.Join(errs...)
}

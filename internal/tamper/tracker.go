package tamper

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

// Log is what the tracker needs of the audit log; *audit.Log has it.
type Log interface {
	// AppendSync appends r and returns once it is written and fsynced.
	AppendSync(ctx context.Context, r audit.Record) (audit.Record, error)
	// SetObserver makes f see every record appended after the call, in
	// seq order, and returns the head at that point.
	SetObserver(f func(audit.Record)) audit.Checkpoint
	// Sync returns once every record appended before the call is on disk.
	Sync() error
	// Checkpoint returns the last record written.
	Checkpoint() audit.Checkpoint
}

// Options configure Open.
type Options struct {
	// StateDir is the daemon's state directory; the snapshot is
	// StateDir/audit-index.
	StateDir string
	// LogPath is the audit log's current file (StateDir/audit/audit.jsonl).
	LogPath string
	// OpenLog opens the audit log (the daemon's audit.Open with its
	// options). Open calls it once, after checking that a log the
	// snapshot knows still exists. If Open fails afterwards it closes
	// the log when it has a Close method.
	OpenLog func() (Log, error)
	// Counter is the external counter; nil: none.
	Counter Counter
	// AcceptLogChange rebuilds the index from whatever the log holds
	// (--accept-audit-log-change); AcceptCounterChange restarts the
	// counter's tracking from its current value
	// (--accept-counter-change). Each use is an audit.override record.
	AcceptLogChange, AcceptCounterChange bool
	// Clock stamps the records Open and the Tracker write; nil: time.Now.
	Clock func() time.Time
}

// The typed errors of Open and Advance. Each is wrapped (EIO) in a message
// that says what happened and which override accepts it.
var (
	// ErrLogMissing: the snapshot saw records, but the audit log is gone.
	ErrLogMissing = errors.New("audit log deleted")
	// ErrLogReplaced: the log does not hold the record the snapshot saw
	// last (a new chain, a rewrite, or a log cut below it).
	ErrLogReplaced = errors.New("audit log replaced or truncated")
	// ErrIndexMissing: no snapshot, but the log tracks key generations.
	ErrIndexMissing = errors.New("audit index missing")
	// ErrLogAppended: records follow the head of a snapshot written at a
	// clean stop.
	ErrLogAppended = errors.New("audit log appended to after the daemon stopped")
	// ErrIndexCorrupt: the snapshot fails its checks.
	ErrIndexCorrupt = errors.New("audit index corrupt")
	// ErrCounterAhead: the external counter is past what the log says:
	// the state directory and its log are older than the counter.
	ErrCounterAhead = errors.New("external counter ahead of the audit log")
	// ErrCounterBehind: the external counter is more than one behind the
	// log, or missing: it was replaced or reset.
	ErrCounterBehind = errors.New("external counter behind the audit log")
)

const (
	logFlag     = "--accept-audit-log-change"
	counterFlag = "--accept-counter-change"
)

// Tracker is the index of an open log, its snapshot and the external
// counter. Its methods are safe for concurrent use.
type Tracker struct {
	o        Options
	log      Log
	idx      *Index
	snapPath string
	clock    func() time.Time

	snapMu sync.Mutex // serialises snapshot writes

	// Advance: at most one round (one counter record + one increment)
	// runs; callers arriving meanwhile join the next one.
	advMu  sync.Mutex
	cur    *round // running
	next   *round // to start when cur ends
	closed bool
	rounds sync.WaitGroup

	stepMu sync.Mutex // held by the running round
	value  uint64     // the counter's value as last confirmed
	dirty  bool       // an increment failed or its outcome is unknown
}

type round struct {
	done chan struct{}
	err  error
}

// Open loads the snapshot, checks the audit log against it, opens the log
// (o.OpenLog), brings the index up to the log's head, attaches it as the
// log's observer, applies the counter's start rules and writes the
// snapshot. See docs/storage.md, "The audit index", for each refusal.
func Open(ctx context.Context, o Options) (*Tracker, error) {
	if o.StateDir == "" || o.LogPath == "" || o.OpenLog == nil {
		return nil, provider.Errorf(provider.EINVAL, "tamper.Open: StateDir, LogPath and OpenLog are required")
	}
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	snapPath := filepath.Join(o.StateDir, SnapshotName)
	if err := removeTemps(snapPath); err != nil {
		return nil, err
	}
	accept := o.AcceptLogChange
	var accepted []string // what the log override accepts
	snap, err := LoadSnapshot(snapPath)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		snap = nil
	case accept:
		snap = nil
		accepted = append(accepted, "index unreadable")
	default:
		return nil, provider.Errorf(provider.EIO, "%w: %v; the daemon refuses to guess what the audit log said about its keys (%s rebuilds the index from the log, audited)", ErrIndexCorrupt, err, logFlag)
	}
	var S audit.Checkpoint
	if snap != nil {
		S = snap.Head()
	}
	if S.Seq > 0 {
		present, err := logPresent(o.LogPath)
		if err != nil {
			return nil, err
		}
		if !present {
			if !accept {
				return nil, provider.Errorf(provider.EIO, "%w: the state directory last saw seq %d (hash %s) but %s and its segments are gone; "+
					"restore the log, or start a new one with %s (audited; the old log's evidence is lost)", ErrLogMissing, S.Seq, S.Hash, o.LogPath, logFlag)
			}
			accepted = append(accepted, "log deleted")
		}
	}

	lg, err := o.OpenLog()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Tracker, error) {
		if c, ok := lg.(io.Closer); ok {
			if cerr := c.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		return nil, err
	}
	w, err := walkLog(o.LogPath, snap, accept || snap == nil)
	if err != nil {
		return fail(err)
	}
	var idx *Index
	switch {
	case snap == nil:
		idx = w.full
		if len(accepted) == 0 && idx.tracked() {
			if !accept {
				return fail(provider.Errorf(provider.EIO, "%w: %s is absent but the audit log records key generations (through seq %d): "+
					"the state directory was restored or copied without it; restore it, or rebuild it from the log with %s (audited)",
					ErrIndexMissing, snapPath, idx.Head().Seq, logFlag))
			}
			accepted = append(accepted, "index missing")
		}
	case w.problem != "":
		if !accept {
			return fail(provider.Errorf(provider.EIO, "%w: %s; restore the log the state directory was written with, or accept this log with %s (audited; the key generations are then rebuilt from it)",
				ErrLogReplaced, w.problem, logFlag))
		}
		if len(accepted) == 0 {
			accepted = append(accepted, w.short)
		}
		idx = w.full
	case accept:
		idx = w.full
	case snap.stopped && w.inc.Head().Seq > S.Seq:
		return fail(provider.Errorf(provider.EIO, "%w: %d records follow seq %d, where the daemon stopped cleanly: they were appended while it was not running "+
			"(forged), or the log is not the one the state directory was written with; accept them with %s (audited)",
			ErrLogAppended, w.inc.Head().Seq-S.Seq, S.Seq, logFlag))
	default:
		idx = w.inc
	}
	if got, want := lg.SetObserver(idx.Observe), idx.Head(); got != want {
		return fail(provider.Errorf(provider.EIO, "audit log head moved while the index was read (read through %s, log at %s): records were appended during tamper.Open", want, got))
	}
	t := &Tracker{o: o, log: lg, idx: idx, snapPath: snapPath, clock: clock}
	if accept {
		what := "none found"
		if len(accepted) > 0 {
			what = strings.Join(accepted, ", ")
		}
		detail := "log change accepted (" + what + "): snapshot seq " + strconv.FormatUint(S.Seq, 10) + ", log head seq " + strconv.FormatUint(idx.Head().Seq, 10)
		if err := t.note(ctx, OpOverride, "", 0, detail); err != nil {
			return fail(err)
		}
	}
	if o.Counter != nil {
		if err := t.startCounter(ctx); err != nil {
			return fail(err)
		}
	}
	if err := t.Snapshot(); err != nil {
		return fail(err)
	}
	return t, nil
}

// logPresent reports whether the log at path has its current file or a
// sealed segment (<stem>-<20 digits><ext>).
func logPresent(path string) (bool, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, provider.Errorf(provider.EIO, "list audit directory %s: %w", dir, err)
	}
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	for _, e := range entries {
		n := e.Name()
		if n == base {
			return true, nil
		}
		if d, ok := strings.CutPrefix(n, stem+"-"); ok {
			if d, ok = strings.CutSuffix(d, ext); ok && len(d) == 20 && strings.Trim(d, "0123456789") == "" {
				return true, nil
			}
		}
	}
	return false, nil
}

// walked is the outcome of reading the log against a snapshot.
type walked struct {
	full    *Index // every record (nil unless asked for)
	inc     *Index // the snapshot brought up to the log's head
	problem string // why the log is not the one the snapshot saw; "" if it is
	short   string // problem in a few words, for the override record
}

// errStop ends a walk early: the log disagrees with the snapshot.
type errStop struct{ problem, short string }

func (e *errStop) Error() string { return e.problem }

// walkLog verifies the whole log (audit.WalkLog) and checks that it holds
// the snapshot's head S — the record at seq S with its hash, or a first
// record S+1 whose prev is S's hash (the segments through S were moved
// elsewhere) — then feeds the records after S to the snapshot's index;
// with full, every record also to a new index. A log whose first segments
// were moved away (its first record is not seq 1 and no
// audit.segment-pruned record accounts for it) is walked from its own
// first record: what matters here is S, which must then still be there.
func walkLog(path string, snap *Index, full bool) (walked, error) {
	var S audit.Checkpoint
	if snap != nil {
		S = snap.Head()
	}
	var firstRec *audit.Record
	attempt := func(start audit.Checkpoint) (walked, error) {
		var w walked
		if snap != nil {
			w.inc = snap.clone()
		}
		if full {
			w.full = NewIndex()
		}
		seen := S.Seq == 0
		first := true
		mismatch := func(problem, short string) error {
			w.problem, w.short, w.inc = problem, short, nil
			if w.full == nil {
				return &errStop{problem, short}
			}
			return nil // go on: the full index needs every record
		}
		res, err := audit.WalkLog(path, start, func(r audit.Record) error {
			if w.full != nil {
				w.full.Observe(r)
			}
			if first {
				first = false
				if firstRec == nil {
					c := r
					firstRec = &c
				}
				if w.inc != nil && r.Seq > S.Seq+1 {
					return mismatch("the log starts at seq "+strconv.FormatUint(r.Seq, 10)+" but the state directory last saw seq "+strconv.FormatUint(S.Seq, 10)+" (hash "+S.Hash+"): the records between are gone", "log replaced")
				}
				if w.inc != nil && r.Seq == S.Seq+1 {
					if r.Prev != S.Hash {
						return mismatch("record "+strconv.FormatUint(r.Seq, 10)+" does not follow seq "+S.String()+" the state directory last saw: a different chain", "log replaced")
					}
					seen = true
				}
			}
			if w.inc == nil {
				return nil
			}
			switch {
			case r.Seq < S.Seq:
			case r.Seq == S.Seq:
				if r.Hash != S.Hash {
					return mismatch("the log's record at seq "+strconv.FormatUint(S.Seq, 10)+" has hash "+r.Hash+", not the "+S.Hash+" the state directory last saw: the log was replaced or rewritten", "log replaced")
				}
				seen = true
			default:
				w.inc.Observe(r)
			}
			return nil
		})
		var stop *errStop
		if errors.As(err, &stop) {
			return w, nil
		}
		if err == nil && !seen && w.problem == "" {
			w.problem = "the log ends at seq " + strconv.FormatUint(res.LastSeq, 10) + " but the state directory last saw seq " + strconv.FormatUint(S.Seq, 10) + " (hash " + S.Hash + "): the log was truncated or replaced by a shorter one"
			w.short = "log truncated"
			w.inc = nil
		}
		return w, err
	}
	w, err := attempt(audit.Checkpoint{})
	var ve *audit.VerifyError
	if err != nil && errors.As(err, &ve) && firstRec != nil && firstRec.Seq > 1 {
		// Segments before the first record present were moved elsewhere:
		// walk from where the log starts.
		w, err = attempt(audit.Checkpoint{Seq: firstRec.Seq - 1, Hash: firstRec.Prev})
	}
	if err != nil {
		return walked{}, provider.Errorf(provider.EIO, "audit log %s does not verify (keystorectl audit verify shows the first bad record): %w", path, err)
	}
	return w, nil
}

// clone returns a copy of the index.
func (x *Index) clone() *Index {
	x.mu.RLock()
	defer x.mu.RUnlock()
	c := &Index{head: x.head, counter: x.counter, hasCounter: x.hasCounter, keys: make(map[string]entry, len(x.keys))}
	for k, v := range x.keys {
		c.keys[k] = v
	}
	return c
}

// note appends one of the tracker's own records, durably.
func (t *Tracker) note(ctx context.Context, op, key string, gen uint64, detail string) error {
	if len(detail) > audit.MaxField {
		detail = detail[:audit.MaxField]
	}
	r := audit.Record{
		Time:   t.clock(),
		Caller: audit.Caller{UID: int64(os.Geteuid()), GID: int64(os.Getegid()), PID: int64(os.Getpid())},
		Op:     op,
		Key:    key,
		Gen:    gen,
		Result: "ok",
		Detail: detail,
	}
	if _, err := t.log.AppendSync(ctx, r); err != nil {
		return provider.Errorf(provider.EIO, "audit record %s not written: %w", op, err)
	}
	return nil
}

// Index returns the index; it is the log's observer.
func (t *Tracker) Index() *Index { return t.idx }

// Log returns the audit log Open opened.
func (t *Tracker) Log() Log { return t.log }

// Snapshot writes the index to StateDir/audit-index (see
// Index.WriteSnapshot), after syncing the log.
func (t *Tracker) Snapshot() error {
	t.snapMu.Lock()
	defer t.snapMu.Unlock()
	return t.idx.WriteSnapshot(t.snapPath, t.log.Sync)
}

// Close waits for a running Advance, refuses later ones, and writes a
// last snapshot. It closes neither the log nor the counter.
func (t *Tracker) Close() error {
	t.stopAdvances()
	return t.Snapshot()
}

// Stopped is Close for a log that is closed already (its last record, the
// stop checkpoint, on disk): the last snapshot's head is the log's last
// record and is marked as a clean stop, so that the next Open refuses any
// record after it — records appended while the daemon was not running
// (docs/storage.md, "The audit index").
//
// written is the log's last record on disk (audit.Log.Checkpoint after a
// Close that succeeded). When the index has seen more — records given a
// seq whose write failed (a broken log) — nothing is written: the last
// snapshot, which covers only records that were synced, stays.
func (t *Tracker) Stopped(written audit.Checkpoint) error {
	t.stopAdvances()
	t.snapMu.Lock()
	defer t.snapMu.Unlock()
	if h := t.idx.Head(); h != written {
		return provider.Errorf(provider.EIO, "audit index not marked stopped: it has seen the log through seq %d, the log is written through seq %d (a write failed); the last snapshot stays", h.Seq, written.Seq)
	}
	return t.idx.writeSnapshot(t.snapPath, nil, true)
}

func (t *Tracker) stopAdvances() {
	t.advMu.Lock()
	t.closed = true
	t.advMu.Unlock()
	t.rounds.Wait()
}

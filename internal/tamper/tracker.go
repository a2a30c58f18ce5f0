package tamper

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// CheckpointNow makes a signed checkpoint of the head, durably.
	CheckpointNow(ctx context.Context) error
}

// Signer signs the index's snapshots and the log's checkpoints: the
// daemon's audit key (core.SystemSigner).
type Signer interface {
	audit.Signer
	PublicKey() ed25519.PublicKey
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
	// HoldsAppKeys says the state directory holds keys of callers'
	// apps (core.StateInfo.HoldsAppKeys): without an index their history
	// is unknown, so a missing index is refused even when the log holds
	// no generation.
	HoldsAppKeys bool
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
	// ErrLogForged: a signed checkpoint read at start does not verify.
	ErrLogForged = errors.New("audit log checkpoint signature invalid")
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

	snapMu      sync.Mutex    // serialises snapshot writes; guards last and lastChanges
	last        *snapshotBody // the last snapshot written (nil: none yet)
	lastChanges uint64        // the index's changes count it holds
	// checkpoints are the checkpoint records Open read after the
	// snapshot's head, for Verify.
	checkpoints []audit.Record
	// loaded is the snapshot Open started from (nil: none, or an
	// accepted change), for Verify to check its signature and stop mark.
	loaded *Index
	// signer signs snapshots once Start set it (guarded by snapMu).
	signer Signer
	// verified: Verify succeeded (Start need not check again).
	verified bool
	// counting: Start applied the counter's rules; Advance works.
	counting atomic.Bool
	// old is the index an accepted log change started from (nil: none);
	// oldUnusable says it could not be trusted (unreadable, unanchored, or
	// not signed by the key): then no key is adopted.
	old         *Index
	oldUnusable bool
	// signedCounter is the counter value the key vouches for at start:
	// the snapshot's, or that of the last counter record a checkpoint
	// after it covers (has: there is one).
	signedCounter signedValue

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
// (o.OpenLog), brings the index up to the log's head and attaches it as
// the log's observer. It writes nothing but an override's record: the
// checks that need the daemon's key, the counter's rules and the first
// snapshot are Verify's and Start's. See docs/storage.md, "The audit
// index", for each refusal.
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
	// oldUnusable: an index was there but cannot be trusted (unreadable,
	// not anchored): an accepted change then adopts nothing.
	oldUnusable := false
	snap, err := LoadSnapshot(snapPath)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		snap = nil
	case accept:
		snap = nil
		oldUnusable = true
		accepted = append(accepted, "index unreadable")
	default:
		return nil, provider.Errorf(provider.EIO, "%w: %v; the daemon refuses to guess what the audit log said about its keys (%s rebuilds the index from the log, audited)", ErrIndexCorrupt, err, logFlag)
	}
	var S audit.Checkpoint
	if snap != nil {
		S = snap.Head()
		if S.Seq > 0 && snap.anchor == nil {
			if !accept {
				return nil, provider.Errorf(provider.EIO, "%w: %s has no audit.index anchor, so the log cannot vouch for it (edited, or not written by keystored); rebuild it from the log with %s (audited)", ErrIndexCorrupt, snapPath, logFlag)
			}
			accepted = append(accepted, "index not anchored")
			snap = nil
			oldUnusable = true
			S = audit.Checkpoint{}
		}
	}
	if S.Seq > 0 {
		present, err := audit.LogExists(o.LogPath)
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
		if len(accepted) == 0 && (idx.tracked() || o.HoldsAppKeys) {
			if !accept {
				if !idx.tracked() {
					return fail(provider.Errorf(provider.EIO, "%w: %s is absent but the state directory holds keys: "+
						"it was restored or copied without it, its audit log replaced, or it comes from a keystored before generations; "+
						"restore it, or build it from the log with %s (audited; the keys' generations are then taken in)",
						ErrIndexMissing, snapPath, logFlag))
				}
				return fail(provider.Errorf(provider.EIO, "%w: %s is absent but the audit log records key generations (through seq %d): "+
					"the state directory was restored or copied without it; restore it, or rebuild it from the log with %s (audited)",
					ErrIndexMissing, snapPath, idx.Head().Seq, logFlag))
			}
			accepted = append(accepted, "index missing")
		}
	case w.problem != "" && w.edited:
		if !accept {
			return fail(provider.Errorf(provider.EIO, "%w: %s; restore it, or rebuild it from the log with %s (audited)", ErrIndexCorrupt, w.problem, logFlag))
		}
		if len(accepted) == 0 {
			accepted = append(accepted, w.short)
		}
		idx = w.full
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
	case snap.stopped != nil && (w.inc.Head().Seq < snap.stopped.Seq || w.inc.Head().Seq == snap.stopped.Seq && w.inc.Head() != *snap.stopped):
		// Records after the stop are the stop checkpoint's rule's
		// (w.appended, below); a log that no longer reaches it was cut.
		return fail(provider.Errorf(provider.EIO, "%w: the log ends at seq %d, but the daemon stopped cleanly at seq %d (hash %s): the log was cut or rewritten; restore it, or accept this log with %s (audited)",
			ErrLogReplaced, w.inc.Head().Seq, snap.stopped.Seq, snap.stopped.Hash, logFlag))
	default:
		idx = w.inc
	}
	if w.appended != "" && !accept {
		return fail(provider.Errorf(provider.EIO, "%w: %s: records were appended while no daemon ran (forged), or the log is not the one the state directory was written with; accept them with %s (audited)",
			ErrLogAppended, w.appended, logFlag))
	}
	if p := idx.inconsistency(); p != "" && !accept {
		return fail(provider.Errorf(provider.EIO, "%w: %s: records forged into the log to change what it says about a key; restore the log, or accept it with %s (audited)", ErrLogForged, p, logFlag))
	}
	if accept && snap != nil {
		// The old index still says what the lost log said: a key's
		// generation never goes back because its history was lost. (Its
		// signature is checked once the key is loaded, by Verify; only a
		// verified one lets keys be adopted.)
		idx.raiseTo(snap)
	}
	if got, want := lg.SetObserver(idx.Observe), idx.Head(); got != want {
		return fail(provider.Errorf(provider.EIO, "audit log head moved while the index was read (read through %s, log at %s): records were appended during tamper.Open", want, got))
	}
	t := &Tracker{o: o, log: lg, idx: idx, snapPath: snapPath, clock: clock, checkpoints: w.checkpoints, signedCounter: w.signedCounter,
		oldUnusable: oldUnusable}
	if accept {
		t.old = snap
	}
	if snap != nil && !accept {
		t.loaded = snap
	}
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
	return t, nil
}

// Start finishes what Open began, once the daemon's audit key is loaded
// and before anything is served or signed: it checks the snapshot's
// signature and the log's checkpoints after it with the key (an edited
// index, or a log rewritten with its chain recomputed, is refused), applies
// the external counter's start rules to the counter value the key vouches
// for, and writes the first snapshot signed with s. From then on every
// snapshot is signed with s. With AcceptLogChange a bad signature is
// accepted and audited.
func (t *Tracker) Start(ctx context.Context, s Signer) error {
	if !t.verified {
		if err := t.Verify(ctx, s.PublicKey()); err != nil {
			return err
		}
	}
	t.snapMu.Lock()
	t.signer = s
	t.snapMu.Unlock()
	if t.o.Counter != nil {
		if err := t.startCounter(ctx, true); err != nil {
			return err
		}
		t.counting.Store(true)
	}
	return t.SnapshotNow()
}

// Verify is Start's check, for a caller that must do something between
// it and the rest (the daemon attaches the key to the log, which signs a
// checkpoint at once, only once the log is verified); Start then does
// not check again.
func (t *Tracker) Verify(ctx context.Context, pub ed25519.PublicKey) error {
	err := t.verify(ctx, pub)
	t.verified = err == nil
	return err
}

func (t *Tracker) verify(ctx context.Context, pub ed25519.PublicKey) error {
	if o := t.old; o != nil && o.head.Seq > 0 && !o.signedBy(pub) {
		// Accepting a log change: an old index the key did not sign
		// cannot say which keys are new to the log.
		t.oldUnusable = true
		if err := t.note(ctx, OpOverride, "", 0, "log change accepted: the old audit index is not signed by the daemon's audit key; no key generation is adopted"); err != nil {
			return err
		}
	}
	if l := t.loaded; l != nil && l.head.Seq > 0 {
		if !l.signedBy(pub) {
			// Open required an anchor (unless accepting): a snapshot
			// without a valid signature was not written by this key.
			return provider.Errorf(provider.EIO, "%w: %s is not signed by the daemon's audit key: it was edited or written by someone else; restore it, or rebuild it from the log with %s (audited)",
				ErrIndexCorrupt, t.snapPath, logFlag)
		}
	}
	if err := t.verifyCheckpoints(ctx, pub); err != nil {
		return err
	}
	if t.o.Counter != nil {
		// The counter's refusals, before anything is signed.
		return t.startCounter(ctx, false)
	}
	return nil
}

// Adoptable reports whether an accepted log change may take key id's
// stored generation into the log (core.Keystore.AdoptGenerations): only
// when the index the change started from, if any, was verified with the
// key (Verify) and does not know the key — a key it knows keeps the
// generation it knew, so a meta.json from before or after is refused.
// Without an accepted change it is false.
func (t *Tracker) Adoptable(id string) bool {
	if !t.o.AcceptLogChange || t.oldUnusable || !t.verified {
		return false
	}
	if t.old == nil {
		return true
	}
	_, _, known := t.old.Expected(id)
	return !known
}

// verifyCheckpoints checks, with the daemon's checkpoint key, every signed
// checkpoint Open read after the snapshot's head, and that a clean stop's
// mark is such a checkpoint: a log rewritten with its chain recomputed
// after the last snapshot (to change what the index is checked against)
// fails here. With AcceptLogChange a failure is accepted and audited.
func (t *Tracker) verifyCheckpoints(ctx context.Context, key ed25519.PublicKey) error {
	var problem error
	var stop *audit.Checkpoint // the snapshot's stop mark, if any
	if t.loaded != nil {
		stop = t.loaded.stopped
	}
	stopSigned := stop == nil
	for _, r := range t.checkpoints {
		if err := audit.VerifyCheckpoint(r, key); err != nil {
			problem = err
			break
		}
		if stop != nil && r.Seq == stop.Seq && r.Hash == stop.Hash {
			stopSigned = true
		}
	}
	if problem == nil && !stopSigned {
		problem = provider.Errorf(provider.EBADMSG, "the record where the daemon stopped cleanly (seq %d) is not a checkpoint it signed", stop.Seq)
	}
	if problem == nil {
		return nil
	}
	if !t.o.AcceptLogChange {
		return provider.Errorf(provider.EIO, "%w: %v: the log after the last snapshot was rewritten; restore it, or accept it with %s (audited)", ErrLogForged, problem, logFlag)
	}
	return t.note(ctx, OpOverride, "", 0, "log change accepted (checkpoint signature invalid): "+problem.Error())
}

// walked is the outcome of reading the log against a snapshot.
type walked struct {
	full    *Index // every record (nil unless asked for)
	inc     *Index // the snapshot brought up to the log's head
	problem string // why the log is not the one the snapshot saw; "" if it is
	short   string // problem in a few words, for the override record
	// edited: the log's audit.index record does not vouch for the
	// snapshot's entries (the index file was edited); problem says so.
	edited bool
	// checkpoints are the checkpoint records after the snapshot's head,
	// the newest maxTailCheckpoints of them.
	checkpoints []audit.Record
	// appended says which record follows a stop checkpoint with no start
	// checkpoint between: written while no daemon ran ("" if none).
	appended string
	// signedCounter: the counter value vouched for (see Tracker).
	signedCounter signedValue
}

// allowedAfterStop reports whether a record of op may come between a stop
// checkpoint and the next start's: what a starting daemon writes before
// it signs (the log's own notes, an operator's override and its
// adoptions, a key refused while the daemon opens).
func allowedAfterStop(op string) bool {
	switch op {
	case OpOverride, OpAdopted, audit.OpRecoveredTornTail, audit.OpSegmentPruned, "keys.rollback-detected":
		return true
	}
	return false
}

// signedValue is a counter value and whether there is one.
type signedValue struct {
	v   uint64
	has bool
}

// maxTailCheckpoints bounds the checkpoint records Open keeps for
// VerifyCheckpoints (the newest ones; a tail that long is a daemon that
// crashed long after its last snapshot).
const maxTailCheckpoints = 1 << 16

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
		var anchor *audit.Checkpoint
		wantDetail := ""
		if snap != nil && snap.anchor != nil {
			anchor = snap.anchor
			d, err := indexDigest(snap.body())
			if err != nil {
				return w, err
			}
			wantDetail = "sha256=" + d + " head=" + strconv.FormatUint(S.Seq, 10)
		}
		anchorSeen := anchor == nil
		mismatch := func(problem, short string) error {
			w.problem, w.short, w.inc = problem, short, nil
			if w.full == nil {
				return &errStop{problem, short}
			}
			return nil // go on: the full index needs every record
		}
		if snap != nil && snap.hasCounter {
			w.signedCounter = signedValue{snap.counter, true}
		}
		var pending signedValue // the last counter record no checkpoint covers yet
		afterStop := false      // a stop checkpoint and no start checkpoint since
		walk := func(r audit.Record) error {
			if r.Seq > S.Seq {
				reason := ""
				if r.Op == audit.OpCheckpoint {
					reason, _, _ = strings.Cut(r.Detail, " ")
				}
				if reason == "start" {
					afterStop = false
				} else if afterStop && !allowedAfterStop(r.Op) && w.appended == "" {
					w.appended = "a " + r.Op + " record (seq " + strconv.FormatUint(r.Seq, 10) + ") follows the daemon's stop checkpoint before any start"
				}
				switch r.Op {
				case audit.OpCheckpoint:
					if reason == "stop" {
						afterStop = true
					}
					if len(w.checkpoints) == maxTailCheckpoints {
						w.checkpoints = append(w.checkpoints[:0], w.checkpoints[1:]...)
					}
					w.checkpoints = append(w.checkpoints, r)
					if pending.has {
						w.signedCounter, pending = pending, signedValue{}
					}
				case OpCounter:
					if r.Gen > 0 && r.Result == "ok" {
						pending = signedValue{r.Gen, true}
					}
				}
			}
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
				if anchor != nil && r.Seq == anchor.Seq {
					if r.Hash != anchor.Hash {
						return mismatch("the log's record at seq "+strconv.FormatUint(r.Seq, 10)+" is not the audit.index record the index was written with: the log was replaced or rewritten", "log replaced")
					}
					if r.Op != OpIndex || r.Detail != wantDetail {
						w.edited = true
						return mismatch("the index's entries do not match the digest its audit.index record (seq "+strconv.FormatUint(r.Seq, 10)+") holds: "+SnapshotName+" was edited", "index edited")
					}
					anchorSeen = true
				}
				w.inc.Observe(r)
			}
			return nil
		}
		var res audit.VerifyResult
		var err error
		if full || S.Seq == 0 {
			res, err = audit.WalkLog(path, start, walk)
		} else {
			// Only the tail: the record at S ties it to what the
			// snapshot saw.
			res, err = audit.WalkLogFrom(path, S.Seq, walk)
		}
		if err == nil && w.problem == "" && seen && !anchorSeen {
			w.problem = "the log ends at seq " + strconv.FormatUint(res.LastSeq, 10) + " before the audit.index record (seq " + strconv.FormatUint(anchor.Seq, 10) + ") the state directory last wrote: the log was truncated or replaced by a shorter one"
			w.short = "log truncated"
			w.inc = nil
		}
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
	_, err := t.appendOwn(ctx, op, key, gen, detail)
	return err
}

// appendOwn is note returning the record as written.
func (t *Tracker) appendOwn(ctx context.Context, op, key string, gen uint64, detail string) (audit.Record, error) {
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
	w, err := t.log.AppendSync(ctx, r)
	if err != nil {
		return audit.Record{}, provider.Errorf(provider.EIO, "audit record %s not written: %w", op, err)
	}
	return w, nil
}

// Index returns the index; it is the log's observer.
func (t *Tracker) Index() *Index { return t.idx }

// Log returns the audit log Open opened.
func (t *Tracker) Log() Log { return t.log }

// snapshotEvery is how many records may pass before Snapshot writes a
// snapshot with no key changed (so that a start reads a short tail).
const snapshotEvery = 4096

// Snapshot writes the index to StateDir/audit-index, anchored in the log:
// it copies the index, appends (durably) an audit.index record holding
// the copy's digest, and writes the copy with that record as its anchor,
// so that Open can check the entries against the log and an edited index
// is refused. It writes nothing when no key changed and fewer than
// snapshotEvery records passed since the last one.
func (t *Tracker) Snapshot() error { return t.snapshot(false) }

// SnapshotNow is Snapshot that always writes.
func (t *Tracker) SnapshotNow() error { return t.snapshot(true) }

// SnapshotThrough makes sure the snapshot's head is at seq or later (the
// audit log's prune guard: segments through seq may then be removed).
func (t *Tracker) SnapshotThrough(seq uint64) error {
	t.snapMu.Lock()
	done := t.last != nil && t.last.Head.Seq >= seq
	t.snapMu.Unlock()
	if done {
		return nil
	}
	return t.snapshot(true)
}

func (t *Tracker) snapshot(force bool) error {
	t.snapMu.Lock()
	defer t.snapMu.Unlock()
	t.idx.mu.RLock()
	changes, head := t.idx.changes, t.idx.head
	t.idx.mu.RUnlock()
	if !force && t.last != nil && changes == t.lastChanges && head.Seq-t.last.Head.Seq < snapshotEvery {
		return nil
	}
	if t.signer == nil {
		return provider.Errorf(provider.EUNAVAILABLE, "audit index not written: no signer yet (Tracker.Start)")
	}
	b := t.idx.body()
	d, err := indexDigest(b)
	if err != nil {
		return err
	}
	r, err := t.appendOwn(context.Background(), OpIndex, "", 0, "sha256="+d+" head="+strconv.FormatUint(b.Head.Seq, 10))
	if err != nil {
		return provider.Errorf(provider.EIO, "audit index not written: %w", err)
	}
	b.Anchor = &snapshotHead{Seq: r.Seq, Hash: r.Hash}
	if err := t.sign(b); err != nil {
		return err
	}
	if err := writeSnapshot(t.snapPath, b); err != nil {
		return err
	}
	t.last, t.lastChanges = b, changes
	return nil
}

// Close waits for a running Advance, refuses later ones, and writes a
// last snapshot. It closes neither the log nor the counter.
func (t *Tracker) Close() error {
	t.stopAdvances()
	return t.SnapshotNow()
}

// Stopped marks a clean stop, after the daemon wrote a snapshot
// (SnapshotNow) and then closed the log, whose last record is its stop
// checkpoint: the last snapshot is written again with that record as its
// stop mark, so that the next Open refuses a log cut short of it, and
// Verify requires that record to be a checkpoint the key signed. (Records
// appended after it are refused by the stop checkpoint itself, whatever
// index is put back.)
//
// written is the log's last record on disk (audit.Log.Checkpoint after a
// Close that succeeded). Nothing is written when a key changed since the
// last snapshot, or the index has seen a record the log did not write (a
// broken log): the last snapshot, which covers only synced records, stays.
func (t *Tracker) Stopped(written audit.Checkpoint) error {
	t.stopAdvances()
	t.snapMu.Lock()
	defer t.snapMu.Unlock()
	t.idx.mu.RLock()
	changes, head := t.idx.changes, t.idx.head
	t.idx.mu.RUnlock()
	switch {
	case t.last == nil || t.last.Anchor == nil:
		return provider.Errorf(provider.EIO, "audit index not marked stopped: no snapshot was written")
	case head != written:
		return provider.Errorf(provider.EIO, "audit index not marked stopped: it has seen the log through seq %d, the log is written through seq %d (a write failed); the last snapshot stays", head.Seq, written.Seq)
	case changes != t.lastChanges || written.Seq < t.last.Anchor.Seq:
		return provider.Errorf(provider.EIO, "audit index not marked stopped: keys changed after the last snapshot; it stays")
	}
	b := *t.last
	b.Stopped = &snapshotHead{Seq: written.Seq, Hash: written.Hash}
	if err := t.sign(&b); err != nil {
		return err
	}
	return writeSnapshot(t.snapPath, &b)
}

// signTimeout bounds the signing of one snapshot.
const signTimeout = 10 * time.Second

// sign signs b with the Start's signer. Called with snapMu held.
func (t *Tracker) sign(b *snapshotBody) error {
	if t.signer == nil {
		return provider.Errorf(provider.EUNAVAILABLE, "audit index not written: no signer yet (Tracker.Start)")
	}
	msg, err := signedMessage(b)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	sig, err := t.signer.Sign(ctx, msg)
	if err != nil {
		return provider.Errorf(provider.EIO, "audit index not written: sign: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return provider.Errorf(provider.EIO, "audit index not written: the signer returned %d bytes, not an Ed25519 signature", len(sig))
	}
	b.Signature = base64.StdEncoding.EncodeToString(sig)
	return nil
}

func (t *Tracker) stopAdvances() {
	t.advMu.Lock()
	t.closed = true
	t.advMu.Unlock()
	t.rounds.Wait()
}

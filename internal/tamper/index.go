// Package tamper keeps what the audit log says about each key's
// generation (the index), snapshots it in the state directory, refuses to
// start on an audit log that was deleted, replaced or cut below what the
// state directory last saw, and advances an external monotonic counter
// (a file elsewhere, a TPM NV counter) with the state changes, so that a
// rollback of the state directory together with its log is seen at the
// next start. docs/storage.md, "The audit index", is its contract.
package tamper

import (
	"crypto/ed25519"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/nexus-os/keystored/audit"
)

// Ops the index reads and the records this package writes.
const (
	// OpApplied is the record written after a lifecycle change with
	// generation Gen was persisted.
	OpApplied = "keys.applied"
	// OpCounter is the record appended before the external counter is
	// incremented; its Gen is the counter's value after the increment and
	// its Detail the counter's Describe.
	OpCounter = "audit.counter"
	// OpCounterFinished is the note appended at start after an increment
	// that an earlier run recorded but did not make (a crash between the
	// OpCounter record and the increment).
	OpCounterFinished = "audit.counter-finished"
	// OpOverride records an operator override (--accept-audit-log-change,
	// --accept-counter-change); its Detail says what was accepted.
	OpOverride = "audit.override"
	// OpAdopted is the record of a key generation taken into the log
	// after an accepted log change (core.Keystore.AdoptGenerations).
	OpAdopted = "keys.adopted"
	// OpIndex records the digest of a snapshot of the index
	// (Tracker.Snapshot): Detail "sha256=<digest> head=<seq>".
	OpIndex = "audit.index"
)

// entry is what the log says about one key.
type entry struct {
	gen     uint64
	seq     uint64 // seq of the intent record
	applied bool
}

// Index maps key IDs to the generation of their last intent record, in
// the order the log holds them. Its methods are safe for concurrent use;
// Observe is O(1) and is called under the audit log's lock.
type Index struct {
	mu         sync.RWMutex
	head       audit.Checkpoint
	counter    uint64
	hasCounter bool
	keys       map[string]entry
	// changes counts the changes of keys and counter (Observe), so that
	// a snapshot with nothing new can be skipped.
	changes uint64
	// anchor and stopped are what a loaded snapshot says besides its
	// entries (snapshotBody): the audit.index record that vouches for
	// them, and the log's last record at a clean stop. Nil otherwise.
	anchor, stopped *audit.Checkpoint
	// sig and signedMsg are a loaded snapshot's signature and the bytes
	// it signs (Tracker.Start checks them).
	sig, signedMsg []byte
	// legacyMsg is what a snapshot written before digests were signed
	// was signed over (legacyMessage): the body itself.
	legacyMsg []byte
	// problem is the first intent record that does not follow its key's
	// last one (a generation going back, or jumping): forged records.
	problem string
}

// NewIndex returns an empty index: the state of an empty log.
func NewIndex() *Index {
	return &Index{head: audit.Checkpoint{Hash: audit.Genesis}, keys: map[string]entry{}}
}

// keyID is the key ID a record names: its Key without an "@version"
// suffix (key IDs never hold '@').
func keyID(key string) string {
	id, _, _ := strings.Cut(key, "@")
	return id
}

// Observe takes the next record of the log into account:
//   - an intent record (Gen > 0, Result "ok", any Op but keys.applied and
//     the log's own "audit.*": a change's own "keys.rotate", or the
//     record of the request that made it, "daemon.sweep" included) sets
//     its key's entry to (Gen, Seq, not applied);
//   - a keys.applied record whose Gen is its key's entry's marks it
//     applied (any other keys.applied record is ignored);
//   - an audit.counter record sets the counter value to its Gen.
//
// Every record moves the head. A record at or below the head (seen
// already) is ignored, so Observe is idempotent.
func (x *Index) Observe(r audit.Record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r.Seq <= x.head.Seq {
		return
	}
	x.head = audit.Checkpoint{Seq: r.Seq, Hash: r.Hash}
	switch {
	case r.Op == OpApplied:
		id := keyID(r.Key)
		if e, ok := x.keys[id]; ok && r.Gen != 0 && e.gen == r.Gen {
			e.applied = true
			x.keys[id] = e
			x.changes++
		}
	case r.Op == OpCounter:
		if r.Gen > 0 && r.Result == "ok" {
			x.counter, x.hasCounter = r.Gen, true
			x.changes++
		}
	case r.Gen > 0 && r.Result == "ok" && !strings.HasPrefix(r.Op, "audit."):
		// An intent: a key change's own record ("keys.rotate"), or the
		// record of the request that made it ("daemon.sweep" too). It
		// follows its key's last one: the next generation, or the same
		// one again after a change that was not applied. Only an
		// adoption (an accepted log change) may move it otherwise.
		if id := keyID(r.Key); id != "" {
			if e, ok := x.keys[id]; ok && r.Op != OpAdopted && r.Gen != e.gen+1 && !(r.Gen == e.gen && !e.applied) && x.problem == "" {
				x.problem = "key " + id + " goes from generation " + strconv.FormatUint(e.gen, 10) + " to " + strconv.FormatUint(r.Gen, 10) +
					" at seq " + strconv.FormatUint(r.Seq, 10)
			}
			x.keys[id] = entry{gen: r.Gen, seq: r.Seq}
			x.changes++
		}
	}
}

// Expected returns what the log says about key id: the generation of its
// last intent record, whether an applied record followed it, and whether
// the log knows the key at all. It implements core.Generations.
func (x *Index) Expected(id string) (gen uint64, applied, found bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.keys[id]
	return e.gen, e.applied, ok
}

// Head returns the last record observed (seq 0 and the genesis hash for
// an empty log).
func (x *Index) Head() audit.Checkpoint {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.head
}

// Keys returns the IDs of the keys the log knows, sorted.
func (x *Index) Keys() []string {
	x.mu.RLock()
	ids := make([]string, 0, len(x.keys))
	for id := range x.keys {
		ids = append(ids, id)
	}
	x.mu.RUnlock()
	sort.Strings(ids)
	return ids
}

// Counter returns the value of the last audit.counter record, and whether
// there is one.
func (x *Index) Counter() (uint64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.counter, x.hasCounter
}

// tracked reports whether the index holds anything a missing snapshot
// would lose: a key entry or a counter record.
func (x *Index) tracked() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.hasCounter {
		return true
	}
	for id := range x.keys {
		// The daemon's own key is made at its first start, before the
		// first snapshot: a crash then is no missing index.
		if !strings.HasPrefix(id, reservedPrefix) {
			return true
		}
	}
	return false
}

// reservedPrefix starts the IDs of the daemon's own keys (core.ReservedApp).
const reservedPrefix = "keystored/"

// inconsistency returns the first intent record that did not follow its
// key's last one, or "".
func (x *Index) inconsistency() string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.problem
}

// raiseTo takes from old every key entry whose generation is higher than
// this index's (or that it lacks): an accepted log change never lowers
// what the state directory last knew of a key.
func (x *Index) raiseTo(old *Index) {
	old.mu.RLock()
	defer old.mu.RUnlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, e := range old.keys {
		if cur, ok := x.keys[id]; !ok || cur.gen < e.gen {
			e.seq = max(1, min(e.seq, x.head.Seq)) // the snapshot's head is past it by then
			x.keys[id] = e
			x.changes++
		}
	}
}

// signedBy reports whether the loaded snapshot's signature is pub's, over
// its digest (signedMessage) or, for a snapshot written before digests
// were signed, over its body (legacyMessage).
func (x *Index) signedBy(pub ed25519.PublicKey) bool {
	if len(x.sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, x.signedMsg, x.sig) || x.legacyMsg != nil && ed25519.Verify(pub, x.legacyMsg, x.sig)
}

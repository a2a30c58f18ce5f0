package core

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
)

// Generations is what the audit log says about each key's generation
// (docs/storage.md, Generations and rollback). The daemon derives it from
// the log (an index kept beside the state); the keystore checks every key
// record it reads from storage against it.
type Generations interface {
	// Expected returns what the audit log says about key id: the generation of
	// its last intent record, whether an applied record followed it, and whether
	// the log knows the key at all.
	Expected(id string) (gen uint64, applied, found bool)
}

// ErrRolledBack marks a key whose stored record is older than the audit
// log says it is: its files were restored from an older copy.
var ErrRolledBack = errors.New("key state rolled back (restored from an older copy)")

// ErrNotInLog marks a key whose stored generation the audit log does not
// know: the log was truncated or replaced, or the key's files were forged.
var ErrNotInLog = errors.New("key generation is not in the audit log (truncated or replaced log, or forged key files)")

// refusals remembers the keys refused by the generation check, so that a
// refused key is refused again without reading storage, and whether the
// refusal's note reached the audit sink (written once per key per
// process; a failed note is tried again at the next refusal).
type refusals struct {
	mu sync.Mutex
	m  map[string]*refusal
}

type refusal struct {
	err    error
	reason string // the note's detail
	noted  bool   // written, or being written
}

// get returns the refusal of id (nil: none) and whether the caller is to
// write its note (claimed: a concurrent get or add answers false).
func (r *refusals) get(id string) (err error, reason string, note bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.m[id]
	if f == nil {
		return nil, "", false
	}
	return f.err, f.reason, f.claim()
}

func (f *refusal) claim() bool {
	if f.noted {
		return false
	}
	f.noted = true
	return true
}

// forget drops the refusal of id (AdoptGenerations).
func (r *refusals) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// add records the refusal of id (the first one stays) and returns the
// one in force.
func (r *refusals) add(id string, err error, reason string) (error, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]*refusal{}
	}
	f := r.m[id]
	if f == nil {
		f = &refusal{err: err, reason: reason}
		r.m[id] = f
	}
	return f.err, f.reason, f.claim()
}

// unclaim gives back the note of id after it failed to be written.
func (r *refusals) unclaim(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.m[id]; f != nil {
		f.noted = false
	}
}

// refused returns the remembered refusal of id, writing its note if an
// earlier attempt failed.
func (k *Keystore) refused(ctx context.Context, id KeyID) error {
	ids := id.String()
	err, reason, note := k.refusals.get(ids)
	if err != nil && note {
		k.noteRefusal(ctx, ids, reason)
	}
	return err
}

// generationRule applies the rule of docs/storage.md to a key whose
// meta.json holds generation m (present false: no meta.json) and of which
// the log says (i, applied, found). It returns nil, or the wrapped error
// and the note's short reason.
func generationRule(id string, m uint64, present bool, i uint64, applied, found bool) (error, string) {
	ms := "none"
	if present {
		ms = strconv.FormatUint(m, 10)
	}
	is := strconv.FormatUint(i, 10)
	switch {
	case !found && (!present || m == 0):
		return nil, "" // a legacy or unknown key, as before generations
	case !found:
		return provider.Errorf(provider.EIO, "key %s: %w: meta.json has generation %s, the audit log does not know the key",
			id, ErrNotInLog, ms), "not in log: generation " + ms + ", log does not know the key"
	case present && m == i, present && m+1 == i && !applied, !present && i == 1 && !applied:
		// Equal, or a change interrupted between its intent record and
		// its persist (the next change takes generation i again).
		return nil, ""
	case !present || m < i:
		return provider.Errorf(provider.EIO, "key %s: %w: meta.json has generation %s, the audit log says %s",
			id, ErrRolledBack, ms, is), "rolled back: generation " + ms + ", log says " + is
	}
	return provider.Errorf(provider.EIO, "key %s: %w: meta.json has generation %s, the audit log says %s",
		id, ErrNotInLog, ms, is), "not in log: generation " + ms + ", log says " + is
}

// checkGeneration checks rec (nil: no meta.json), just read from storage,
// against the audit log's generations. A refusal is remembered for the
// key and noted once (OpRollbackDetected).
func (k *Keystore) checkGeneration(ctx context.Context, id KeyID, rec *record) error {
	if k.gens == nil {
		return nil
	}
	ids := id.String()
	i, applied, found := k.gens.Expected(ids)
	var m uint64
	if rec != nil {
		m = rec.meta.Generation
	}
	err, reason := generationRule(ids, m, rec != nil, i, applied, found)
	if err == nil {
		return nil
	}
	err, reason, note := k.refusals.add(ids, err, reason)
	if note {
		k.noteRefusal(ctx, ids, reason)
	}
	return err
}

// noteRefusal writes the OpRollbackDetected note of key id. A note that
// fails is written at the key's next refusal.
func (k *Keystore) noteRefusal(ctx context.Context, id, reason string) {
	ev := Event{Time: k.clock.Now(), Caller: systemCaller, Op: OpRollbackDetected, Key: id, Result: provider.EIO, Detail: reason}
	if k.audit.Note(context.WithoutCancel(ctx), ev) != nil {
		k.refusals.unclaim(id)
	}
}

// applied writes the OpApplied note of a lifecycle change that ev
// committed and that is now durable. An error fails the call with EIO;
// the change stays.
func (k *Keystore) applied(ctx context.Context, ev *Event) error {
	n := Event{Time: k.clock.Now(), Caller: ev.Caller, Op: OpApplied, Key: ev.Key, Version: ev.Version, Gen: ev.Gen}
	if err := k.audit.Note(context.WithoutCancel(ctx), n); err != nil {
		return provider.Errorf(provider.EIO, "key %s changed (generation %d) but the audit log failed: %w", ev.Key, ev.Gen, err)
	}
	return nil
}

// CheckKey reads key id from storage, bypassing the record cache, and
// checks it against the audit log's generations: nil, the EIO of a
// rolled-back key (ErrRolledBack) or of one the log does not know
// (ErrNotInLog), ENOENT when there is no such key. A refusal is
// remembered for the process, as when a call reads the key. The daemon
// runs it on every key at start. It writes no audit event of its own
// (a refusal writes its OpRollbackDetected note).
func (k *Keystore) CheckKey(ctx context.Context, id KeyID) error {
	if id.IsZero() {
		return provider.Errorf(provider.EINVAL, "no key ID")
	}
	rec, err := k.load(ctx, id)
	if err != nil {
		return err
	}
	if rec == nil {
		return provider.Errorf(provider.ENOENT, "key %s: no such key", id)
	}
	return nil
}

// AdoptGenerations is the keystore's part of an operator's accepted audit
// log change (keystored --accept-audit-log-change): the accepted log lacks
// the history of keys whose files are newer than it (ErrNotInLog). For
// every stored key whose meta.json holds a generation the log does not
// know, or one beyond the log's, it writes a note OpAdopted with that
// generation, so that the log (and its index) takes it in, and forgets
// the key's refusal. Keys the log proves older than it says (ErrRolledBack)
// are not adopted: accepting a log is not accepting a rollback. It returns
// the IDs adopted. Call it before serving.
//
// Only keys for which adopt returns true are adopted (nil: all).
func (k *Keystore) AdoptGenerations(ctx context.Context, adopt func(id string) bool) ([]KeyID, error) {
	if k.gens == nil {
		return nil, nil
	}
	var adopted []KeyID
	apps, err := k.dirNames(layoutRoot)
	if err != nil {
		return nil, err
	}
	for _, app := range apps {
		purposes, err := k.dirNames(layoutRoot + "/" + app)
		if err != nil {
			return adopted, err
		}
		for _, purpose := range purposes {
			names, err := k.keyNames(layoutRoot + "/" + app + "/" + purpose)
			if err != nil {
				return adopted, err
			}
			for _, name := range names {
				id, err := provider.NewKeyID(app, purpose, name)
				if err != nil {
					continue // not a key: listings skip it too
				}
				if err := provider.CheckContext(ctx); err != nil {
					return adopted, err
				}
				if adopt != nil && !adopt(id.String()) {
					continue
				}
				ok, err := k.adoptGeneration(ctx, id)
				if err != nil {
					return adopted, err
				}
				if ok {
					adopted = append(adopted, id)
				}
			}
		}
	}
	return adopted, nil
}

// adoptGeneration is AdoptGenerations for one key: it reads meta.json without the
// generation check and notes its generation when the log lacks it.
func (k *Keystore) adoptGeneration(ctx context.Context, id KeyID) (bool, error) {
	path, data, err := k.readMeta(id)
	if errors.Is(err, provider.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, provider.WithOp("adopt", id.String(), err)
	}
	var b metaBody
	if err := decodeChecked("meta", path, data, &b); err != nil {
		return false, nil // unreadable for another reason: it stays so
	}
	ids := id.String()
	i, applied, found := k.gens.Expected(ids)
	rule, _ := generationRule(ids, b.Generation, true, i, applied, found)
	if rule == nil || !errors.Is(rule, ErrNotInLog) {
		return false, nil
	}
	ev := Event{Time: k.clock.Now(), Caller: systemCaller, Op: OpAdopted, Key: ids, Version: Version(b.Current), Gen: b.Generation,
		Detail: "generation not in the accepted audit log"}
	if err := k.audit.Note(context.WithoutCancel(ctx), ev); err != nil {
		return false, provider.Errorf(provider.EIO, "key %s: noting its generation %d: %w", ids, b.Generation, err)
	}
	k.refusals.forget(ids)
	return true, nil
}

// refusedWithoutFiles returns the keys of apps, after the page token
// after, that the generation check refused and whose file (or legacy
// directory) is gone,
// sorted: a listing finds nothing to visit for them.
func (k *Keystore) refusedWithoutFiles(apps []string, after KeyID) []UnreadableKey {
	if k.gens == nil {
		return nil
	}
	k.refusals.mu.Lock()
	ids := make([]string, 0, len(k.refusals.m))
	errs := make(map[string]error, len(k.refusals.m))
	for id, f := range k.refusals.m {
		ids = append(ids, id)
		errs[id] = f.err
	}
	k.refusals.mu.Unlock()
	sort.Strings(ids)
	var out []UnreadableKey
	for _, s := range ids {
		id, err := provider.ParseKeyID(s)
		if err != nil || !slices.Contains(apps, id.App()) || (!after.IsZero() && !idLess(after, id)) {
			continue
		}
		if k.index.has(id) {
			continue // its file or directory is in the index: listed with it
		}
		out = append(out, UnreadableKey{ID: id, Err: errs[s]})
	}
	return out
}

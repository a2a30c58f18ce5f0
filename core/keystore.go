package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Config configures Open. Storage, Provider, Clock and Audit are required.
type Config struct {
	Storage  Storage
	Provider provider.Provider
	Clock    Clock
	Audit    AuditSink
	// Algorithms is the registry the keystore knows; nil means
	// alg.Default().
	Algorithms *alg.Registry
	// CheckSignatures makes Sign verify every signature the provider
	// returns against the stored public key before releasing it (a
	// defence against a faulty or malicious provider; costs one verify).
	CheckSignatures bool
	// CacheSize bounds how many keys are kept in memory (default
	// DefaultCacheSize; at most MaxCacheSize). The cache evicts the keys
	// least recently used (CLOCK: see keyCache).
	CacheSize int
	// Quotas bound what each app may hold (zero: the defaults, see
	// DefaultQuota).
	Quotas Quotas
	// Random is where data keys and import tokens come from; nil means
	// crypto/rand.Reader (the kernel's getrandom). Tests may pass a
	// deterministic reader.
	Random io.Reader
	// Generations is what the audit log says about each key's generation;
	// every key record read from storage is checked against it (see
	// Generations). nil: no check.
	Generations Generations
}

// DefaultCacheSize is the default number of keys kept in memory: 2^17,
// so that a state of 10^5 keys stays in memory. A cached Ed25519 key
// costs about 750 bytes of live heap (its record, public key, handle;
// BenchmarkMemoryPerKey, docs/performance.md "Scale").
const DefaultCacheSize = 1 << 17

// MaxCacheSize is the largest Config.CacheSize accepted.
const MaxCacheSize = 1 << 24

// Keystore is a key store over one storage and one provider. It is safe for
// concurrent use. One Keystore owns its storage: two keystores over the same
// directory are refused by the directory adapter's lock.
type Keystore struct {
	random    io.Reader
	imports   *importTable // import.go
	st        Storage
	p         provider.Provider
	clock     Clock
	audit     AuditSink
	reg       *alg.Registry
	info      provider.Info
	insecure  bool
	checkSigs bool
	quotas    Quotas
	keyCount  keyCounts // per-app key counts for the keys quota
	gens      Generations
	refusals  refusals // generations.go

	// kekMu orders KEK rotations against the operations that make
	// handles: creates and rotations hold it for reading from the
	// provider's Generate until their handle is durable, so that a
	// rotation's Begin (under the write lock) is never overtaken by a
	// handle wrapped under the old KEK that its walk might miss.
	// rotating admits one KEK rotation at a time (kekrot.go).
	kekMu    sync.RWMutex
	rotating sync.Mutex
	// unrecorded is the pending KEK of a rotation whose Begin took effect
	// but whose MANIFEST record (kek_next) failed: until a rerun records
	// it, ready refuses every change, so that no key is made under a KEK
	// the state does not name (it would be lost with a .next file that a
	// backup, or an operator tidying up, left out).
	unrecorded atomic.Pointer[string]

	// keys holds each key in memory (by KeyID.String()); the entries have
	// their own locks.
	keys *keyCache
	// index is the sorted index of the key IDs in storage (index.go).
	index keyIndex
}

// entry holds one key's record. Readers take the current record with one
// atomic load and no lock (a record is never changed once published: a
// transition builds a successor, persists it, then publishes it); the
// mutex orders transitions and the first load from storage.
type entry struct {
	mu       sync.Mutex
	idStr    string
	loaded   atomic.Bool
	evicted  atomic.Bool
	usedMark                        // cache.go
	pinned   atomic.Bool            // never evicted (the audit signing key)
	rec      atomic.Pointer[record] // nil: the key does not exist
}

// Open opens the keystore in st with provider p. It writes the MANIFEST on
// first use and refuses a state made by a provider with another name, or
// by a secure provider when p is insecure (and the reverse).
func Open(ctx context.Context, o Config) (*Keystore, error) {
	if o.Storage == nil || o.Provider == nil || o.Clock == nil || o.Audit == nil {
		return nil, provider.Errorf(provider.EINVAL, "core.Open needs Storage, Provider, Clock and Audit")
	}
	if err := o.Quotas.Check(); err != nil {
		return nil, err
	}
	k := &Keystore{st: o.Storage, p: o.Provider, clock: o.Clock, audit: o.Audit, reg: o.Algorithms,
		checkSigs: o.CheckSignatures, quotas: o.Quotas,
		random: o.Random, imports: newImportTable(), gens: o.Generations}
	if k.random == nil {
		k.random = rand.Reader
	}
	if k.reg == nil {
		k.reg = alg.Default()
	}
	switch size := o.CacheSize; {
	case size == 0:
		k.keys = newKeyCache(DefaultCacheSize)
	case size < 0 || size > MaxCacheSize:
		return nil, provider.Errorf(provider.EINVAL, "cache size must be from 1 to %d (0 for the default)", MaxCacheSize)
	default:
		k.keys = newKeyCache(size)
	}
	info, err := o.Provider.Info(ctx)
	if err != nil {
		return nil, provider.WithOp("open", "", err)
	}
	if err := info.Check(); err != nil {
		return nil, provider.Errorf(provider.EINVAL, "provider info is malformed: %w", err)
	}
	// Keep only the algorithms this keystore knows.
	var known []Algorithm
	for _, a := range info.Algorithms {
		if _, err := k.reg.Lookup(a); err == nil {
			known = append(known, a)
		}
	}
	info.Algorithms = known
	k.info = info
	k.insecure = !info.Secure
	if err := k.checkManifest(); err != nil {
		return nil, err
	}
	return k, nil
}

// ProviderInfo returns the provider's Info as Open read it (algorithms
// limited to those the keystore knows; KEKs as they were then: KEKStatus
// has the current ones).
func (k *Keystore) ProviderInfo() provider.Info {
	i := k.info
	i.Algorithms = append([]Algorithm(nil), i.Algorithms...)
	i.KEKs = append([]string(nil), i.KEKs...)
	return i
}

// Insecure reports whether the provider is insecure (keys carry
// Insecure: true).
func (k *Keystore) Insecure() bool { return k.insecure }

// checkManifest writes the MANIFEST of a new state, or checks the
// existing one against the provider: same name, same Secure flag, and,
// when the provider announces KEKs, a recorded KEK among them (a state
// from before KEKs were recorded gets the provider's first).
func (k *Keystore) checkManifest() error {
	m, found, err := readManifest(k.st)
	if err != nil {
		return err
	}
	if !found {
		entries, derr := k.st.ReadDir(layoutRoot)
		if derr == nil && len(entries) > 0 {
			return provider.Errorf(provider.EIO, "state directory holds keys but no %s; refusing to guess which provider made them", manifestPath)
		}
		if derr != nil && !errors.Is(derr, provider.ErrNotFound) {
			return derr
		}
		body := manifestBody{Provider: k.info.Name, Secure: k.info.Secure, Created: k.clock.Now().UTC()}
		if len(k.info.KEKs) > 0 {
			body.KEK = k.info.KEKs[0]
		}
		return writeManifest(k.st, body)
	}
	if err := checkProvider(m, k.info); err != nil {
		return err
	}
	if len(k.info.KEKs) > 0 && m.KEK == "" {
		// A state from before the KEK was recorded: record the one the
		// provider wraps new handles under.
		m.KEK = k.info.KEKs[0]
		return writeManifest(k.st, m)
	}
	if len(k.info.KEKs) > 0 && m.KEKNext != "" {
		return k.checkRotation(m)
	}
	if len(k.info.KEKs) > 1 && k.info.KEKs[0] != m.KEK {
		// The provider wraps new handles under a pending KEK the MANIFEST
		// does not name (a rotation's Begin took effect, its record did
		// not): record it, so that a later start without it is refused.
		m.KEKNext = k.info.KEKs[0]
		return writeManifest(k.st, m)
	}
	return nil
}

// checkProvider reports whether the provider described by info may open
// the state whose MANIFEST is m: the same name, the same Secure flag and,
// when both the provider and m name KEKs (and no rotation is recorded:
// checkRotation judges those), the recorded KEK among the provider's.
func checkProvider(m manifestBody, info provider.Info) error {
	switch {
	case m.Secure && !info.Secure:
		return provider.Errorf(provider.EPERM, "state was made by the secure provider %q; refusing to open it with the insecure provider %q", m.Provider, info.Name)
	case !m.Secure && info.Secure:
		return provider.Errorf(provider.EPERM, "state was made by the INSECURE provider %q; refusing to open it with the secure provider %q (its keys are known; start a new state directory)", m.Provider, info.Name)
	case m.Provider != info.Name:
		return provider.Errorf(provider.EPERM, "state was made by provider %q, not %q", m.Provider, info.Name)
	}
	if len(info.KEKs) == 0 || m.KEK == "" || m.KEKNext != "" {
		return nil // nothing recorded, a provider that wraps nothing under a KEK, or a rotation
	}
	if !slices.Contains(info.KEKs, m.KEK) {
		return provider.Errorf(provider.EIO, "state's keys are wrapped under KEK %s (recorded in %s); the provider holds KEK %s: "+
			"restore the KEK it was made with (from the backup of the KEK, see docs/operations.md) or use another state directory; "+
			"refusing to open the state with another KEK, under which none of its keys would work",
			m.KEK, manifestPath, strings.Join(info.KEKs, ", "))
	}
	return nil
}

// readManifest reads and decodes the MANIFEST; found is false when there
// is none. A recorded KEK that is not a well-formed fingerprint is
// corruption (EIO).
func readManifest(st Storage) (m manifestBody, found bool, err error) {
	data, err := st.ReadFile(manifestPath)
	if errors.Is(err, provider.ErrNotFound) {
		return manifestBody{}, false, nil
	}
	if err != nil {
		return manifestBody{}, false, err
	}
	if err := decodeChecked("manifest", manifestPath, data, &m); err != nil {
		return manifestBody{}, false, err
	}
	if m.KEK != "" {
		if err := provider.CheckKEKFingerprint(m.KEK); err != nil {
			return manifestBody{}, false, provider.Errorf(provider.EIO, "corrupted file %s: malformed kek: %w", manifestPath, err)
		}
	}
	if m.KEKNext != "" {
		if err := provider.CheckKEKFingerprint(m.KEKNext); err != nil || m.KEK == "" || m.KEKNext == m.KEK {
			return manifestBody{}, false, provider.Errorf(provider.EIO, "corrupted file %s: malformed kek_next", manifestPath)
		}
	}
	return m, true, nil
}

// writeManifest replaces the MANIFEST with m (atomically: Storage.WriteFile).
func writeManifest(st Storage, m manifestBody) error {
	out, err := encodeChecked("manifest", manifestPath, m)
	if err != nil {
		return err
	}
	return st.WriteFile(manifestPath, out)
}

// authorize checks that c may act on keys of app.
func authorize(c Caller, app string) error {
	if c.Operator || c.App == app && app != "" {
		// app comes from a parsed KeyID (a valid segment), so an equal
		// caller app is valid too.
		return nil
	}
	if provider.CheckSegment("caller app ID", c.App) != nil {
		return provider.Errorf(provider.EPERM, "caller has no valid app ID")
	}
	if c.App != app {
		return provider.Errorf(provider.EPERM, "app %s may not use keys of another app", c.App)
	}
	return nil
}

// lookup returns the entry for id, creating an empty one.
func (k *Keystore) lookup(id KeyID) *entry { return k.keys.get(id.String()) }

// readKey returns id's entry and its current record (nil if the key does
// not exist), loading it from storage on first use. No lock is held on
// return: the record is an immutable snapshot.
func (k *Keystore) readKey(ctx context.Context, id KeyID) (*entry, *record, error) {
	for {
		e := k.lookup(id)
		if e.evicted.Load() {
			continue
		}
		if e.loaded.Load() {
			rec := e.rec.Load()
			if rec == nil {
				k.keys.drop(e) // no such key: keep no entry (cache.go)
			}
			return e, rec, nil
		}
		// Load under the entry's lock, then read again.
		we, err := k.writeKey(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		we.mu.Unlock()
	}
}

// unlockKey releases an entry from writeKey or tryWriteKey: it unlocks
// it and then, if it names no key (a lookup of a key that does not
// exist, or a create that failed), drops it (cache.go); if it names one,
// trims its shard back to size (a create's entry was made without
// evicting anything).
func (k *Keystore) unlockKey(e *entry) {
	absent := e.rec.Load() == nil
	e.mu.Unlock()
	if absent {
		k.keys.drop(e)
		return
	}
	k.keys.trim(e)
}

// writeKey returns id's entry locked and loaded; release with
// k.unlockKey(e). Only the holder of the lock publishes a new record.
func (k *Keystore) writeKey(ctx context.Context, id KeyID) (*entry, error) {
	for {
		e := k.lookup(id)
		e.mu.Lock()
		if e.evicted.Load() {
			e.mu.Unlock()
			continue
		}
		if !e.loaded.Load() {
			rec, err := k.load(ctx, id)
			if err != nil {
				e.mu.Unlock()
				k.keys.drop(e) // keep no entry for a key that did not load
				return nil, err
			}
			e.rec.Store(rec)
			e.loaded.Store(true)
			if rec != nil {
				k.keys.trim(e) // room is made only for a key that exists
			}
		}
		return e, nil
	}
}

// tryWriteKey is writeKey that does not wait: ok is false when another
// call holds the key's lock.
func (k *Keystore) tryWriteKey(ctx context.Context, id KeyID) (e *entry, ok bool, err error) {
	for {
		e := k.lookup(id)
		if !e.mu.TryLock() {
			return nil, false, nil
		}
		if e.evicted.Load() {
			e.mu.Unlock()
			continue
		}
		if !e.loaded.Load() {
			rec, err := k.load(ctx, id)
			if err != nil {
				e.mu.Unlock()
				k.keys.drop(e)
				return nil, false, err
			}
			e.rec.Store(rec)
			e.loaded.Store(true)
			if rec != nil {
				k.keys.trim(e) // room is made only for a key that exists
			}
		}
		return e, true, nil
	}
}

// load reads a key's metadata from storage; nil, nil if it does not
// exist. The record read is checked against the audit log's generations
// (checkGeneration); a key refused once is refused again without reading
// storage.
func (k *Keystore) load(ctx context.Context, id KeyID) (*record, error) {
	if err := k.refused(ctx, id); err != nil {
		return nil, err
	}
	path, data, err := k.readMeta(id)
	if errors.Is(err, provider.ErrNotFound) {
		if err := k.checkGeneration(ctx, id, nil); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if err != nil {
		return nil, provider.WithOp("load", id.String(), err)
	}
	var b metaBody
	if err := decodeChecked("meta", path, data, &b); err != nil {
		return nil, provider.WithOp("load", id.String(), err)
	}
	rec, err := recordFromBody(id, path, &b, k.reg, k.info.Name)
	if err != nil {
		return nil, provider.WithOp("load", id.String(), err)
	}
	if err := k.checkGeneration(ctx, id, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// readMeta reads a key's metadata file: its key file (metaPath), else a
// legacy key's meta.json. A key in both places is refused (EIO): a
// correct daemon never writes both (a legacy key's changes stay in its
// directory; a new key is written as a key file only where no legacy key
// is), so the second one was planted or copied. Neither: ErrNotFound.
func (k *Keystore) readMeta(id KeyID) (string, []byte, error) {
	path, legacy := metaPath(id), legacyMetaPath(id)
	data, err := k.st.ReadFile(path)
	switch {
	case errors.Is(err, provider.ErrNotFound):
		data, err := k.st.ReadFile(legacy)
		return legacy, data, err
	case err != nil:
		return "", nil, err
	}
	switch _, lerr := k.st.ReadFile(legacy); {
	case lerr == nil:
		return "", nil, provider.Errorf(provider.EIO, "key %s is stored twice, as %s and as %s (one was planted or copied; remove the wrong one)", id, path, legacy)
	case !errors.Is(lerr, provider.ErrNotFound):
		return "", nil, lerr
	}
	return path, data, nil
}

// change makes a lifecycle change durable, under e's lock (held by the
// caller): the audit sink commits ev (its intent record durable), then
// apply runs (if any: a destroy's erasure), then rec's metadata is
// written and rec published in e. A new version's handle is in rec's
// metadata (inline), so one file write makes the whole change.
//
// The metadata is rec's file: a new key's is one file in its purpose
// directory (metaPath), a legacy key's stays its meta.json. The write's
// invisible part (a missing app or purpose directory made, the metadata's
// temporary file written and fsynced: Storage.PrepareWrite) runs
// concurrently with the sink's commit, so their fsyncs overlap; only the
// rename, which makes the change visible, waits for the commit (its
// directory fsync is shared with concurrent writes in the same
// directory). A refused commit aborts the prepared write: nothing becomes
// visible (an empty directory may stay, which holds no key).
func (k *Keystore) change(ctx context.Context, e *entry, rec *record, ev Event, apply func() error) error {
	path := rec.metaFile()
	out, err := encodeChecked("meta", path, rec.body())
	if err != nil {
		return err
	}
	k.index.add(rec.meta.ID) // before its file is made: see keyIndex (index.go)
	type prepared struct {
		commit, abort func() error
		err           error
	}
	done := make(chan prepared, 1)
	go func() {
		var p prepared
		p.commit, p.abort, p.err = k.st.PrepareWrite(path, out)
		done <- p
	}()
	cerr := k.commit(ctx, ev)
	p := <-done
	if cerr == nil && p.err == nil && apply != nil {
		cerr = apply()
	}
	if cerr != nil || p.err != nil {
		if p.err == nil {
			// Nothing was made visible; a temporary file an abort
			// fails to remove is swept by the next open.
			_ = p.abort()
		}
		if cerr != nil {
			return cerr
		}
		return p.err
	}
	return k.publish(e, rec, path, out, p.commit())
}

// publish publishes rec in e after the write of its metadata (out, at
// path; nil if it was never attempted) returned err.
//
// A write that fails after its rename (a failed directory fsync) leaves
// the new metadata in place. So on failure the metadata is read back: if
// storage holds rec, memory follows it (a revoke reported as failed whose
// metadata landed must not leave the key signing until a restart); if the
// read fails, e is marked unloaded and the next use reloads the key.
func (k *Keystore) publish(e *entry, rec *record, path string, out []byte, err error) error {
	if err == nil {
		e.rec.Store(rec)
		return nil
	}
	if out != nil {
		data, rerr := k.st.ReadFile(path)
		switch {
		case rerr != nil:
			e.loaded.Store(false)
		case bytes.Equal(data, out):
			e.rec.Store(rec)
		}
	}
	return err
}

// writeRecord writes b as rec's metadata. It returns the metadata path
// and bytes once their write was attempted.
func (k *Keystore) writeRecord(rec *record, b metaBody) (string, []byte, error) {
	k.index.add(rec.meta.ID) // before its file is made: see keyIndex (index.go)
	path := rec.metaFile()
	out, err := encodeChecked("meta", path, b)
	if err != nil {
		return "", nil, err
	}
	return path, out, k.st.WriteFile(path, out)
}

// errHandleMissing marks a handle file that does not exist.
var errHandleMissing = errors.New("no handle file")

// handle returns version vr's handle: an inline one from memory (read
// with its meta.json), else loaded from its file once.
func (k *Keystore) handle(vr *versionRT) (provider.Handle, error) {
	if h := vr.handle.Load(); h != nil {
		return *h, nil
	}
	if vr.inline {
		return nil, provider.Errorf(provider.EIO, "version %s has no handle (destroyed): %w", vr.refStr, errHandleMissing)
	}
	path := handlePath(vr.ref.ID, vr.ref.Version)
	data, err := k.st.ReadFile(path)
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			return nil, provider.Errorf(provider.EIO, "handle file %s is missing: %w", path, errHandleMissing)
		}
		return nil, err
	}
	h, err := decodeHandle(path, data)
	if err != nil {
		return nil, err
	}
	vr.handle.Store(&h)
	return h, nil
}

// event starts the audit event of a call naming key ("" for none) and
// version v (0 for none).
func (k *Keystore) event(c Caller, op Op, key string, v Version) Event {
	return Event{Time: k.clock.Now(), Caller: c, Op: op, Key: key, Version: v}
}

// finish records ev with err's outcome and returns the error the caller
// sees: err annotated with the op and key, or EIO when the audit record
// cannot be written (fail closed: the operation's output is withheld).
func (k *Keystore) finish(ctx context.Context, ev *Event, err error) error {
	if err != nil {
		code, ok := provider.CodeOf(err)
		if !ok {
			code = provider.EIO
		}
		ev.Result = code
		err = provider.WithOp(ev.Op.String(), refString(ev.Key, ev.Version), err)
	}
	if aerr := k.audit.Record(ctx, *ev); aerr != nil {
		return provider.Errorf(provider.EIO, "%s %s: audit log unavailable; operation refused: %w", ev.Op, refString(ev.Key, ev.Version), aerr)
	}
	return err
}

func refString(key string, v Version) string {
	if v == 0 || key == "" {
		return key
	}
	return key + "@" + v.String()
}

// ready checks the audit sink before a state change.
func (k *Keystore) ready(ctx context.Context) error {
	if err := k.auditReady(ctx); err != nil {
		return err
	}
	if next := k.unrecorded.Load(); next != nil {
		return provider.Errorf(provider.EIO, "a KEK rotation to KEK %s began but %s could not record it; refusing to change state until "+
			"`keystorectl kek rotate` runs again and records it", *next, manifestPath)
	}
	return nil
}

// auditReady reports whether the audit log takes records.
func (k *Keystore) auditReady(ctx context.Context) error {
	if err := k.audit.Ready(ctx); err != nil {
		return provider.Errorf(provider.EIO, "audit log unavailable; refusing to change state: %w", err)
	}
	return nil
}

// commit asks the audit sink to accept a lifecycle change, described by
// ev as it will be recorded, just before the change is made durable.
func (k *Keystore) commit(ctx context.Context, ev Event) error {
	ev.Result = 0
	if err := k.audit.Commit(ctx, ev); err != nil {
		return provider.Errorf(provider.EIO, "audit log unavailable; refusing to change state: %w", err)
	}
	return nil
}

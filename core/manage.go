package core

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Create makes a new key with version 1 primary. The caller's app must own
// id (operators may create keys for any app). IDs are never reused: a key
// that exists in any state gives EALREADY.
func (k *Keystore) Create(ctx context.Context, c Caller, id KeyID, o CreateOptions) (Metadata, error) {
	ev := k.event(c, OpCreate, id.String(), 0)
	m, err := k.create(ctx, c, id, o, &ev)
	return audited(ctx, k, &ev, m, err)
}

func (k *Keystore) create(ctx context.Context, c Caller, id KeyID, o CreateOptions, ev *Event) (Metadata, error) {
	k.kekMu.RLock() // a handle is made: see Keystore.kekMu
	defer k.kekMu.RUnlock()
	if err := admit(ctx, c, OpCreate, id); err != nil {
		return Metadata{}, err
	}
	if o.Algorithm == "" {
		a, err := k.defaultAlgorithm(o.Use)
		if err != nil {
			return Metadata{}, err
		}
		o.Algorithm = a
	}
	spec, err := k.reg.Lookup(o.Algorithm)
	if err != nil {
		return Metadata{}, err
	}
	if o.Use != 0 && o.Use != spec.Use {
		return Metadata{}, provider.Errorf(provider.EINVAL, "algorithm %s has use %s, not %s", string(spec.Name), spec.Use, o.Use)
	}
	if !k.info.Supports(spec.Name) {
		return Metadata{}, provider.Errorf(provider.ENOTSUP, "provider %s does not offer %s; its %s algorithms: %s", k.info.Name, string(spec.Name), spec.Use, k.offered(spec.Use))
	}
	if err := checkPolicy(o.Policy, 1); err != nil {
		return Metadata{}, err
	}
	e, err := k.writeKey(ctx, id)
	if err != nil {
		return Metadata{}, err
	}
	defer k.unlockKey(e)
	if err := checkKey(OpCreate, metaOf(e.rec.Load())); err != nil {
		return Metadata{}, err
	}
	if err := k.ready(ctx); err != nil {
		return Metadata{}, err
	}
	settle, err := k.reserveKey(id.App()) // quota.go
	if err != nil {
		return Metadata{}, err
	}
	defer settle(e)
	now := k.clock.Now().UTC()
	vr := newVersionRT(id, 1, spec, k.info.Name, 0)
	pub, err := k.generate(ctx, vr)
	if err != nil {
		return Metadata{}, err
	}
	rec := &record{spec: spec, versions: []*versionRT{vr}, meta: Metadata{
		ID: id, Algorithm: spec.Name, Use: spec.Use, State: StateActive, Current: 1,
		Versions: []VersionInfo{{Version: 1, State: VersionPrimary, PublicKey: pub, Created: now, Origin: OriginGenerated}},
		Policy:   o.Policy, Provider: k.info.Name, Insecure: k.insecure, Origin: OriginGenerated, Created: now,
		Generation: 1,
	}}
	ev.Version, ev.Gen = 1, 1
	if err := k.change(ctx, e, rec, *ev, nil); err != nil {
		return Metadata{}, err
	}
	if err := k.applied(ctx, ev); err != nil {
		return Metadata{}, err
	}
	return rec.snapshot(), nil
}

// generate asks the provider for a new key version and checks what it
// returns; the handle is kept in vr, and written inside the metadata that
// makes the version live (Keystore.change).
func (k *Keystore) generate(ctx context.Context, vr *versionRT) ([]byte, error) {
	spec, err := k.reg.Lookup(vr.ref.Algorithm)
	if err != nil {
		return nil, err
	}
	g, err := k.p.Generate(ctx, vr.ref)
	if err != nil {
		return nil, provider.WithOp("generate", vr.refStr, err)
	}
	return k.adopt(spec, vr, g)
}

// adopt checks what the provider made for vr (by Generate or Import) and
// keeps its handle in vr, as an inline one (stored in meta.json); it
// returns a copy of the public key.
func (k *Keystore) adopt(spec *alg.Spec, vr *versionRT, g provider.Generated) ([]byte, error) {
	if len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle {
		return nil, provider.Errorf(provider.EIO, "provider returned a handle of %d bytes for %s", len(g.Handle), vr.refStr)
	}
	if !spec.PublicKeySizeOK(len(g.PublicKey)) || spec.PublicKeySize > 0 && !spec.CheckPublicKey(g.PublicKey) {
		return nil, provider.Errorf(provider.EIO, "provider returned a malformed public key for %s", vr.refStr)
	}
	h := provider.Handle(append([]byte(nil), g.Handle...))
	vr.inline = true
	vr.handle.Store(&h)
	return append([]byte(nil), g.PublicKey...), nil
}

// defaultAlgorithm is the algorithm of a key created without one: the
// first of DefaultAlgorithms(use) the provider offers (use 0 means
// decrypt).
func (k *Keystore) defaultAlgorithm(use Use) (Algorithm, error) {
	if use == 0 {
		use = provider.UseDecrypt
	}
	if !use.Valid() {
		return "", provider.Errorf(provider.EINVAL, "invalid use")
	}
	for _, a := range defaultAlgorithms[use] {
		if k.info.Supports(a) {
			if _, err := k.reg.Lookup(a); err == nil {
				return a, nil
			}
		}
	}
	return "", provider.Errorf(provider.ENOTSUP, "provider %s offers no %s algorithm", k.info.Name, use)
}

// offered lists, comma-separated, the algorithms of use the provider
// offers, in the registry's order ("none" when there are none).
func (k *Keystore) offered(use Use) string {
	var names []string
	for _, a := range k.reg.Names() {
		if s, err := k.reg.Lookup(a); err == nil && s.Use == use && k.info.Supports(a) {
			names = append(names, string(a))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func metaOf(r *record) *Metadata {
	if r == nil {
		return nil
	}
	return &r.meta
}

func checkPolicy(p Policy, current Version) error {
	if p.MinDecryptionVersion > current {
		return provider.Errorf(provider.EINVAL, "minimum decryption version %s is above the current version %s", p.MinDecryptionVersion, current)
	}
	if p.RotationPeriod < 0 || p.RotationPeriod != 0 && (p.RotationPeriod < MinRotationPeriod || p.RotationPeriod > MaxRotationPeriod) {
		return provider.Errorf(provider.EINVAL, "rotation period must be 0 (off) or between %s and %s", MinRotationPeriod, MaxRotationPeriod)
	}
	if p.RotationPeriod%time.Second != 0 {
		return provider.Errorf(provider.EINVAL, "rotation period must be whole seconds")
	}
	return nil
}

// Get returns a key's metadata, in any state.
func (k *Keystore) Get(ctx context.Context, c Caller, id KeyID) (Metadata, error) {
	ev := k.event(c, OpGet, id.String(), 0)
	m, err := k.get(ctx, c, id)
	return audited(ctx, k, &ev, m, err)
}

func (k *Keystore) get(ctx context.Context, c Caller, id KeyID) (Metadata, error) {
	if err := admit(ctx, c, OpGet, id); err != nil {
		return Metadata{}, err
	}
	_, rec, err := k.readKey(ctx, id)
	if err != nil {
		return Metadata{}, err
	}
	if err := checkKey(OpGet, metaOf(rec)); err != nil {
		return Metadata{}, err
	}
	return rec.snapshot(), nil
}

// transition runs a state change on an existing key under its write lock:
// the lifecycle table, then f, which returns the new record to persist (or
// nil for no change). The in-memory record changes only after the new
// metadata is durable.
//
// f must not change anything outside memory: it returns the successor
// record and, if the transition also has effects beyond the metadata (a
// destroy erases material), an apply function that transition runs after
// the audit sink committed the change and before the metadata is written.
func (k *Keystore) transition(ctx context.Context, c Caller, op Op, id KeyID, ev *Event, f func(rec *record, now time.Time) (next *record, apply func() error, err error)) (Metadata, error) {
	if err := admit(ctx, c, op, id); err != nil {
		return Metadata{}, err
	}
	e, err := k.writeKey(ctx, id)
	if err != nil {
		return Metadata{}, err
	}
	defer k.unlockKey(e)
	rec := e.rec.Load()
	if err := checkKey(op, metaOf(rec)); err != nil {
		return Metadata{}, err
	}
	if err := k.ready(ctx); err != nil {
		return Metadata{}, err
	}
	next, apply, err := f(rec, k.clock.Now().UTC())
	if err != nil {
		return Metadata{}, err
	}
	if ev.Version == 0 {
		ev.Version = next.meta.Current
	}
	next.meta.Generation = rec.meta.Generation + 1
	ev.Gen = next.meta.Generation
	if err := k.change(ctx, e, next, *ev, apply); err != nil {
		return Metadata{}, err
	}
	if err := k.applied(ctx, ev); err != nil {
		return Metadata{}, err
	}
	return next.snapshot(), nil
}

// successor returns a copy of r for a transition: metadata cloned, the
// version run-time states shared (they describe the same versions).
func (r *record) successor() *record {
	return &record{meta: r.meta.clone(), spec: r.spec, versions: append([]*versionRT(nil), r.versions...), path: r.path}
}

// Rotate adds a new primary version; the old primary becomes retired and
// keeps verifying and unsealing.
func (k *Keystore) Rotate(ctx context.Context, c Caller, id KeyID) (Metadata, error) {
	return k.RotateWith(ctx, c, id, RotateOptions{})
}

// RotateWith is Rotate with options: o.Generate rotates an imported key to
// generated material (the key is a generated one from then on); without
// it an imported key is EPERM, as its new versions come from Import.
func (k *Keystore) RotateWith(ctx context.Context, c Caller, id KeyID, o RotateOptions) (Metadata, error) {
	ev := k.event(c, OpRotate, id.String(), 0)
	k.kekMu.RLock() // a handle is made: see Keystore.kekMu
	defer k.kekMu.RUnlock()
	m, err := k.transition(ctx, c, OpRotate, id, &ev, func(rec *record, now time.Time) (*record, func() error, error) {
		imported := rec.meta.Origin == OriginImported
		if imported && !o.Generate {
			return nil, nil, provider.Errorf(provider.EPERM, "key %s holds imported material: import new material for its next version, or rotate with generate to switch it to generated material", id)
		}
		next, err := k.rotateLocked(ctx, rec, now)
		if err == nil && imported {
			next.meta.Origin = OriginGenerated
			ev.Detail = "switched from imported to generated material"
		}
		return next, nil, err
	})
	return audited(ctx, k, &ev, m, err)
}

// rotateLocked makes the successor record with a new primary version,
// whose handle the record's metadata holds (inline, even when the key's
// older versions have handle files).
func (k *Keystore) rotateLocked(ctx context.Context, rec *record, now time.Time) (*record, error) {
	if rec.meta.Current == provider.MaxVersion {
		return nil, provider.Errorf(provider.EINVAL, "key has reached the last version number")
	}
	if err := k.checkVersionQuota(rec); err != nil { // quota.go
		return nil, err
	}
	vr := newVersionRT(rec.meta.ID, rec.meta.Current+1, rec.spec, k.info.Name, 0)
	pub, err := k.generate(ctx, vr)
	if err != nil {
		return nil, err
	}
	return rec.withVersion(vr, pub, now, OriginGenerated), nil
}

// withVersion returns the successor of r with vr (whose handle is set) as
// its new primary version: the old primary is retired.
func (r *record) withVersion(vr *versionRT, pub []byte, now time.Time, origin Origin) *record {
	next := r.successor()
	old := &next.meta.Versions[r.meta.Current-1]
	old.State, old.Retired = VersionRetired, now
	next.meta.Versions = append(next.meta.Versions, VersionInfo{Version: vr.ref.Version, State: VersionPrimary, PublicKey: pub, Created: now, Origin: origin})
	next.meta.Current = vr.ref.Version
	next.versions = append(next.versions, vr)
	return next
}

// Revoke revokes every version of a key, irreversibly: every later use
// fails with EKEYREVOKED.
func (k *Keystore) Revoke(ctx context.Context, c Caller, id KeyID) (Metadata, error) {
	ev := k.event(c, OpRevoke, id.String(), 0)
	m, err := k.transition(ctx, c, OpRevoke, id, &ev, func(rec *record, now time.Time) (*record, func() error, error) {
		next := rec.successor()
		next.meta.State, next.meta.Revoked = StateRevoked, now
		for i := range next.meta.Versions {
			if v := &next.meta.Versions[i]; v.State != VersionRevoked && v.State != VersionDestroyed {
				v.State, v.Revoked = VersionRevoked, now
			}
		}
		return next, nil, nil
	})
	return audited(ctx, k, &ev, m, err)
}

// RevokeVersion revokes one retired version of an active key. The primary
// version cannot be revoked alone (EPERM): rotate first, or revoke the key.
func (k *Keystore) RevokeVersion(ctx context.Context, c Caller, id KeyID, v Version) (Metadata, error) {
	ev := k.event(c, OpRevokeVersion, id.String(), v)
	m, err := k.revokeVersion(ctx, c, id, v, &ev)
	return audited(ctx, k, &ev, m, err)
}

func (k *Keystore) revokeVersion(ctx context.Context, c Caller, id KeyID, v Version, ev *Event) (Metadata, error) {
	if v == 0 {
		// Syntax before any lookup (docs/lifecycle.md, order of checks).
		return Metadata{}, provider.Errorf(provider.EINVAL, "no version given")
	}
	return k.transition(ctx, c, OpRevokeVersion, id, ev, func(rec *record, now time.Time) (*record, func() error, error) {
		if err := checkVersion(OpRevokeVersion, &rec.meta, v); err != nil {
			return nil, nil, err
		}
		next := rec.successor()
		next.meta.Versions[v-1].State, next.meta.Versions[v-1].Revoked = VersionRevoked, now
		return next, nil, nil
	})
}

// Destroy erases a revoked key's material: the provider destroys each
// version, the handle files are removed (inline handles are dropped from
// the metadata), and the metadata is kept as a tombstone (IDs are never reused). An active key gives EPERM: revoke it
// first. A destroy interrupted by a crash can be repeated.
func (k *Keystore) Destroy(ctx context.Context, c Caller, id KeyID) (Metadata, error) {
	ev := k.event(c, OpDestroy, id.String(), 0)
	m, err := k.transition(ctx, c, OpDestroy, id, &ev, func(rec *record, now time.Time) (*record, func() error, error) {
		return k.destroyLocked(ctx, rec, now, &ev)
	})
	return audited(ctx, k, &ev, m, err)
}

// destroyLocked makes the successor record of a destroy and the function
// that erases the material, run once the audit sink committed the change.
// It reads every handle first and changes nothing.
func (k *Keystore) destroyLocked(ctx context.Context, rec *record, now time.Time, ev *Event) (*record, func() error, error) {
	type victim struct {
		vr *versionRT
		h  provider.Handle // nil: no handle file, or an unreadable one
	}
	var victims []victim
	for i, vr := range rec.versions {
		if rec.meta.Versions[i].State == VersionDestroyed {
			continue
		}
		h, err := k.handle(vr)
		switch {
		case err == nil, errors.Is(err, errHandleMissing):
		case errors.Is(err, errHandleCorrupt):
			// The file is there but its content is damaged: the
			// provider cannot be told which object to erase. Removing
			// the file is all we can do; say so in the audit detail.
			ev.Detail = "corrupted handle removed: " + vr.refStr
		default:
			// The file could not be read (I/O error, a planted link):
			// the material may be intact, so do not destroy blind.
			return nil, nil, err
		}
		victims = append(victims, victim{vr, h})
	}
	next := rec.successor()
	next.meta.State, next.meta.Destroyed = StateDestroyed, now
	for i := range next.meta.Versions {
		if v := &next.meta.Versions[i]; v.State != VersionDestroyed {
			v.State, v.Destroyed = VersionDestroyed, now
		}
	}
	apply := func() error {
		for _, v := range victims {
			if v.h != nil {
				if err := k.p.Destroy(ctx, v.vr.ref, v.h); err != nil {
					return provider.WithOp("destroy", v.vr.refStr, err)
				}
			}
			if !v.vr.inline { // an inline handle goes with the metadata's rewrite
				if err := k.st.Remove(handlePath(v.vr.ref.ID, v.vr.ref.Version)); err != nil {
					return err
				}
			}
			v.vr.handle.Store(nil)
		}
		return nil
	}
	return next, apply, nil
}

// SetPolicy replaces a key's policy.
func (k *Keystore) SetPolicy(ctx context.Context, c Caller, id KeyID, p Policy) (Metadata, error) {
	ev := k.event(c, OpSetPolicy, id.String(), 0)
	m, err := k.setPolicy(ctx, c, id, p, &ev)
	return audited(ctx, k, &ev, m, err)
}

func (k *Keystore) setPolicy(ctx context.Context, c Caller, id KeyID, p Policy, ev *Event) (Metadata, error) {
	// Syntax before any lookup (docs/lifecycle.md, order of checks); the
	// minimum version is checked against the key's current one below.
	if err := checkPolicy(p, provider.MaxVersion); err != nil {
		return Metadata{}, err
	}
	return k.transition(ctx, c, OpSetPolicy, id, ev, func(rec *record, _ time.Time) (*record, func() error, error) {
		if err := checkPolicy(p, rec.meta.Current); err != nil {
			return nil, nil, err
		}
		if p.RotationPeriod != 0 && rec.meta.Origin == OriginImported {
			return nil, nil, provider.Errorf(provider.EPERM, "an imported key has no rotation period: its new versions come from Import (rotate with generate first to switch it to generated material)")
		}
		next := rec.successor()
		next.meta.Policy = p
		return next, nil, nil
	})
}

// List returns one page of keys ordered by (app, purpose, name).
func (k *Keystore) List(ctx context.Context, c Caller, o ListOptions) (ListPage, error) {
	ev := k.event(c, OpList, "", 0)
	page, err := k.list(ctx, c, o)
	return audited(ctx, k, &ev, page, err)
}

func (k *Keystore) list(ctx context.Context, c Caller, o ListOptions) (ListPage, error) {
	if o.PageSize < 0 || o.PageSize > MaxPageSize {
		return ListPage{}, provider.Errorf(provider.EINVAL, "page size must be 0 (default) to %d", MaxPageSize)
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	var after KeyID
	if o.PageToken != "" {
		t, err := provider.ParseKeyID(o.PageToken)
		if err != nil {
			return ListPage{}, provider.Errorf(provider.EINVAL, "malformed page token")
		}
		after = t
	}
	ids, indexApps, err := k.indexView(ctx) // index.go: no directory is read here
	if err != nil {
		return ListPage{}, err
	}
	var apps []string
	switch {
	case o.App != "":
		if err := provider.CheckSegment("app ID", o.App); err != nil {
			return ListPage{}, err
		}
		if err := checkReserved(c, OpList, o.App); err != nil {
			return ListPage{}, err
		}
		if err := authorize(c, o.App); err != nil {
			return ListPage{}, err
		}
		apps = []string{o.App}
	case c.Operator:
		// Every app's keys but the daemon's own (ReservedApp), which an
		// operator lists by naming it.
		apps = indexApps
		if !o.withReserved {
			apps = slices.DeleteFunc(indexApps, func(a string) bool { return a == ReservedApp })
		}
	default:
		// authorize trusts an app equal to the caller's to be a valid
		// segment; here the app is the caller's own, so check it.
		if provider.CheckSegment("caller app ID", c.App) != nil {
			return ListPage{}, provider.Errorf(provider.EPERM, "caller has no valid app ID")
		}
		if err := checkReserved(c, OpList, c.App); err != nil {
			return ListPage{}, err
		}
		apps = []string{c.App}
	}
	if !after.IsZero() && !c.Operator && after.App() != apps[0] {
		return ListPage{}, provider.Errorf(provider.EINVAL, "page token belongs to another listing")
	}
	// The first ID to consider: after the token, and in a one-app
	// listing at the app's first key.
	one := len(apps) == 1 && !c.Operator || o.App != ""
	i := 0
	switch {
	case !after.IsZero():
		i = sort.Search(len(ids), func(i int) bool { return idLess(after, ids[i]) })
	case one:
		i = sort.Search(len(ids), func(i int) bool { return ids[i].App() >= apps[0] })
	}
	var page ListPage
	for ; i < len(ids); i++ {
		id := ids[i]
		if one {
			if id.App() != apps[0] {
				if id.App() > apps[0] {
					break
				}
				continue
			}
		} else if !o.withReserved && id.App() == ReservedApp {
			continue
		}
		if err := provider.CheckContext(ctx); err != nil {
			return ListPage{}, err
		}
		if len(page.Keys)+len(page.Unreadable) == o.PageSize {
			last := page.lastID()
			page.NextPageToken = last.String()
			return page, nil
		}
		m, ok, err := k.listOne(ctx, id)
		switch {
		case err != nil:
			page.Unreadable = append(page.Unreadable, UnreadableKey{ID: id, Err: err})
		case ok:
			page.Keys = append(page.Keys, m)
		}
	}
	// Keys refused because their files are gone (a file or directory
	// deleted, or put back as it was before the key existed: rolled back)
	// have nothing to list: the last page names them too.
	page.Unreadable = append(page.Unreadable, k.refusedWithoutFiles(apps, after)...)
	return page, nil
}

func (p *ListPage) lastID() KeyID {
	var last KeyID
	for _, m := range p.Keys {
		if last.IsZero() || idLess(last, m.ID) {
			last = m.ID
		}
	}
	for _, u := range p.Unreadable {
		if last.IsZero() || idLess(last, u.ID) {
			last = u.ID
		}
	}
	return last
}

// listOne loads a key for List; ok is false for a name that holds no key
// (a legacy directory without meta.json: an old create that crashed
// before its metadata was written).
func (k *Keystore) listOne(ctx context.Context, id KeyID) (Metadata, bool, error) {
	_, rec, err := k.readKey(ctx, id)
	if err != nil {
		return Metadata{}, false, err
	}
	if rec == nil {
		return Metadata{}, false, nil
	}
	return rec.snapshot(), true, nil
}

// dirNames lists the valid segment names of subdirectories of dir.
func (k *Keystore) dirNames(dir string) ([]string, error) {
	entries, err := k.st.ReadDir(dir)
	if errors.Is(err, provider.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range entries {
		if de.IsDir() && provider.CheckSegment("name", de.Name()) == nil {
			out = append(out, de.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// keyNames lists the names of the keys a purpose directory may hold
// (keyNameOf), sorted and each once: a name both a key file and a legacy
// directory is one key, which its load refuses (Keystore.readMeta).
func (k *Keystore) keyNames(dir string) ([]string, error) {
	entries, err := k.st.ReadDir(dir)
	if errors.Is(err, provider.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range entries {
		if n, ok := keyNameOf(de); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// idLess orders key IDs by (app, purpose, name).
func idLess(a, b KeyID) bool { return a.Compare(b) < 0 }

// Sweep rotates the active keys whose rotation period has passed, in key
// ID order, examining at most o.Limit keys per call: a sweep of many keys
// is a series of calls, each resuming after the last key the previous one
// examined (SweepResult.NextPageToken), so that no call holds the caller,
// or any lock, for long. Only an operator may sweep (EPERM). Each due key
// is rotated under its own lock, one at a time; a key that fails to rotate
// (or cannot be read) is listed in SweepResult.Failed and does not stop
// the sweep. Sweep stops early, with the context's error and the result
// so far, when ctx ends; its NextPageToken then resumes after the last key
// handled.
//
// The call is one audit event (op sweep) whose detail gives the counts;
// each rotation is committed to the sink first, as any state change.
func (k *Keystore) Sweep(ctx context.Context, c Caller, o SweepOptions) (SweepResult, error) {
	// Not audited(): the result is returned even when the sweep failed
	// part way, because the rotations it reports happened.
	ev := k.event(c, OpSweep, "", 0)
	res, err := k.sweep(ctx, c, o)
	ev.Detail = res.counts()
	if err = k.finish(ctx, &ev, err); err != nil {
		return res, err
	}
	return res, nil
}

// counts is the audit detail of a sweep.
func (r *SweepResult) counts() string {
	return "examined " + strconv.Itoa(r.Examined) + ", rotated " + strconv.Itoa(len(r.Rotated)) + ", failed " + strconv.Itoa(len(r.Failed))
}

func (k *Keystore) sweep(ctx context.Context, c Caller, o SweepOptions) (SweepResult, error) {
	if !c.Operator {
		return SweepResult{}, provider.Errorf(provider.EPERM, "only an operator may sweep")
	}
	if o.Limit < 0 || o.Limit > MaxSweepLimit {
		return SweepResult{}, provider.Errorf(provider.EINVAL, "sweep limit must be 0 (default) to %d", MaxSweepLimit)
	}
	if o.Limit == 0 {
		o.Limit = DefaultSweepLimit
	}
	k.expireImports(ctx) // import.go
	page, err := k.list(ctx, c, ListOptions{PageSize: o.Limit, PageToken: o.PageToken})
	if err != nil {
		return SweepResult{}, err
	}
	res := SweepResult{NextPageToken: page.NextPageToken}
	var last KeyID // the last key handled
	// The page's keys and unreadable keys, merged in ID order, so that an
	// early stop resumes right after the last one handled.
	keys, bad := page.Keys, page.Unreadable
	for len(keys) > 0 || len(bad) > 0 {
		if err := provider.CheckContext(ctx); err != nil {
			res.NextPageToken = o.PageToken
			if !last.IsZero() {
				res.NextPageToken = last.String()
			}
			return res, err
		}
		if len(bad) > 0 && (len(keys) == 0 || idLess(bad[0].ID, keys[0].ID)) {
			res.Examined++
			last = bad[0].ID
			res.Failed = append(res.Failed, SweepFailure{ID: bad[0].ID, Err: bad[0].Err})
			bad = bad[1:]
			continue
		}
		m := &keys[0]
		keys = keys[1:]
		res.Examined++
		last = m.ID
		if !rotationDue(m, k.clock.Now()) {
			continue
		}
		v, _, err := k.autoRotate(ctx, m.ID, k.event(c, OpRotate, "", 0))
		switch {
		case err != nil:
			res.Failed = append(res.Failed, SweepFailure{ID: m.ID, Err: provider.WithOp("rotate", m.ID.String(), err)})
		case v != 0:
			res.Rotated = append(res.Rotated, RotatedKey{ID: m.ID, Version: v})
		}
	}
	return res, nil
}

// rotationDue reports whether m is an active key whose primary version is
// at least its rotation period old at now.
func rotationDue(m *Metadata, now time.Time) bool {
	due, ok := m.RotationDue()
	return ok && !now.Before(due)
}

// autoRotate rotates id if it is still due, under its write lock, and
// returns the new primary version (0: the key was no longer due) and the
// key's new generation. ev is
// the event of the operation that triggered it (a sign, a seal, a sweep);
// the sink is asked to commit it with the new version and "auto-rotated".
func (k *Keystore) autoRotate(ctx context.Context, id KeyID, ev Event) (v Version, gen uint64, err error) {
	// A call that finds the KEK lock or the key's lock held (a KEK
	// rotation; another call rotating this key, whose RSA key generation
	// can take seconds) does not wait for it: it goes on with the overdue
	// primary, and the rotation is the holder's, or the next call's or
	// sweep's.
	if !k.kekMu.TryRLock() { // a handle may be made: see Keystore.kekMu
		return 0, 0, nil
	}
	defer k.kekMu.RUnlock()
	e, ok, err := k.tryWriteKey(ctx, id)
	if err != nil || !ok {
		return 0, 0, err
	}
	defer k.unlockKey(e)
	now := k.clock.Now().UTC()
	rec := e.rec.Load()
	if rec == nil || !rotationDue(&rec.meta, now) {
		return 0, 0, nil
	}
	if err := k.ready(ctx); err != nil {
		return 0, 0, err
	}
	next, err := k.rotateLocked(ctx, rec, now)
	if err != nil {
		return 0, 0, err
	}
	next.meta.Generation = rec.meta.Generation + 1
	ev.Key, ev.Version, ev.Detail, ev.Gen = e.idStr, next.meta.Current, "auto-rotated", next.meta.Generation
	if err := k.change(ctx, e, next, ev, nil); err != nil {
		return 0, 0, err
	}
	if err := k.applied(ctx, &ev); err != nil {
		return 0, 0, err
	}
	return next.meta.Current, next.meta.Generation, nil
}

package core

import (
	"context"
	"errors"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
)

// Quota bounds what one app may hold, so that no app can grow the state
// directory, its inodes and the daemon's memory without bound. Over a
// quota, the request fails with EDQUOT before any work. Operators acting
// on an app's keys are held to that app's quota.
type Quota struct {
	// Keys is the most keys the app may hold, in any state: revoked keys
	// and destroyed tombstones count, since a key ID is never reused and
	// its metadata stays on disk for good.
	Keys int
	// VersionsPerKey is the most versions one key may have, in any state
	// (a rotation adds one; nothing removes one).
	VersionsPerKey int
	// StoreValues and StoreBytes bound the app's values in the Store
	// service: their number, and the sum of their lengths. The server
	// enforces them; the core only carries them.
	StoreValues int
	StoreBytes  int64
}

// Default quotas (docs/operations.md, "Quotas").
const (
	DefaultQuotaKeys           = 1000
	DefaultQuotaVersionsPerKey = 100
	DefaultQuotaStoreValues    = 1024
	DefaultQuotaStoreBytes     = 4 << 20
)

// Upper bounds of configurable quotas: far above any sensible setting,
// low enough that the counts never overflow.
const (
	MaxQuotaKeys           = 1 << 24
	MaxQuotaVersionsPerKey = 1 << 20
	MaxQuotaStoreValues    = 1 << 24
	MaxQuotaStoreBytes     = 1 << 40
)

// DefaultQuota returns the default quota of every app.
func DefaultQuota() Quota {
	return Quota{Keys: DefaultQuotaKeys, VersionsPerKey: DefaultQuotaVersionsPerKey,
		StoreValues: DefaultQuotaStoreValues, StoreBytes: DefaultQuotaStoreBytes}
}

// withDefaults fills q's zero fields from d.
func (q Quota) withDefaults(d Quota) Quota {
	if q.Keys == 0 {
		q.Keys = d.Keys
	}
	if q.VersionsPerKey == 0 {
		q.VersionsPerKey = d.VersionsPerKey
	}
	if q.StoreValues == 0 {
		q.StoreValues = d.StoreValues
	}
	if q.StoreBytes == 0 {
		q.StoreBytes = d.StoreBytes
	}
	return q
}

// check reports a field out of range (EINVAL); zero fields are allowed
// (they take the default).
func (q Quota) check(what string) error {
	fields := []struct {
		name   string
		v, max int64
	}{
		{"keys", int64(q.Keys), MaxQuotaKeys},
		{"versions_per_key", int64(q.VersionsPerKey), MaxQuotaVersionsPerKey},
		{"store_values", int64(q.StoreValues), MaxQuotaStoreValues},
		{"store_bytes", q.StoreBytes, MaxQuotaStoreBytes},
	}
	for _, f := range fields {
		if f.v < 0 || f.v > f.max {
			return provider.Errorf(provider.EINVAL, "%s: %s is %d, want 1 to %d (0: the default)", what, f.name, f.v, f.max)
		}
	}
	return nil
}

// Quotas are the quotas of every app: Default for all, Apps overriding
// it for some (a zero field of an override takes Default's value, and a
// zero field of Default the package default).
type Quotas struct {
	Default Quota
	Apps    map[string]Quota
}

// Check reports a quota out of range or an override for a string that is
// not an app ID (EINVAL).
func (q Quotas) Check() error {
	if err := q.Default.check("default quota"); err != nil {
		return err
	}
	for app, a := range q.Apps {
		if err := provider.CheckSegment("quota app ID", app); err != nil {
			return err
		}
		if err := a.check("quota of app " + app); err != nil {
			return err
		}
	}
	return nil
}

// For returns app's quota, every field set.
func (q Quotas) For(app string) Quota {
	d := q.Default.withDefaults(DefaultQuota())
	if a, ok := q.Apps[app]; ok {
		return a.withDefaults(d)
	}
	return d
}

// Usage is what an app holds against its quota.
type Usage struct {
	App   string
	Quota Quota // the app's limits
	// Keys counts the app's keys in any state (tombstones included).
	Keys int
	// StoreValues and StoreBytes are the Store service's, which the core
	// does not keep: Keystore.Usage leaves them 0 and server.Server.Usage
	// fills them.
	StoreValues int
	StoreBytes  int64
}

// Quota returns app's quota (every field set).
func (k *Keystore) Quota(app string) Quota { return k.quotas.For(app) }

// Usage returns how many keys app holds and its quota. The caller must be
// the app or an operator (EPERM). The first call for an app (or its first
// create) counts its keys in storage; later ones read the count kept in
// memory.
func (k *Keystore) Usage(ctx context.Context, c Caller, app string) (Usage, error) {
	if err := provider.CheckSegment("app ID", app); err != nil {
		return Usage{}, err
	}
	if err := authorize(c, app); err != nil {
		return Usage{}, err
	}
	if err := provider.CheckContext(ctx); err != nil {
		return Usage{}, err
	}
	n, err := k.keyCount.held(k, app)
	if err != nil {
		return Usage{}, err
	}
	return Usage{App: app, Quota: k.quotas.For(app), Keys: n}, nil
}

// keyCounts keeps each app's key count: counted in storage on first use,
// then kept up to date by the creates, which reserve a slot before any
// work and settle it when they end. A create can thus never overshoot the
// quota, however many run at once.
type keyCounts struct {
	mu   sync.Mutex
	apps map[string]*appKeys
}

type appKeys struct {
	mu      sync.Mutex // held while counting in storage and to reserve
	counted bool
	keys    int // keys in storage (or possibly so: see settle)
	pending int // creates that reserved a slot and have not ended
}

func (kc *keyCounts) app(app string) *appKeys {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.apps == nil {
		kc.apps = map[string]*appKeys{}
	}
	a := kc.apps[app]
	if a == nil {
		a = &appKeys{}
		kc.apps[app] = a
	}
	return a
}

// count fills a.keys from storage once. Called with a.mu held.
func (a *appKeys) count(k *Keystore, app string) error {
	if a.counted {
		return nil
	}
	n, err := k.countKeys(app)
	if err != nil {
		return err
	}
	a.keys, a.counted = n, true
	return nil
}

// held returns the keys app holds, counting them in storage on first use.
func (kc *keyCounts) held(k *Keystore, app string) (int, error) {
	a := kc.app(app)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.count(k, app); err != nil {
		return 0, err
	}
	return a.keys, nil
}

// reserveKey takes one of app's key slots for a create, or fails with
// EDQUOT when created and pending keys fill the quota. The create calls
// the returned settle exactly once, with the entry it holds locked.
func (k *Keystore) reserveKey(app string) (settle func(e *entry), err error) {
	a := k.keyCount.app(app)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.count(k, app); err != nil {
		return nil, err
	}
	limit := k.quotas.For(app).Keys
	if a.keys+a.pending >= limit {
		return nil, provider.Errorf(provider.EDQUOT, "app %s holds %d keys, its quota (revoked and destroyed keys count: IDs are never reused)", app, limit)
	}
	a.pending++
	return func(e *entry) {
		// The key exists if its record was published; if the outcome is
		// unknown (a failed write whose result could not be read back),
		// count it: a key too many until the next start, never one too
		// few.
		created := e.rec.Load() != nil || !e.loaded.Load()
		a.mu.Lock()
		defer a.mu.Unlock()
		a.pending--
		if created {
			a.keys++
		}
	}, nil
}

// countKeys counts app's keys in storage, in any state: the key files,
// and the legacy key directories that hold a metadata file (one without
// it, an old create that crashed before its metadata was written, is not
// a key). A name stored both ways counts once.
func (k *Keystore) countKeys(app string) (int, error) {
	root := layoutRoot + "/" + app
	purposes, err := k.dirNames(root)
	if err != nil {
		return 0, provider.WithOp("count keys", app, err)
	}
	n := 0
	for _, purpose := range purposes {
		entries, err := k.st.ReadDir(root + "/" + purpose)
		if errors.Is(err, provider.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, provider.WithOp("count keys", app, err)
		}
		keys := map[string]bool{}
		for _, de := range entries {
			name, ok := keyNameOf(de)
			if !ok || keys[name] {
				continue
			}
			if !de.IsDir() {
				keys[name] = true
				continue
			}
			has, err := k.hasLegacyMeta(root + "/" + purpose + "/" + name)
			if err != nil {
				return 0, provider.WithOp("count keys", app, err)
			}
			keys[name] = has
		}
		for _, is := range keys {
			if is {
				n++
			}
		}
	}
	return n, nil
}

// hasLegacyMeta reports whether the legacy key directory dir holds a
// metadata file.
func (k *Keystore) hasLegacyMeta(dir string) (bool, error) {
	entries, err := k.st.ReadDir(dir)
	if errors.Is(err, provider.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, de := range entries {
		if de.Name() == metaFileName && !de.IsDir() {
			return true, nil
		}
	}
	return false, nil
}

// checkVersionQuota refuses (EDQUOT) a rotation of a key that has all the
// versions its app's quota allows.
func (k *Keystore) checkVersionQuota(rec *record) error {
	limit := k.quotas.For(rec.meta.ID.App()).VersionsPerKey
	if len(rec.meta.Versions) >= limit {
		return provider.Errorf(provider.EDQUOT, "key has %d versions, the quota of app %s", limit, rec.meta.ID.App())
	}
	return nil
}

// overdueOnQuota decides what a sign or seal does when the automatic
// rotation it triggered failed with err: a rotation refused by the
// versions quota lets the call go on with the overdue primary version (the
// key is no weaker than before its period ended, and a quota must not
// turn into an outage of the app's signing), noting the refusal in the
// call's audit event; any other failure fails the call. It returns the
// error the call should fail with, or nil to go on.
func overdueOnQuota(ev *Event, err error) error {
	if code, _ := provider.CodeOf(err); code != provider.EDQUOT {
		return err
	}
	ev.Detail = "auto-rotation refused (EDQUOT: versions quota); used the overdue version"
	return nil
}

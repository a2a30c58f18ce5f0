package core

import (
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
)

// keyIndex is the sorted index of the key IDs in storage, which List and
// Census read instead of the directory tree. It is derived from storage
// once, by a walk of the tree on the first List or Census (so a start
// reads no key directory before the first sign), and kept current by
// the keystore itself: every write of a key's record adds its ID first
// (change, writeRecord: any path that makes a key file must call it, or
// add the ID itself), so the index is never missing a key the keystore
// made. It
// may name an ID that holds no key (a create that failed, a legacy
// directory an old crash left without meta.json): List loads every key it
// names and skips those. Key files and legacy key directories are never
// removed by the keystore (IDs are never reused; a destroyed key keeps
// its tombstone).
// What changes in storage behind the running daemon's back is seen by a
// restart, as the key records themselves are.
type keyIndex struct {
	// build serialises the walk; a List or Census waits for the one in
	// progress.
	build sync.Mutex

	mu sync.Mutex
	// built: ids and apps reflect storage. Until then, adds go to
	// pending (merged when a walk ends): a file added may appear in
	// storage only after a walk passed its directory.
	built   bool
	ids     []KeyID // sorted; replaced, never changed, once published
	pending []KeyID // added since ids was made, unsorted (deduplicated once built)
	// unique is len(pending) after its last deduplication before the
	// build: pending is deduplicated again when it doubles, so before
	// the build (or while walks fail) it holds at most about twice the
	// distinct IDs written, not one entry per write.
	unique int
	apps   []string // sorted: every app that has a directory or a key
}

// maxPending bounds pending before it is merged into ids.
const maxPending = 256

// add records that id's key file exists (or is about to). It is kept
// before the index is built too: a change's file becomes visible only at
// its commit, after add, so a walk that starts in between does not see
// it (a key created while a KEK rotation's first listing walked the tree
// was left out of the rotation, its handle under the retired KEK).
func (x *keyIndex) add(id KeyID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.built && x.hasLocked(id) {
		return
	}
	x.pending = append(x.pending, id)
	if app := id.App(); !slices.Contains(x.apps, app) {
		x.apps = append(x.apps, app)
		slices.Sort(x.apps)
	}
	switch {
	case x.built && len(x.pending) >= maxPending:
		x.mergeLocked()
	case !x.built && len(x.pending) >= max(maxPending, 2*x.unique):
		x.pending = sortedUnique(x.pending)
		x.unique = len(x.pending)
	}
}

// has reports whether the index names id (false before it is built).
func (x *keyIndex) has(id KeyID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.built && x.hasLocked(id)
}

func (x *keyIndex) hasLocked(id KeyID) bool {
	if _, ok := slices.BinarySearchFunc(x.ids, id, KeyID.Compare); ok {
		return true
	}
	return slices.Contains(x.pending, id)
}

// sortedUnique sorts ids in place and removes repeats.
func sortedUnique(ids []KeyID) []KeyID {
	slices.SortFunc(ids, KeyID.Compare)
	return slices.CompactFunc(ids, func(a, b KeyID) bool { return a.Compare(b) == 0 })
}

// mergeLocked merges pending into a new ids slice.
func (x *keyIndex) mergeLocked() {
	if len(x.pending) == 0 {
		return
	}
	x.pending = sortedUnique(x.pending)
	out := make([]KeyID, 0, len(x.ids)+len(x.pending))
	i, j := 0, 0
	for i < len(x.ids) || j < len(x.pending) {
		switch {
		case j == len(x.pending) || i < len(x.ids) && idLess(x.ids[i], x.pending[j]):
			out = append(out, x.ids[i])
			i++
		case i == len(x.ids) || idLess(x.pending[j], x.ids[i]):
			out = append(out, x.pending[j])
			j++
		default: // equal
			out = append(out, x.ids[i])
			i, j = i+1, j+1
		}
	}
	x.ids, x.pending, x.unique = out, nil, 0
}

// LoadIndex builds the key index (a walk of the key tree) if it is not
// built yet, so that the first List or Census need not: the daemon calls
// it in the background a little after it starts serving. ctx bounds the
// walk; a failed walk is retried by the next List.
func (k *Keystore) LoadIndex(ctx context.Context) error {
	_, _, err := k.indexView(ctx)
	return err
}

// indexView returns the sorted IDs and apps, walking storage first if the
// index is not built yet. The slices returned are not changed later.
func (k *Keystore) indexView(ctx context.Context) ([]KeyID, []string, error) {
	x := &k.index
	x.mu.Lock()
	if x.built {
		x.mergeLocked()
		ids, apps := x.ids, slices.Clone(x.apps)
		x.mu.Unlock()
		return ids, apps, nil
	}
	x.mu.Unlock()
	x.build.Lock()
	defer x.build.Unlock()
	x.mu.Lock()
	if x.built { // another caller built it while this one waited
		x.mergeLocked()
		ids, apps := x.ids, slices.Clone(x.apps)
		x.mu.Unlock()
		return ids, apps, nil
	}
	x.mu.Unlock()
	ids, apps, err := k.walkKeys(ctx)
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil {
		return nil, nil, err // pending kept for the next walk
	}
	x.ids, x.built = ids, true
	for _, a := range x.apps { // apps of keys added during the walk
		if !slices.Contains(apps, a) {
			apps = append(apps, a)
		}
	}
	slices.Sort(apps)
	x.apps = apps
	x.mergeLocked()
	return x.ids, slices.Clone(x.apps), nil
}

// walkKeys reads the key tree: every valid key ID that has a key file or
// a legacy key directory (keyNameOf), sorted, and every app that has a
// directory.
func (k *Keystore) walkKeys(ctx context.Context) ([]KeyID, []string, error) {
	apps, err := k.dirNames(layoutRoot)
	if err != nil {
		return nil, nil, err
	}
	var ids []KeyID
	for _, app := range apps {
		purposes, err := k.dirNames(layoutRoot + "/" + app)
		if err != nil {
			return nil, nil, err
		}
		for _, purpose := range purposes {
			if err := provider.CheckContext(ctx); err != nil {
				return nil, nil, err
			}
			names, err := k.keyNames(layoutRoot + "/" + app + "/" + purpose)
			if err != nil {
				return nil, nil, err
			}
			for _, name := range names {
				if id, err := provider.NewKeyID(app, purpose, name); err == nil {
					ids = append(ids, id)
				}
			}
		}
	}
	// dirNames and keyNames sort each level, so ids is sorted already; sort anyway
	// should a name order differ from the ID order.
	if !sort.SliceIsSorted(ids, func(i, j int) bool { return idLess(ids[i], ids[j]) }) {
		slices.SortFunc(ids, KeyID.Compare)
	}
	return ids, apps, nil
}

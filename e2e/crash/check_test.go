package crash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nexus-os/keystored/client"
)

// sampleEvery: the kept seals and signatures (keepItems) of a key not
// touched since the last restart are checked after one restart in
// sampleEvery (and all of them at the end), those of a touched key after
// every restart; new ones after the restart that follows them.
const sampleEvery = 16

// nameOf returns the "<purpose>/<name>" part of a full key ID.
func nameOf(id string) string {
	if _, rest, ok := strings.Cut(id, "/"); ok {
		return rest
	}
	return id
}

// check compares the restarted daemon and its state directory with the
// model, records every violation, and makes what it saw the new baseline.
// The workers are stopped; check holds m.mu throughout.
func (m *model) check(ctx context.Context, c *client.Client, state string, cycle int, full bool) {
	m.mu.Lock()
	defer m.mu.Unlock()

	// Every key the daemon loaded, and no unreadable one.
	listed := map[string]client.KeyInfo{}
	token := ""
	for {
		page, err := c.List(ctx, client.ListOptions{PageSize: 1000, PageToken: token})
		if err != nil {
			m.failf("list after restart: %v", err)
			return
		}
		for _, u := range page.Unreadable {
			m.failf("key %s unreadable after restart: %v", u.ID, u.Err)
		}
		for _, k := range page.Keys {
			listed[k.ID] = k
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	// The daemon's own keys (its audit checkpoint key) are listed only
	// when their app is named; they must be as whole as the rest.
	own := map[string]client.KeyInfo{}
	page, err := c.List(ctx, client.ListOptions{App: "keystored", PageSize: 1000})
	if err != nil {
		m.failf("list of the daemon's own keys after restart: %v", err)
		return
	}
	for _, u := range page.Unreadable {
		m.failf("key %s unreadable after restart: %v", u.ID, u.Err)
	}
	for _, k := range page.Keys {
		own[k.ID] = k
	}

	// Creates cut off by the kill: the key exists (version 1, active) or
	// does not, nothing in between.
	for name := range m.maybe {
		info, err := c.Get(ctx, name)
		switch {
		case err == nil:
			if info.CurrentVersion != 1 || info.State != client.KeyActive {
				m.failf("create of %s cut off by the kill: key at version %d, %v; want 1, active", info.ID, info.CurrentVersion, info.State)
			}
			if _, ok := listed[info.ID]; !ok {
				m.failf("key %s: Get finds it, List does not", info.ID)
			}
			m.add(name, info)
			m.st.landed++
		case errors.Is(err, client.ErrNotFound):
			m.abandoned[name] = true
		default:
			m.failf("get %s after restart: %v", name, err)
		}
		delete(m.maybe, name)
	}

	// Every file whole; the files and the listing agree.
	disk, problems := m.scan.scan(state)
	for _, p := range problems {
		m.failf("state directory: %s", p)
	}
	for id, dk := range disk {
		for _, p := range dk.problems {
			m.failf("state directory: %s", p)
		}
		info, ok := listed[id]
		if !ok {
			info, ok = own[id]
		}
		if dk.meta == nil {
			// A legacy key directory without meta.json: this daemon
			// makes none (a cut-off create leaves only its temporary
			// file, swept at the restart); an older one's cut-off
			// create left such a directory.
			if ok {
				m.failf("key %s is listed but %s has no meta.json", id, dk.dir)
			}
			if !m.abandoned[nameOf(id)] {
				m.failf("%s has no meta.json, but no create of %s was cut off", dk.dir, id)
			}
			for v := range dk.handles {
				if v != 1 {
					m.failf("%s: handle of version %d in a key directory without meta.json", dk.dir, v)
				}
			}
			continue
		}
		if !ok {
			m.failf("%s is whole but key %s is not listed", dk.file, id)
			continue
		}
		if dk.meta.ID != id || dk.meta.Current != info.CurrentVersion || dk.meta.State != info.State.String() {
			m.failf("%s says %s version %d %s; the daemon says version %d %v", dk.file, dk.meta.ID, dk.meta.Current, dk.meta.State, info.CurrentVersion, info.State)
		}
		for _, v := range info.Versions {
			if (v.State == client.VersionPrimary || v.State == client.VersionRetired) && !dk.handles[v.Version] {
				m.failf("key %s: version %d is %v but has no handle (in %s or v%d.handle)", id, v.Version, v.State, dk.file, v.Version)
			}
		}
		for v := range dk.handles {
			if v > info.CurrentVersion+1 {
				m.failf("key %s at version %d has a handle for version %d", id, info.CurrentVersion, v)
			}
		}
	}
	for id := range listed {
		if dk := disk[id]; dk == nil || dk.meta == nil {
			m.failf("key %s is listed but has no metadata file on disk", id)
		}
	}

	// Every acknowledged operation is there, nothing that was never tried.
	known := map[string]bool{}
	var checks []itemCheck
	for _, k := range m.order {
		known[k.id] = true
		info, ok := listed[k.id]
		if !ok {
			m.st.lost++
			m.failf("key %s was acknowledged but is missing after the restart", k.id)
			continue
		}
		m.checkKey(k, info)
		if k.dirty || full {
			got, err := c.Get(ctx, k.name)
			switch {
			case err != nil:
				m.failf("get %s after restart: %v", k.id, err)
			case got.CurrentVersion != info.CurrentVersion || got.State != info.State || len(got.Versions) != len(info.Versions):
				m.failf("key %s: Get says version %d %v, List says version %d %v", k.id, got.CurrentVersion, got.State, info.CurrentVersion, info.State)
			}
		}
		all := full || k.dirty || k.idx%sampleEvery == cycle%sampleEvery
		checks = append(checks, m.itemChecks(ctx, c, k, info, all)...)
		k.keepNew(m.rng)
		k.observed(info)
	}
	m.runChecks(checks)
	for id := range listed {
		if !known[id] {
			m.failf("key %s exists but was never created", id)
		}
	}
}

// checkKey compares one key's state after a restart with the model (m.mu
// held).
func (m *model) checkKey(k *keyModel, info client.KeyInfo) {
	lost := func(format string, args ...any) {
		m.st.lost++
		m.failf(format, args...)
	}
	if info.Algorithm != k.alg {
		m.failf("key %s: algorithm %s, created as %s", k.id, info.Algorithm, k.alg)
	}
	if info.CurrentVersion < k.versions {
		lost("key %s: version %d after the restart, but version %d was acknowledged", k.id, info.CurrentVersion, k.versions)
	}
	if most := k.base + uint32(k.rotations); info.CurrentVersion > most {
		m.failf("key %s: version %d after the restart, but at most %d can exist", k.id, info.CurrentVersion, most)
	}
	if len(info.Versions) != int(info.CurrentVersion) {
		m.failf("key %s: %d versions listed for current version %d", k.id, len(info.Versions), info.CurrentVersion)
	}
	switch {
	case k.state == client.KeyDestroyed && info.State != client.KeyDestroyed:
		lost("key %s: %v after the restart, but its destroy was acknowledged", k.id, info.State)
	case k.state == client.KeyRevoked && info.State == client.KeyActive:
		lost("key %s: active after the restart, but its revoke was acknowledged", k.id)
	case info.State == client.KeyRevoked && k.state == client.KeyActive && k.revokes == 0:
		m.failf("key %s: revoked after the restart, but no revoke was attempted", k.id)
	case info.State == client.KeyDestroyed && k.state != client.KeyDestroyed && k.destroys == 0:
		m.failf("key %s: destroyed after the restart, but no destroy was attempted", k.id)
	}
	p := primaries(info)
	if info.State == client.KeyActive {
		if len(p) != 1 || p[0] != info.CurrentVersion {
			m.failf("active key %s at version %d: primary versions %v, want exactly [%d]", k.id, info.CurrentVersion, p, info.CurrentVersion)
		}
	} else if len(p) != 0 {
		m.failf("%v key %s has primary versions %v", info.State, k.id, p)
	}
	for i, v := range info.Versions {
		if v.Version != uint32(i+1) {
			m.failf("key %s: versions %v are not numbered 1..n", k.id, info.Versions)
			break
		}
		gone := v.State == client.VersionRevoked || v.State == client.VersionDestroyed
		switch {
		case info.State != client.KeyActive && !gone:
			m.failf("%v key %s: version %d is %v", info.State, k.id, v.Version, v.State)
		case k.revokedV[v.Version] && !gone:
			lost("key %s: version %d is %v after the restart, but its revoke was acknowledged", k.id, v.Version, v.State)
		case info.State == client.KeyActive && v.State == client.VersionRevoked && !k.revokedV[v.Version] && k.revokeTries[v.Version] == 0:
			m.failf("key %s: version %d revoked after the restart, but no revoke of it was attempted", k.id, v.Version)
		}
	}
}

// itemCheck is one check of an acknowledged seal or signature: it returns
// a problem ("" if none) and whether the problem is a lost operation.
type itemCheck func() (problem string, lost bool)

// itemChecks returns the checks of k's seals and signatures acknowledged
// since the last check, and with all of the kept ones: each must unseal or
// verify while its version is usable and give EKEYREVOKED once it is
// revoked or destroyed (m.mu held).
func (m *model) itemChecks(ctx context.Context, c *client.Client, k *keyModel, info client.KeyInfo, all bool) []itemCheck {
	usable := func(version uint32) bool {
		v, ok := info.Version(version)
		return ok && info.State == client.KeyActive && (v.State == client.VersionPrimary || v.State == client.VersionRetired)
	}
	seals, sigs := k.newSeals, k.newSigs
	if all {
		seals = append(append([]sealedItem(nil), k.seals...), seals...)
		sigs = append(append([]signedItem(nil), k.sigs...), sigs...)
	}
	var checks []itemCheck
	for _, s := range seals {
		m.st.unsealed++
		checks = append(checks, func() (string, bool) {
			u, err := c.Unseal(ctx, k.name, s.data, s.aad)
			switch {
			case !usable(s.version):
				if !errors.Is(err, client.ErrKeyRevoked) {
					return fmt.Sprintf("unseal %s@%d (version %v, key %v): %v, want EKEYREVOKED", k.id, s.version, versionState(info, s.version), info.State, err), false
				}
			case err != nil:
				return fmt.Sprintf("unseal %s@%d after restart: %v", k.id, s.version, err), true
			case !bytes.Equal(u.Plaintext, s.plaintext) || u.Version != s.version:
				return fmt.Sprintf("unseal %s@%d after restart: version %d, plaintext differs", k.id, s.version, u.Version), true
			}
			return "", false
		})
	}
	for _, s := range sigs {
		m.st.verified++
		checks = append(checks, func() (string, bool) {
			err := c.Verify(ctx, k.name, s.version, s.msg, s.sig)
			switch {
			case !usable(s.version):
				if !errors.Is(err, client.ErrKeyRevoked) {
					return fmt.Sprintf("verify %s@%d (version %v, key %v): %v, want EKEYREVOKED", k.id, s.version, versionState(info, s.version), info.State, err), false
				}
			case err != nil:
				return fmt.Sprintf("verify %s@%d after restart: %v", k.id, s.version, err), true
			}
			return "", false
		})
	}
	return checks
}

// runChecks runs checks on a few goroutines and records their problems
// (m.mu held).
func (m *model) runChecks(checks []itemCheck) {
	const parallel = 4
	type result struct {
		problem string
		lost    bool
	}
	results := make([]result, len(checks))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(checks) {
					return
				}
				results[i].problem, results[i].lost = checks[i]()
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.problem == "" {
			continue
		}
		if r.lost {
			m.st.lost++
		}
		m.failf("%s", r.problem)
	}
}

func versionState(info client.KeyInfo, v uint32) client.VersionState {
	kv, _ := info.Version(v) // the zero state prints "unspecified"
	return kv.State
}

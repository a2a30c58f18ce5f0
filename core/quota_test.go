package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

func withQuotas(q core.Quotas) envOption { return func(o *core.Config) { o.Quotas = q } }

// The attack of issue 9: one app creates keys as fast as it can, from many
// goroutines at once. Exactly the quota's worth succeed, every other
// create fails with EDQUOT (errno 122), and nothing is left behind by the
// refused ones; another app is not affected.
func TestQuotaKeysFloodStopsAtExactlyTheQuota(t *testing.T) {
	const quota, workers, each = 40, 32, 6 // 192 attempts
	e := newEnv(t, withQuotas(core.Quotas{Default: core.Quota{Keys: quota}}))
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := mustID(t, fmt.Sprintf("app-a/flood/k%d-%d", w, i))
				_, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, provider.ErrQuota) && errors.Is(err, syscall.EDQUOT):
					refused.Add(1)
				default:
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("create: %v", err)
	}
	if ok.Load() != quota || refused.Load() != workers*each-quota {
		t.Fatalf("%d created, %d refused; want exactly %d created", ok.Load(), refused.Load(), quota)
	}
	u, err := e.ks.Usage(ctx, appA, "app-a")
	if err != nil || u.Keys != quota || u.Quota.Keys != quota {
		t.Fatalf("Usage = %+v, %v", u, err)
	}
	// What is on disk is what was acknowledged: a fresh keystore over the
	// same storage counts the same and refuses the next create.
	e2 := newEnvWith(t, e.st, e.p, withQuotas(core.Quotas{Default: core.Quota{Keys: quota}}))
	if u, err := e2.ks.Usage(ctx, operator, "app-a"); err != nil || u.Keys != quota {
		t.Fatalf("Usage after reopening = %+v, %v", u, err)
	}
	_, err = e2.ks.Create(ctx, appA, mustID(t, "app-a/flood/late"), core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create after reopening", err, provider.EDQUOT)
	if ev := e2.audit.last(t); ev.Result != provider.EDQUOT || ev.Op != core.OpCreate {
		t.Fatalf("refusal audited as %+v", ev)
	}
	page, err := e2.ks.List(ctx, appA, core.ListOptions{PageSize: core.MaxPageSize})
	if err != nil || len(page.Keys) != quota {
		t.Fatalf("List: %d keys, %v", len(page.Keys), err)
	}
	// Another app has its own quota.
	e2.create(t, appB, "app-b/p/k", provider.Ed25519)
}

// Revoked keys and destroyed tombstones count: IDs are never reused, so a
// create-revoke-destroy loop would otherwise grow the state without bound.
// An existing ID still gives EALREADY, not EDQUOT (the key table first).
func TestQuotaKeysCountTombstones(t *testing.T) {
	e := newEnv(t, withQuotas(core.Quotas{Default: core.Quota{Keys: 2}}))
	a := e.create(t, appA, "app-a/p/a", provider.Ed25519)
	e.create(t, appA, "app-a/p/b", provider.Ed25519)
	if _, err := e.ks.Revoke(ctx, appA, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Destroy(ctx, appA, a); err != nil {
		t.Fatal(err)
	}
	_, err := e.ks.Create(ctx, appA, mustID(t, "app-a/p/c"), core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create after a destroy", err, provider.EDQUOT)
	_, err = e.ks.Create(ctx, appA, a, core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create of an existing ID at the quota", err, provider.EALREADY)
}

// Operators are held to the target app's quota; per-app overrides take
// the other fields from the default.
func TestQuotaOperatorsAndOverrides(t *testing.T) {
	q := core.Quotas{Default: core.Quota{Keys: 1, VersionsPerKey: 5}, Apps: map[string]core.Quota{"app-b": {Keys: 3}}}
	e := newEnv(t, withQuotas(q))
	e.create(t, operator, "app-a/p/k1", provider.Ed25519)
	_, err := e.ks.Create(ctx, operator, mustID(t, "app-a/p/k2"), core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "operator create over app-a's quota", err, provider.EDQUOT)
	for i := range 3 {
		e.create(t, appB, fmt.Sprintf("app-b/p/k%d", i), provider.Ed25519)
	}
	_, err = e.ks.Create(ctx, appB, mustID(t, "app-b/p/k3"), core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create over app-b's override", err, provider.EDQUOT)
	if got := e.ks.Quota("app-b"); got.Keys != 3 || got.VersionsPerKey != 5 || got.StoreValues != core.DefaultQuotaStoreValues || got.StoreBytes != core.DefaultQuotaStoreBytes {
		t.Fatalf("Quota(app-b) = %+v", got)
	}
	if got := newEnv(t).ks.Quota("x"); got != core.DefaultQuota() {
		t.Fatalf("zero Quotas give %+v, want the defaults %+v", got, core.DefaultQuota())
	}
	_, err = e.ks.Usage(ctx, appA, "app-b")
	wantCode(t, "Usage of another app", err, provider.EPERM)
}

// The count is taken from storage the first time: keys made by an earlier
// process count; a key directory without metadata (a create that crashed
// before its metadata was written) does not.
func TestQuotaCountsStorageOnce(t *testing.T) {
	st := storage.NewMemory()
	e := newEnvWith(t, st, newEnv(t).p)
	for _, id := range []string{"app-a/p0/a", "app-a/p0/b", "app-a/p1/c", "app-a/p1/d", "app-a/p2/e"} {
		e.create(t, appA, id, provider.Ed25519)
	}
	if _, err := e.ks.Revoke(ctx, appA, mustID(t, "app-a/p1/d")); err != nil {
		t.Fatal(err)
	}
	e.create(t, appB, "app-b/p0/a", provider.Ed25519)
	if err := st.WriteFile("keystore/app-a/p0/crashed/v1.handle", []byte("half a create")); err != nil {
		t.Fatal(err)
	}
	const held = 5
	e2 := newEnvWith(t, st, e.p, withQuotas(core.Quotas{Default: core.Quota{Keys: held + 1}}))
	if u, err := e2.ks.Usage(ctx, appA, "app-a"); err != nil || u.Keys != held {
		t.Fatalf("Usage = %+v, %v; want %d keys", u, err, held)
	}
	// The crashed ID can be created: one slot left, and it takes it.
	e2.create(t, appA, "app-a/p0/crashed", provider.Ed25519)
	_, err := e2.ks.Create(ctx, appA, mustID(t, "app-a/p0/more"), core.CreateOptions{Algorithm: provider.Ed25519})
	wantCode(t, "create past the quota", err, provider.EDQUOT)
}

// A create that fails gives its slot back: a full quota of failed creates
// does not lock the app out.
func TestQuotaFailedCreateReleasesItsSlot(t *testing.T) {
	e := newEnv(t, withQuotas(core.Quotas{Default: core.Quota{Keys: 1}}))
	e.audit.mu.Lock()
	e.audit.refuseAll = true
	e.audit.mu.Unlock()
	for i := range 3 {
		_, err := e.ks.Create(ctx, appA, mustID(t, fmt.Sprintf("app-a/p/f%d", i)), core.CreateOptions{Algorithm: provider.Ed25519})
		wantCode(t, "create with the audit sink refusing", err, provider.EIO)
	}
	e.audit.mu.Lock()
	e.audit.refuseAll = false
	e.audit.mu.Unlock()
	e.create(t, appA, "app-a/p/ok", provider.Ed25519)
}

// A rotation past the versions quota fails with EDQUOT before the
// provider generates anything; the key keeps working.
func TestQuotaVersionsPerKey(t *testing.T) {
	e := newEnv(t, withQuotas(core.Quotas{Default: core.Quota{VersionsPerKey: 3}}))
	id := e.create(t, appA, "app-a/p/k", provider.Ed25519)
	for range 2 {
		if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.ks.Rotate(ctx, operator, id)
	wantCode(t, "rotate to v4 with a quota of 3", err, provider.EDQUOT)
	if ev := e.audit.last(t); ev.Op != core.OpRotate || ev.Result != provider.EDQUOT {
		t.Fatalf("audit %+v", ev)
	}
	if _, err := e.st.ReadFile("keystore/app-a/p/k/v4.handle"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("v4 handle after a refused rotation: %v", err)
	}
	if b := e.readFile(t, "keystore/app-a/p/k~meta.json"); bytes.Contains(b, []byte(`"version":4`)) {
		t.Fatalf("v4 in meta.json after a refused rotation: %s", b)
	}
	m, err := e.ks.Get(ctx, appA, id)
	if err != nil || m.Current != 3 || len(m.Versions) != 3 {
		t.Fatalf("Get = v%d (%d versions), %v", m.Current, len(m.Versions), err)
	}
	if s, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil || s.Version != 3 {
		t.Fatalf("sign at the quota: v%d %v", s.Version, err)
	}
}

// A key due for automatic rotation at its versions quota keeps signing
// and sealing with the overdue version; the call's audit event says the
// rotation was refused. A sweep reports the keys as failed to rotate.
func TestQuotaAutoRotationAtVersionsQuota(t *testing.T) {
	e := newEnv(t, withQuotas(core.Quotas{Default: core.Quota{VersionsPerKey: 2}}))
	pol := core.Policy{RotationPeriod: time.Hour}
	sig, err := e.ks.Create(ctx, appA, mustID(t, "app-a/p/sig"), core.CreateOptions{Algorithm: provider.Ed25519, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := e.ks.Create(ctx, appA, mustID(t, "app-a/p/dec"), core.CreateOptions{Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	s, err := e.ks.Sign(ctx, appA, sig.ID, []byte("m"))
	if err != nil || s.Version != 2 {
		t.Fatalf("first due sign: v%d %v (want the auto-rotation to v2)", s.Version, err)
	}
	e.clock.Advance(time.Hour)
	s, err = e.ks.Sign(ctx, appA, sig.ID, []byte("m"))
	if err != nil || s.Version != 2 {
		t.Fatalf("sign due at the quota: v%d %v; want v2, the overdue version", s.Version, err)
	}
	ev := e.audit.last(t)
	if ev.Op != core.OpSign || ev.OK() != true || ev.Version != 2 || ev.Detail != "auto-rotation refused (EDQUOT: versions quota); used the overdue version" {
		t.Fatalf("audit %+v", ev)
	}
	if err := e.ks.Verify(ctx, appA, sig.ID, 2, []byte("m"), s.Signature); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if _, err := e.ks.Rotate(ctx, appA, dec.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	sealed, err := e.ks.Seal(ctx, appA, dec.ID, []byte("p"), nil)
	if err != nil || sealed.Version != 2 {
		t.Fatalf("seal due at the quota: v%d %v", sealed.Version, err)
	}
	res, err := e.ks.Sweep(ctx, operator, core.SweepOptions{})
	if err != nil || len(res.Rotated) != 0 || len(res.Failed) != 2 {
		t.Fatalf("sweep at the quota = %+v, %v; want nothing rotated and both keys failed", res, err)
	}
	for _, f := range res.Failed {
		wantCode(t, "sweep failure of "+f.ID.String(), f.Err, provider.EDQUOT)
	}
}

func TestQuotasChecked(t *testing.T) {
	for _, q := range []core.Quotas{
		{Default: core.Quota{Keys: -1}},
		{Default: core.Quota{VersionsPerKey: core.MaxQuotaVersionsPerKey + 1}},
		{Default: core.Quota{StoreBytes: -5}},
		{Apps: map[string]core.Quota{"Bad App": {Keys: 1}}},
		{Apps: map[string]core.Quota{"app": {StoreValues: core.MaxQuotaStoreValues + 1}}},
	} {
		p := newEnv(t).p
		_, err := core.Open(ctx, core.Config{Storage: storage.NewMemory(), Provider: p, Clock: newEnv(t).clock, Audit: &recorder{}, Quotas: q})
		wantCode(t, fmt.Sprintf("Open with %+v", q), err, provider.EINVAL)
	}
}

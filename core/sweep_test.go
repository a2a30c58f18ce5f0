package core_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/testseed"
)

// A sweep examines at most Limit keys per call and resumes from its page
// token: a series of calls rotates every due key exactly once, in ID
// order, and each call is one audit event with its counts.
func TestSweepIsBoundedAndResumes(t *testing.T) {
	e := newEnv(t)
	pol := core.Policy{RotationPeriod: time.Hour}
	due := map[core.KeyID]bool{}
	for i := range 25 {
		id := mustID(t, fmt.Sprintf("app-%c/p/k%02d", 'a'+i%3, i))
		o := core.CreateOptions{Algorithm: provider.Ed25519}
		if i%4 != 0 { // every fourth key has no rotation period
			o.Policy = pol
			due[id] = true
		}
		if _, err := e.ks.Create(ctx, operator, id, o); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Hour)
	rotated := map[core.KeyID]core.Version{}
	var last core.KeyID
	token, calls, examined := "", 0, 0
	for {
		res, err := e.ks.Sweep(ctx, operator, core.SweepOptions{Limit: 10, PageToken: token})
		if err != nil {
			t.Fatalf("sweep call %d: %v", calls, err)
		}
		calls++
		if res.Examined > 10 {
			t.Fatalf("call %d examined %d keys, over its limit of 10", calls, res.Examined)
		}
		examined += res.Examined
		for _, r := range res.Rotated {
			if _, twice := rotated[r.ID]; twice {
				t.Fatalf("%s rotated twice", r.ID)
			}
			if !last.IsZero() && r.ID.Compare(last) <= 0 {
				t.Fatalf("rotated %s after %s: not in ID order", r.ID, last)
			}
			last = r.ID
			rotated[r.ID] = r.Version
		}
		want := fmt.Sprintf("examined %d, rotated %d, failed %d", res.Examined, len(res.Rotated), len(res.Failed))
		if ev := e.audit.last(t); ev.Op != core.OpSweep || !ev.OK() || ev.Detail != want {
			t.Fatalf("audit event %+v, want a sweep with detail %q", ev, want)
		}
		if res.NextPageToken == "" {
			break
		}
		if calls > 10 {
			t.Fatal("the sweep does not end")
		}
		token = res.NextPageToken
	}
	if calls != 3 || examined != 25 {
		t.Fatalf("%d calls examined %d keys; want 3 calls and 25 keys", calls, examined)
	}
	if len(rotated) != len(due) {
		t.Fatalf("rotated %d keys, want the %d due ones", len(rotated), len(due))
	}
	for id, v := range rotated {
		if !due[id] || v != 2 {
			t.Fatalf("rotated %s to v%d (due: %v)", id, v, due[id])
		}
		m, err := e.ks.Get(ctx, operator, id)
		if err != nil || m.Current != 2 {
			t.Fatalf("%s after the sweep: v%d, %v", id, m.Current, err)
		}
	}
	// Nothing is due any more.
	res, err := e.ks.Sweep(ctx, operator, core.SweepOptions{})
	if err != nil || len(res.Rotated) != 0 || res.Examined != 25 {
		t.Fatalf("second sweep = %+v, %v", res, err)
	}
}

// Revoked and destroyed keys, and active keys not yet due, are never
// rotated by a sweep.
func TestSweepRotatesOnlyDueActiveKeys(t *testing.T) {
	e := newEnv(t)
	pol := core.Policy{RotationPeriod: time.Hour}
	ids := map[string]core.KeyID{}
	for _, name := range []string{"revoked", "destroyed", "young", "due"} {
		id := mustID(t, "app-a/p/"+name)
		ids[name] = id
		if _, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519, Policy: pol}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.ks.Revoke(ctx, appA, ids["revoked"]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Revoke(ctx, appA, ids["destroyed"]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Destroy(ctx, appA, ids["destroyed"]); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour - time.Second)
	if _, err := e.ks.Rotate(ctx, appA, ids["young"]); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	res, err := e.ks.Sweep(ctx, operator, core.SweepOptions{})
	if err != nil || len(res.Rotated) != 1 || res.Rotated[0].ID != ids["due"] || res.Examined != 4 || len(res.Failed) != 0 {
		t.Fatalf("sweep = %+v, %v; want only %s rotated", res, err, ids["due"])
	}
}

// A sweep checks its options and its caller before any work.
func TestSweepChecksOptions(t *testing.T) {
	e := newEnv(t)
	for _, o := range []core.SweepOptions{{Limit: -1}, {Limit: core.MaxSweepLimit + 1}, {PageToken: "not a key"}} {
		_, err := e.ks.Sweep(ctx, operator, o)
		wantCode(t, fmt.Sprintf("sweep %+v", o), err, provider.EINVAL)
		if ev := e.audit.last(t); ev.Op != core.OpSweep || ev.Result != provider.EINVAL {
			t.Fatalf("audit event %+v", ev)
		}
	}
	_, err := e.ks.Sweep(ctx, appA, core.SweepOptions{})
	wantCode(t, "sweep by an app", err, provider.EPERM)
}

// A sweep stops when its context ends; its page token resumes after the
// last key it handled, so nothing is skipped.
func TestSweepHonoursContext(t *testing.T) {
	e := newEnv(t)
	pol := core.Policy{RotationPeriod: time.Hour}
	for i := range 3 {
		if _, err := e.ks.Create(ctx, appA, mustID(t, fmt.Sprintf("app-a/p/k%d", i)), core.CreateOptions{Algorithm: provider.Ed25519, Policy: pol}); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Hour)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	res, err := e.ks.Sweep(cctx, operator, core.SweepOptions{})
	wantCode(t, "sweep with a cancelled context", err, provider.EUNAVAILABLE)
	if len(res.Rotated) != 0 {
		t.Fatalf("a cancelled sweep rotated %+v", res.Rotated)
	}
	// Cancelled after the first rotation: the sink's Commit of the first
	// rotation cancels the context.
	cctx, cancel = context.WithCancel(ctx)
	defer cancel()
	e.audit.onCommit = func(core.Event) { cancel() }
	res, err = e.ks.Sweep(cctx, operator, core.SweepOptions{})
	e.audit.onCommit = nil
	wantCode(t, "sweep cancelled during its first rotation", err, provider.EUNAVAILABLE)
	if len(res.Rotated) != 1 || res.Rotated[0].ID != mustID(t, "app-a/p/k0") || res.NextPageToken != "app-a/p/k0" {
		t.Fatalf("cancelled sweep = %+v", res)
	}
	res, err = e.ks.Sweep(ctx, operator, core.SweepOptions{PageToken: res.NextPageToken})
	if err != nil || len(res.Rotated) != 2 || res.Examined != 2 || res.NextPageToken != "" {
		t.Fatalf("resumed sweep = %+v, %v; want the other two keys rotated", res, err)
	}
}

// A key whose metadata cannot be read is reported as failed (EIO) and
// does not stop the sweep.
func TestSweepReportsUnreadableKeys(t *testing.T) {
	mem := storage.NewMemory()
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, mem, p)
	pol := core.Policy{RotationPeriod: time.Hour}
	for _, name := range []string{"a", "b", "c"} {
		if _, err := e.ks.Create(ctx, appA, mustID(t, "app-a/p/"+name), core.CreateOptions{Algorithm: provider.Ed25519, Policy: pol}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mem.Corrupt("keystore/app-a/p/b~meta.json", func(b []byte) []byte { return b[:len(b)/2] }); err != nil {
		t.Fatal(err)
	}
	e = newEnvWith(t, mem, p) // a restart reads the corrupted file
	e.clock.Advance(time.Hour)
	res, err := e.ks.Sweep(ctx, operator, core.SweepOptions{})
	if err != nil || len(res.Rotated) != 2 || len(res.Failed) != 1 || res.Examined != 3 {
		t.Fatalf("sweep = %+v, %v; want a and c rotated, b failed", res, err)
	}
	if f := res.Failed[0]; f.ID != mustID(t, "app-a/p/b") {
		t.Fatalf("failed %s, want app-a/p/b", f.ID)
	}
	wantCode(t, "the unreadable key", res.Failed[0].Err, provider.EIO)
}

// RotationDue is the primary version's creation plus the period, for
// active keys with a period only.
func TestRotationDue(t *testing.T) {
	e := newEnv(t)
	id := mustID(t, "app-a/p/due")
	m, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519, Policy: core.Policy{RotationPeriod: 2 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if due, ok := m.RotationDue(); !ok || !due.Equal(epoch.Add(2*time.Hour)) {
		t.Fatalf("RotationDue = %v, %v; want %v", due, ok, epoch.Add(2*time.Hour))
	}
	e.clock.Advance(time.Hour)
	if m, err = e.ks.Rotate(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if due, ok := m.RotationDue(); !ok || !due.Equal(epoch.Add(3*time.Hour)) {
		t.Fatalf("after a rotation RotationDue = %v, %v; want %v", due, ok, epoch.Add(3*time.Hour))
	}
	if m, err = e.ks.SetPolicy(ctx, appA, id, core.Policy{}); err != nil {
		t.Fatal(err)
	}
	if due, ok := m.RotationDue(); ok {
		t.Fatalf("without a period RotationDue = %v, true", due)
	}
	if _, err = e.ks.SetPolicy(ctx, appA, id, core.Policy{RotationPeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if m, err = e.ks.Revoke(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if due, ok := m.RotationDue(); ok {
		t.Fatalf("revoked key: RotationDue = %v, true", due)
	}
}

// Metadata reports each decrypt version's seal count and budget; the
// count goes on from the durable reservation after a restart; sign keys
// have neither.
func TestMetadataSealCounts(t *testing.T) {
	mem := storage.NewMemory()
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, mem, p)
	dec := e.create(t, appA, "app-a/d/k", provider.AES256GCM)
	sig := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	for range 3 {
		if _, err := e.ks.Seal(ctx, appA, dec, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.ks.Rotate(ctx, appA, dec); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Seal(ctx, appA, dec, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	m, err := e.ks.Get(ctx, appA, dec)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 1 << 32 // AES-256-GCM: a 96-bit random nonce
	if v := m.Versions[0]; v.Seals != 3 || v.SealLimit != limit {
		t.Fatalf("v1 seals %d of %d, want 3 of %d", v.Seals, v.SealLimit, uint64(limit))
	}
	if v := m.Versions[1]; v.Seals != 1 || v.SealLimit != limit {
		t.Fatalf("v2 seals %d of %d, want 1 of %d", v.Seals, v.SealLimit, uint64(limit))
	}
	page, err := e.ks.List(ctx, appA, core.ListOptions{})
	if err != nil || len(page.Keys) != 2 || page.Keys[0].Versions[1].Seals != 1 {
		t.Fatalf("list: %+v, %v; want the seal counts too", page, err)
	}
	if s, err := e.ks.Get(ctx, appA, sig); err != nil || s.Versions[0].Seals != 0 || s.Versions[0].SealLimit != 0 {
		t.Fatalf("sign key seals %d of %d, %v; want none", s.Versions[0].Seals, s.Versions[0].SealLimit, err)
	}
	// After a restart the count resumes from the reservation, an upper
	// bound of the seals made.
	e = newEnvWith(t, mem, p)
	m, err = e.ks.Get(ctx, appA, dec)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Versions[1]; v.Seals < 1 || v.Seals > 1+1<<16 {
		t.Fatalf("v2 after a restart: %d seals counted, want 1 .. 65537", v.Seals)
	}
}

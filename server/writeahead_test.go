package server

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// A state-changing request writes its audit record before the change is
// durable: with Append failing (Ready still saying yes, as for a log that
// has just broken) the change is refused and nothing is written.
func TestWriteAheadRefusesUnrecordedChanges(t *testing.T) {
	e := newEnv(t, envOpts{})
	before := e.mem.Snapshot()
	e.audit.failAppend.Store(true)
	for name, call := range map[string]func() error{
		"create": func() error {
			_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "ed25519"})
			return err
		},
		"put": func() error {
			_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v", Value: []byte("x")})
			return err
		},
	} {
		if err := call(); err == nil {
			t.Fatalf("%s succeeded with the audit log failing", name)
		}
	}
	after := e.mem.Snapshot()
	if len(after) != len(before) {
		t.Fatalf("files changed: %d before, %d after", len(before), len(after))
	}
	for p, b := range before {
		if string(after[p]) != string(b) {
			t.Fatalf("%s changed", p)
		}
	}
}

// When the change fails after its record was written ahead (the disk fills
// between the two), a second record gives the real outcome, naming the
// first.
func TestWriteAheadCorrection(t *testing.T) {
	mem := storage.NewMemory()
	e := newEnv(t, envOpts{storage: mem})
	e.mem = mem
	var full atomic.Bool
	mem.SetHook(func(step storage.Step, path string) error {
		if full.Load() && step == storage.StepWrite {
			return syscall.ENOSPC
		}
		return nil
	})
	full.Store(true)
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "ed25519"})
	if err == nil {
		t.Fatal("create succeeded on a full disk")
	}
	recs := e.audit.records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want the record written ahead and its correction: %+v", len(recs), recs)
	}
	first, second := recs[0], recs[1]
	if first.Op != "keys.create" || first.Result != "ok" || first.Key != "alice/sig/new" || first.Version != 1 {
		t.Fatalf("record written ahead: %+v", first)
	}
	if second.Op != "keys.create" || second.Result != "EIO" || second.Detail != "outcome of seq "+strconv.FormatUint(first.Seq, 10) {
		t.Fatalf("correction: %+v", second)
	}
	full.Store(false)
	_, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "sig/new"})
	wantCode(t, "get after the failed create", err, provider.ENOENT)
}

// createAutoRotating creates signing keys of alice that rotate every hour,
// then moves the clock past the period so their next use rotates them.
func createAutoRotating(t *testing.T, e *env, names ...string) {
	t.Helper()
	for _, n := range names {
		_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: n, Algorithm: "ed25519",
			Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}})
		mustOK(t, "create "+n, err)
	}
	e.clock.Advance(2 * time.Hour)
}

func currentVersion(t *testing.T, e *env, key string) uint32 {
	t.Helper()
	g, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: key})
	mustOK(t, "get "+key, err)
	return g.GetKey().GetCurrentVersion()
}

// A batch whose item rotates a key automatically writes its record ahead
// too: with Append failing, the rotation is refused and nothing changes.
func TestWriteAheadBatchAutoRotation(t *testing.T) {
	e := newEnv(t, envOpts{})
	createAutoRotating(t, e, "sig/auto")
	before := e.mem.Snapshot()
	e.audit.failAppend.Store(true)
	_, err := e.keys.SignBatch(bg, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: "sig/auto", Message: []byte("m")}}})
	wantCode(t, "sign-batch with the audit log failing", err, provider.EIO)
	after := e.mem.Snapshot()
	for p, b := range after {
		if string(before[p]) != string(b) {
			t.Fatalf("%s changed without its audit record", p)
		}
	}
	e.audit.failAppend.Store(false)
	if v := currentVersion(t, e, "sig/auto"); v != 1 {
		t.Fatalf("current version %d after the refused batch, want 1", v)
	}
}

// A batch that rotates a key and succeeds leaves exactly one record: the
// one written ahead, with the item counts.
func TestWriteAheadBatchOneRecord(t *testing.T) {
	e := newEnv(t, envOpts{})
	createAutoRotating(t, e, "sig/auto")
	n := e.audit.count()
	_, err := e.keys.SignBatch(bg, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
		{Key: "sig/auto", Message: []byte("a")}, {Key: "sig/auto", Message: []byte("b")}}})
	mustOK(t, "sign-batch", err)
	recs := e.audit.records()[n:]
	if len(recs) != 1 {
		t.Fatalf("%d records for one batch, want 1: %+v", len(recs), recs)
	}
	// The two items run in parallel: the one that does not rotate signs
	// with the new version or, while the rotation is under way, with the
	// overdue primary; then the items' versions disagree and the record
	// names the key without a version.
	if r := recs[0]; r.Op != "keys.sign-batch" || r.Result != "ok" || r.Items != 2 || r.Failed != 0 ||
		r.Key != "alice/sig/auto" || r.Version != 2 && r.Version != 0 || r.Detail != "auto-rotated" {
		t.Fatalf("record %+v, want keys.sign-batch ok, 2 items, alice/sig/auto@2 auto-rotated", r)
	}
	if v := currentVersion(t, e, "sig/auto"); v != 2 {
		t.Fatalf("current version %d, want 2", v)
	}
}

// Items failing after the record was written ahead, or several keys
// rotating in one batch (in parallel), give an outcome record with the
// real counts; each key rotates once, and each rotation has its own
// durable intent record with its generation: the request's record for
// the first, one "during" it for each other.
func TestWriteAheadBatchOutcome(t *testing.T) {
	e := newEnv(t, envOpts{})
	keys := []string{"sig/k0", "sig/k1", "sig/k2", "sig/k3"}
	createAutoRotating(t, e, keys...)
	n := e.audit.count()
	var items []*keystorev1.SignRequest
	for i := range 64 {
		items = append(items, &keystorev1.SignRequest{Key: keys[i%len(keys)], Message: []byte{byte(i)}})
	}
	items = append(items, &keystorev1.SignRequest{Key: "sig/missing", Message: []byte("x")})
	_, err := e.keys.SignBatch(bg, &keystorev1.SignBatchRequest{Items: items})
	mustOK(t, "sign-batch", err)
	recs := e.audit.records()[n:]
	if len(recs) != 2+len(keys)-1 {
		t.Fatalf("%d records, want the one written ahead, one intent per other rotated key and the outcome: %+v", len(recs), recs)
	}
	first, last := recs[0], recs[len(recs)-1]
	if first.Op != "keys.sign-batch" || first.Result != "ok" || first.Items != len(items) || first.Gen != 2 || !e.audit.wasSynced(first.Seq) {
		t.Fatalf("record written ahead: %+v (durable: %v)", first, e.audit.wasSynced(first.Seq))
	}
	rotated := map[string]bool{first.Key: true}
	for _, r := range recs[1 : len(recs)-1] {
		if r.Gen != 2 || r.Result != "ok" || !e.audit.wasSynced(r.Seq) ||
			r.Detail != "auto-rotated during keys.sign-batch seq "+strconv.FormatUint(first.Seq, 10) {
			t.Errorf("intent record of another key: %+v (durable: %v)", r, e.audit.wasSynced(r.Seq))
		}
		rotated[r.Key] = true
	}
	if len(rotated) != len(keys) {
		t.Errorf("intent records name %d keys, want %d: %v", len(rotated), len(keys), rotated)
	}
	if last.Op != "keys.sign-batch" || last.Result != "ok" || last.Items != len(items) || last.Failed != 1 || last.Gen != 0 ||
		last.Detail != "outcome of seq "+strconv.FormatUint(first.Seq, 10) {
		t.Fatalf("outcome record: %+v", last)
	}
	for _, k := range keys {
		if v := currentVersion(t, e, k); v != 2 {
			t.Errorf("%s: current version %d, want 2 (rotated once)", k, v)
		}
	}
}

// Every lifecycle change's intent record is durable (AppendSync) before
// the change, carries the key's generation, and is followed by a
// keys.applied note of that generation; the external counter advances
// after that note (its signed record covers it), and a failed advance
// fails the call with EIO, the change made.
func TestIntentDurableThenAdvance(t *testing.T) {
	var advances atomic.Int32
	var failAdvance atomic.Bool
	var e *env
	e = newEnv(t, envOpts{advance: func(context.Context) error {
		advances.Add(1)
		// The intent is on record, durably, and the applied note after it.
		recs := e.audit.records()
		if last := recs[len(recs)-1]; last.Gen == 0 || !e.audit.wasSynced(last.Seq) {
			t.Errorf("advance without a durable intent record: last record %+v", last)
		}
		if n := e.audit.notesOf("keys.applied"); len(n) == 0 || n[len(n)-1].Gen != recs[len(recs)-1].Gen {
			t.Errorf("advance before the change's keys.applied note: %+v", n)
		}
		if failAdvance.Load() {
			return errDiskFull
		}
		return nil
	}})
	n := e.audit.count()
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/a", Algorithm: "ed25519"})
	mustOK(t, "create", err)
	_, err = e.keys.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: "sig/a"})
	mustOK(t, "revoke", err)
	recs := e.audit.records()[n:]
	if len(recs) != 2 || recs[0].Op != "keys.create" || recs[0].Gen != 1 || recs[1].Op != "keys.revoke" || recs[1].Gen != 2 {
		t.Fatalf("records %+v, want create gen 1 and revoke gen 2", recs)
	}
	for _, r := range recs {
		if !e.audit.wasSynced(r.Seq) {
			t.Errorf("%s: intent record not written durably", r.Op)
		}
	}
	if notes := e.audit.notesOf("keys.applied"); len(notes) != 2 || notes[0].Gen != 1 || notes[1].Gen != 2 {
		t.Errorf("applied notes %+v, want gens 1 and 2", notes)
	}
	if advances.Load() != 2 {
		t.Errorf("%d counter advances for 2 changes", advances.Load())
	}

	failAdvance.Store(true)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/b", Algorithm: "ed25519"})
	wantCode(t, "create with the counter failing", err, provider.EIO)
	failAdvance.Store(false)
	_, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "sig/b"})
	mustOK(t, "get of a create whose counter advance failed (made, reported EIO)", err)
}

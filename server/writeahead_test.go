package server

import (
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

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

package server

import (
	"context"
	"testing"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/internal/fairsched"
)

// holdWorkers occupies every worker of s's scheduler as tenant "holder"
// until the returned func is called.
func holdWorkers(t *testing.T, s *fairsched.Scheduler) (release func()) {
	t.Helper()
	done := make(chan struct{})
	started := make(chan struct{}, s.Workers())
	finished := make(chan error, s.Workers())
	for range s.Workers() {
		go func() {
			finished <- s.Do(context.Background(), "holder", fairsched.Unit, func() { started <- struct{}{}; <-done })
		}()
		<-started
	}
	return func() {
		close(done)
		for range s.Workers() {
			if err := <-finished; err != nil {
				t.Errorf("holder: %v", err)
			}
		}
	}
}

// waitWaiting waits (bounded) until tenant has n provider calls waiting.
func waitWaiting(t *testing.T, s *fairsched.Scheduler, tenant string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Waiting(tenant) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d provider calls waiting, want %d", tenant, s.Waiting(tenant), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSchedulerTenantIsCaller: a call's provider work waits in the queue
// of the app the peer credentials name ("alice"), whatever the request
// says, and runs once a worker frees.
func TestSchedulerTenantIsCaller(t *testing.T) {
	e := newEnv(t, envOpts{sched: Scheduler{Workers: 1}})
	e.createFor(t, "alice/sig/k", provider.Ed25519)
	release := holdWorkers(t, e.srv.sched)
	done := make(chan error, 1)
	go func() {
		_, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
		done <- err
	}()
	waitWaiting(t, e.srv.sched, "alice", 1)
	if n := e.srv.sched.Waiting("sig"); n != 0 {
		t.Fatalf("%d calls wait under a name taken from the request", n)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerBatchItems: a batch's items queue one by one, at most one
// per worker at a time (the batch does not fill the queue with its 64
// items), and all complete.
func TestSchedulerBatchItems(t *testing.T) {
	e := newEnv(t, envOpts{sched: Scheduler{Workers: 2}})
	e.createFor(t, "alice/sig/k", provider.Ed25519)
	release := holdWorkers(t, e.srv.sched)
	req := &keystorev1.SignBatchRequest{}
	for range 64 {
		req.Items = append(req.Items, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
	}
	type result struct {
		resp *keystorev1.SignBatchResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := e.keys.SignBatch(bg, req)
		done <- result{resp, err}
	}()
	waitWaiting(t, e.srv.sched, "alice", 2)
	release()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	for i, item := range r.resp.GetResults() {
		if item.GetError() != nil || len(item.GetResponse().GetSignature()) == 0 {
			t.Fatalf("item %d: %v", i, item.GetError())
		}
	}
}

// TestSchedulerQueueFull: over MaxQueuedPerApp waiting calls, a call
// fails with EUNAVAILABLE (and is audited) instead of waiting.
func TestSchedulerQueueFull(t *testing.T) {
	e := newEnv(t, envOpts{sched: Scheduler{Workers: 1, MaxQueuedPerApp: 1}})
	e.createFor(t, "alice/sig/k", provider.Ed25519)
	release := holdWorkers(t, e.srv.sched)
	done := make(chan error, 1)
	go func() {
		_, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("first")})
		done <- err
	}()
	waitWaiting(t, e.srv.sched, "alice", 1)
	_, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("second")})
	wantCode(t, "sign over the queue bound", err, provider.EUNAVAILABLE)
	if r := e.audit.last(t); r.Op != "keys.sign" || r.Result != "EUNAVAILABLE" {
		t.Fatalf("audit record %+v, want keys.sign EUNAVAILABLE", r)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerConfigRefused: a negative worker count is refused.
func TestSchedulerConfigRefused(t *testing.T) {
	_, err := New(bg, Config{Storage: storage.NewMemory(), Provider: newProvider(t, false), Clock: clock.NewFake(testTime),
		Audit: &fakeAudit{}, Scheduler: Scheduler{Workers: -1}})
	if code, _ := provider.CodeOf(err); code != provider.EINVAL {
		t.Fatalf("negative workers: %v, want EINVAL", err)
	}
}

package fairsched

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// queued is Waiting.
func (s *Scheduler) queued(name string) int { return s.Waiting(name) }

// longRefs is how many long calls of tenant name wait or run.
func (s *Scheduler) longRefs(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lt := s.longApps[name]; lt != nil {
		return lt.refs
	}
	return 0
}

// idle reports whether s holds no tenant state and every slot is free.
func (s *Scheduler) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tenants) == 0 && len(s.waiting) == 0 && s.free == s.workers
}

// waitUntil waits (bounded) until cond holds: goroutines reach the
// scheduler's queue in their own time. The bound is a safety net, not a
// measurement.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newSched(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hold occupies one slot as tenant name until the returned func is called.
func hold(t *testing.T, s *Scheduler, name string) (release func()) {
	t.Helper()
	started, done, finished := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() { finished <- s.Do(context.Background(), name, Unit, func() { close(started); <-done }) }()
	<-started
	return func() {
		close(done)
		if err := <-finished; err != nil {
			t.Errorf("holder: %v", err)
		}
	}
}

// recorder collects the order in which calls ran.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.order = append(r.order, s)
	r.mu.Unlock()
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// enqueue starts one call of tenant name (cost in 1/Unit) and waits
// until it is queued, so that arrivals happen in the order of the calls.
// The call records label when it runs; its Do error goes to errs.
func enqueue(t *testing.T, s *Scheduler, ctx context.Context, name string, cost int64, label string, rec *recorder, errs chan<- error, wg *sync.WaitGroup) {
	t.Helper()
	before := s.queued(name)
	wg.Go(func() { errs <- s.Do(ctx, name, cost, func() { rec.add(label) }) })
	waitUntil(t, label+" is queued", func() bool { return s.queued(name) == before+1 })
}

func drain(t *testing.T, errs chan error, wg *sync.WaitGroup) []error {
	t.Helper()
	wg.Wait()
	close(errs)
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// TestFloodDoesNotDelayOthers is the scenario with one worker:
// app A has 100 calls waiting behind its running one when app B's single
// call arrives; B runs first once the worker frees, not after A's queue.
func TestFloodDoesNotDelayOthers(t *testing.T) {
	s := newSched(t, Config{Workers: 1})
	release := hold(t, s, "a")
	rec := &recorder{}
	errs := make(chan error, 101)
	var wg sync.WaitGroup
	for i := range 100 {
		enqueue(t, s, context.Background(), "a", 16*Unit, fmt.Sprintf("a%d", i), rec, errs, &wg)
	}
	enqueue(t, s, context.Background(), "b", Unit, "b", rec, errs, &wg)
	release()
	for _, err := range drain(t, errs, &wg) {
		if err != nil {
			t.Fatal(err)
		}
	}
	order := rec.got()
	if len(order) != 101 {
		t.Fatalf("%d calls ran, want 101", len(order))
	}
	if order[0] != "b" {
		t.Fatalf("first calls after the flood's: %v, want b first", order[:5])
	}
	for i, l := range order[1:] {
		if want := fmt.Sprintf("a%d", i); l != want {
			t.Fatalf("call %d is %s, want %s: one tenant's calls run in arrival order", i+1, l, want)
		}
	}
	if !s.idle() {
		t.Fatal("scheduler holds state after every call ended")
	}
}

// TestCostWeighting: with one worker, a tenant of cheap calls gets as
// many of them as add up to one expensive call of the other tenant.
func TestCostWeighting(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cheap      int64
		wantBefore int // b's calls that run before a's second
	}{
		{"weighted", Unit, 10},
		{"equal", 10 * Unit, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSched(t, Config{Workers: 1})
			release := hold(t, s, "holder")
			rec := &recorder{}
			errs := make(chan error, 20)
			var wg sync.WaitGroup
			for i := range 10 {
				enqueue(t, s, context.Background(), "a", 10*Unit, "a", rec, errs, &wg)
				enqueue(t, s, context.Background(), "b", tc.cheap, "b"+fmt.Sprint(i), rec, errs, &wg)
			}
			release()
			for _, err := range drain(t, errs, &wg) {
				if err != nil {
					t.Fatal(err)
				}
			}
			order := rec.got()
			if order[0] != "a" {
				t.Fatalf("order %v: the first arrival should run first on a tie", order)
			}
			second := -1
			for i, l := range order[1:] {
				if l == "a" {
					second = i + 1
					break
				}
			}
			if got := second - 1; got != tc.wantBefore {
				t.Fatalf("order %v: %d of b's calls ran between a's first two, want %d", order, got, tc.wantBefore)
			}
		})
	}
}

// TestCancelRemovesQueuedCall: a waiting call whose context ends returns
// EUNAVAILABLE wrapping the context's error, never runs, and leaves the
// queue; the others still run.
func TestCancelRemovesQueuedCall(t *testing.T) {
	s := newSched(t, Config{Workers: 1})
	release := hold(t, s, "a")
	rec := &recorder{}
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	enqueue(t, s, context.Background(), "a", Unit, "first", rec, errs, &wg)
	enqueue(t, s, ctx, "a", Unit, "cancelled", rec, errs, &wg)
	enqueue(t, s, context.Background(), "a", Unit, "last", rec, errs, &wg)
	cancel()
	waitUntil(t, "the cancelled call leaves the queue", func() bool { return s.queued("a") == 2 })
	release()
	var failed []error
	for _, err := range drain(t, errs, &wg) {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) != 1 || !errors.Is(failed[0], provider.ErrUnavailable) || !errors.Is(failed[0], context.Canceled) {
		t.Fatalf("errors %v, want one EUNAVAILABLE wrapping context.Canceled", failed)
	}
	if got := strings.Join(rec.got(), ","); got != "first,last" {
		t.Fatalf("ran %s, want first,last", got)
	}
	if !s.idle() {
		t.Fatal("scheduler holds state after every call ended")
	}
}

// TestCancelledTenantLeaves: a tenant whose only waiting call is
// cancelled leaves the heap, and the next tenant is served.
func TestCancelledTenantLeaves(t *testing.T) {
	s := newSched(t, Config{Workers: 1})
	release := hold(t, s, "holder")
	rec := &recorder{}
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	enqueue(t, s, ctx, "a", Unit, "a", rec, errs, &wg)
	enqueue(t, s, context.Background(), "b", Unit, "b", rec, errs, &wg)
	cancel()
	waitUntil(t, "a's call leaves the queue", func() bool { return s.queued("a") == 0 })
	release()
	drain(t, errs, &wg)
	if got := strings.Join(rec.got(), ","); got != "b" {
		t.Fatalf("ran %s, want b", got)
	}
	if !s.idle() {
		t.Fatal("scheduler holds state after every call ended")
	}
}

// TestDoneContextNeverWaits: a call whose context is already done when it
// would have to wait is refused at once; with a free worker it runs.
func TestDoneContextNeverWaits(t *testing.T) {
	s := newSched(t, Config{Workers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := s.Do(ctx, "a", Unit, func() { ran = true }); err != nil || !ran {
		t.Fatalf("free worker, done context: err %v, ran %v; want it to run (the provider checks its context)", err, ran)
	}
	release := hold(t, s, "a")
	ran = false
	err := s.Do(ctx, "a", Unit, func() { ran = true })
	if ran || !errors.Is(err, provider.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("busy worker, done context: err %v, ran %v; want EUNAVAILABLE at once", err, ran)
	}
	release()
	if !s.idle() {
		t.Fatal("scheduler holds state after every call ended")
	}
}

// TestQueueBound: a tenant's calls over MaxQueued are refused at once with
// EUNAVAILABLE; another tenant still queues.
func TestQueueBound(t *testing.T) {
	s := newSched(t, Config{Workers: 1, MaxQueued: 2})
	release := hold(t, s, "a")
	rec := &recorder{}
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	enqueue(t, s, context.Background(), "a", Unit, "a1", rec, errs, &wg)
	enqueue(t, s, context.Background(), "a", Unit, "a2", rec, errs, &wg)
	err := s.Do(context.Background(), "a", Unit, func() { rec.add("a3") })
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("third waiting call: %v, want EUNAVAILABLE", err)
	}
	enqueue(t, s, context.Background(), "b", Unit, "b", rec, errs, &wg)
	release()
	for _, err := range drain(t, errs, &wg) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(rec.got(), ","); got != "b,a1,a2" {
		t.Fatalf("ran %s, want b,a1,a2", got)
	}
}

// TestGrantedWhileCancelled: a call given a slot just as its context
// ends passes the slot on; no slot leaks whatever the interleaving.
func TestGrantedWhileCancelled(t *testing.T) {
	s := newSched(t, Config{Workers: 1})
	for range 200 {
		release := hold(t, s, "a")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Do(ctx, "b", Unit, func() {}) }()
		waitUntil(t, "b is queued", func() bool { return s.queued("b") == 1 })
		go cancel()
		release()
		err := <-done
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("b: %v", err)
		}
		if !s.idle() {
			t.Fatal("a slot or tenant leaked")
		}
	}
}

// TestBadInputs: negative configuration is refused; odd costs, empty
// tenant names and a panicking call neither panic the scheduler nor leak
// a slot.
func TestBadInputs(t *testing.T) {
	for _, cfg := range []Config{{Workers: -1}, {MaxQueued: -1}} {
		if _, err := New(cfg); !errors.Is(err, provider.ErrInvalid) {
			t.Errorf("New(%+v): %v, want EINVAL", cfg, err)
		}
	}
	s := newSched(t, Config{})
	if s.Workers() < 1 || s.MaxQueued() != DefaultMaxQueued {
		t.Fatalf("defaults: workers %d, max queued %d", s.Workers(), s.MaxQueued())
	}
	s = newSched(t, Config{Workers: 1})
	for _, cost := range []int64{-1 << 62, -1, 0, 1, MaxCost, 1 << 62} {
		n := 0
		if err := s.Do(context.Background(), "", cost, func() { n++ }); err != nil || n != 1 {
			t.Fatalf("cost %d: err %v, ran %d times", cost, err, n)
		}
	}
	if err := s.Do(context.Background(), "x", Unit, func() { panic("panic-value-42") }); !errors.Is(err, provider.ErrIO) ||
		strings.Contains(err.Error(), "panic-value-42") {
		t.Fatalf("a panicking call: %v, want EIO without the panic's value", err)
	}
	if !s.idle() {
		t.Fatal("a panicking call leaked its slot")
	}
}

// TestConcurrent drives many tenants with cancellations at once (run
// with -race): every call either runs once or is refused, and nothing
// leaks.
func TestConcurrent(t *testing.T) {
	s := newSched(t, Config{Workers: 3, MaxQueued: 8})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran, refused, running, most := 0, 0, 0, 0
	for g := range 48 {
		wg.Go(func() {
			for i := range 50 {
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%7 == 0 {
					go cancel()
				}
				err := s.Do(ctx, fmt.Sprint("app", g%6), int64(1+i%5)*Unit, func() {
					mu.Lock()
					running++
					most = max(most, running)
					mu.Unlock()
					runtime.Gosched()
					mu.Lock()
					running--
					ran++
					mu.Unlock()
				})
				cancel()
				mu.Lock()
				if err != nil {
					if !errors.Is(err, provider.ErrUnavailable) {
						t.Errorf("Do: %v", err)
					}
					refused++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ran+refused != 48*50 {
		t.Fatalf("%d ran + %d refused, want %d calls", ran, refused, 48*50)
	}
	if most > 3 {
		t.Fatalf("%d calls ran at once on 3 workers", most)
	}
	if !s.idle() {
		t.Fatal("scheduler holds state after every call ended")
	}
}

// TestLongCallsLeaveASlot: long calls (RSA key generation) never hold
// every slot. With 3 workers, two long calls run; a third, from another
// app, waits for a pass, and a short call still gets the free slot at
// once. When a long call ends, the waiting one runs.
func TestLongCallsLeaveASlot(t *testing.T) {
	s := newSched(t, Config{Workers: 3, Nice: -1})
	type run struct{ started, done chan struct{} }
	var wg sync.WaitGroup
	start := func(name string) run {
		r := run{make(chan struct{}), make(chan struct{})}
		wg.Go(func() {
			if err := s.Do(context.Background(), name, LongCost, func() { close(r.started); <-r.done }); err != nil {
				t.Errorf("long call of %s: %v", name, err)
			}
		})
		return r
	}
	a, b := start("a"), start("b")
	<-a.started
	<-b.started
	c := start("c")
	waitUntil(t, "c waits for a long-call pass", func() bool { return s.longRefs("c") == 1 })
	select {
	case <-c.started:
		t.Fatal("a third long call got the last slot")
	default:
	}
	ran := false
	if err := s.Do(context.Background(), "d", Unit, func() { ran = true }); err != nil || !ran {
		t.Fatalf("a short call beside two long ones: ran=%v, %v", ran, err)
	}
	close(a.done)
	<-c.started
	close(b.done)
	close(c.done)
	wg.Wait()
	if !s.idle() || len(s.long) != 0 {
		t.Fatal("scheduler not idle after the long calls")
	}
}

// TestLongCallPassCancel: a long call whose context ends while it waits
// for a pass gives up with EUNAVAILABLE and leaves nothing behind.
func TestLongCallPassCancel(t *testing.T) {
	s := newSched(t, Config{Workers: 2, Nice: -1})
	started, done := make(chan struct{}), make(chan struct{})
	finished := make(chan error, 1)
	go func() { finished <- s.Do(context.Background(), "a", LongCost, func() { close(started); <-done }) }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Do(ctx, "b", LongCost, func() { t.Error("cancelled long call ran") }) }()
	waitUntil(t, "b waits for a pass", func() bool { return s.longRefs("b") == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("cancelled long call: %v, want EUNAVAILABLE", err)
	}
	close(done)
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	left := len(s.longApps)
	s.mu.Unlock()
	if !s.idle() || len(s.long) != 0 || left != 0 {
		t.Fatal("state left behind by a cancelled long call")
	}
}

// TestLongCallPassesFairAcrossApps: one app's many long calls (RSA key
// generations) hold one pass at a time, so another app's long call gets
// the other pass at once instead of waiting behind the whole queue
// (attacker review of issue 11: passes were first come, first served).
func TestLongCallPassesFairAcrossApps(t *testing.T) {
	s := newSched(t, Config{Workers: 3, Nice: -1})
	first, done := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	for range 6 {
		wg.Go(func() {
			if err := s.Do(context.Background(), "a", LongCost, func() { once.Do(func() { close(first) }); <-done }); err != nil {
				t.Errorf("a's long call: %v", err)
			}
		})
	}
	<-first
	waitUntil(t, "a's other long calls wait for a's turn", func() bool { return s.longRefs("a") == 6 })
	ran := false
	if err := s.Do(context.Background(), "b", LongCost, func() { ran = true }); err != nil || !ran {
		t.Fatalf("b's long call beside a's queue: ran=%v, %v", ran, err)
	}
	close(done)
	wg.Wait()
	if !s.idle() || len(s.long) != 0 || s.longRefs("a") != 0 {
		t.Fatal("scheduler not idle after the long calls")
	}
}

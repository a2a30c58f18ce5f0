// Package fairsched shares a fixed number of provider workers fairly
// among tenants (the daemon's apps): start-time fair queuing, each call
// weighted by its cost, so that one app's flood of expensive work delays
// another app's call by about one call, not by the flood.
//
// A Scheduler has Workers slots. A call that finds a free slot and nobody
// waiting has it at once (no handoff); otherwise it
// waits in its tenant's FIFO queue, and each slot that frees goes to the
// waiting call with the smallest start tag. A call's start tag is the
// larger of the scheduler's virtual time (the start tag of the last call
// given a slot) and the finish tag of its tenant's previous call; its
// finish tag is its start tag plus its cost. A tenant that sends many
// calls pushes its own tags ahead, so a tenant with one call waiting is
// served next, whatever the length of the other queues. Ties go to the
// call that arrived first.
//
// A waiting call gives up when its context is done; each tenant may have
// at most MaxQueued calls waiting, and a call over that bound is refused
// at once (EUNAVAILABLE). Costs are in Units: an Ed25519 signature is one
// Unit (core/alg's Spec.Cost). Once it has its slot, a call of at least
// HeavyCost runs on a thread of lowered priority (nice.go), a cheaper one
// on its caller's goroutine.
//
// A long call (at least LongCost: an RSA key generation, which takes up
// to seconds) first waits for its app's turn (an app has one long call at
// a pass at a time) and then for one of Workers-1 long-call passes (one
// when Workers is 1, which a long call then holds alone), so that with two
// or more slots long calls never hold them all: however many apps generate
// RSA keys at once, one slot is left for everything else, and one app's
// many generations hold one pass, not all.
//
// Wrap puts a Scheduler in front of a provider.Provider.
package fairsched

import (
	"container/heap"
	"container/list"
	"context"
	"runtime"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
)

// Unit is the cost of one Ed25519 signature; costs are integer multiples
// of 1/Unit of it.
const Unit = 1000

// MaxCost bounds the cost of one call (larger costs count as MaxCost), so
// that tags cannot overflow.
const MaxCost = 1 << 20 * Unit

// LongCost is the least cost of a long call (about 17 ms of CPU: RSA key
// generation), which needs a long-call pass as well as a slot.
const LongCost = 1000 * Unit

// DefaultMaxQueued is the default bound on one tenant's waiting calls.
const DefaultMaxQueued = 1024

// Config configures New. Zero fields take the defaults.
type Config struct {
	// Workers is the number of calls that run at once (default
	// runtime.GOMAXPROCS(0)).
	Workers int
	// MaxQueued is the most calls one tenant may have waiting for a
	// worker (default DefaultMaxQueued).
	MaxQueued int
	// Nice is how much (1 to 19) the threads that run calls of at least
	// HeavyCost raise their nice value over the daemon's, to at most 19
	// (default DefaultNice); -1 runs those calls on their callers'
	// threads like the others.
	Nice int
}

// Scheduler is a fair queue in front of Workers slots. It is safe for
// concurrent use.
type Scheduler struct {
	mu        sync.Mutex
	free      int    // free slots
	vtime     int64  // virtual time: the start tag of the last call given a slot
	seq       uint64 // arrival order, to break ties
	tenants   map[string]*tenant
	waiting   tenantHeap // tenants with waiting calls, by their first call's tags
	workers   int
	maxQueued int
	heavy     *heavyPool             // nil: every call runs on its caller's goroutine
	spare     *tenant                // a forgotten tenant's struct, for the next one
	long      chan struct{}          // long-call passes: a call of LongCost or more holds one
	longApps  map[string]*longTenant // each tenant's long calls (under mu)
}

// longTenant is one tenant's long calls: at most one holds (or waits for)
// a pass at a time, so one app's many RSA key generations take one pass
// and leave the others to other apps.
type longTenant struct {
	turn chan struct{} // capacity 1: the tenant's one call at the pass
	refs int           // its long calls waiting or running
}

// tenant is one tenant's state while it has calls waiting or running.
type tenant struct {
	name    string
	queue   list.List // of *waiter, in arrival (and tag) order
	finish  int64     // finish tag of its last call
	running int
	index   int // in Scheduler.waiting, -1 when not there
}

// waiter is one waiting call.
type waiter struct {
	t       *tenant
	start   int64
	seq     uint64
	ready   chan struct{} // closed when the call is given a slot
	granted bool
	elem    *list.Element
}

// New returns a scheduler, or an error wrapping ErrInvalid for a
// negative field.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Workers < 0 || cfg.MaxQueued < 0 {
		return nil, provider.Errorf(provider.EINVAL, "scheduler workers and queue bound must not be negative (workers %d, max queued %d)", cfg.Workers, cfg.MaxQueued)
	}
	if cfg.Nice < -1 || cfg.Nice > 19 {
		return nil, provider.Errorf(provider.EINVAL, "scheduler nice value %d is out of range (1 to 19, 0 for the default, -1 for none)", cfg.Nice)
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	switch cfg.Nice {
	case 0:
		cfg.Nice = DefaultNice
	case -1:
		cfg.Nice = 0
	}
	heavy, err := newHeavyPool(cfg.Workers, cfg.Nice)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "scheduler: %w", err)
	}
	s := &Scheduler{free: cfg.Workers, workers: cfg.Workers, maxQueued: cfg.MaxQueued, tenants: map[string]*tenant{}, heavy: heavy,
		long: make(chan struct{}, max(1, cfg.Workers-1)), longApps: map[string]*longTenant{}}
	if heavy != nil {
		// The threads end with the scheduler.
		runtime.AddCleanup(s, func(p *heavyPool) { close(p.jobs) }, heavy)
	}
	return s, nil
}

// Workers returns the number of slots.
func (s *Scheduler) Workers() int { return s.workers }

// MaxQueued returns the bound on one tenant's waiting calls.
func (s *Scheduler) MaxQueued() int { return s.maxQueued }

// Waiting returns how many calls of tenant name wait for a worker.
func (s *Scheduler) Waiting(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[name]; t != nil {
		return t.queue.Len()
	}
	return 0
}

// Slot is a worker slot given to one call: the call runs, then releases
// it. The zero Slot is not a slot.
type Slot struct {
	s     *Scheduler
	t     *tenant
	heavy bool
	long  bool   // holds a long-call pass
	name  string // the tenant, for a long call
}

// Acquire waits until the call gets a slot and returns it. cost is the
// call's weight in 1/Unit of an Ed25519 signature (below 1 counts as 1,
// above MaxCost as MaxCost). If ctx is done before the call gets a slot,
// Acquire returns an error wrapping ErrUnavailable and ctx's error; if
// the tenant already has MaxQueued calls waiting, it returns an error
// wrapping ErrUnavailable at once. A call that finds a slot free and
// nobody waiting never waits, whatever ctx says (the provider checks its
// context).
func (s *Scheduler) Acquire(ctx context.Context, name string, cost int64) (Slot, error) {
	cost = min(max(cost, 1), MaxCost)
	if cost < LongCost {
		return s.acquire(ctx, name, cost)
	}
	if err := s.longPass(ctx, name); err != nil {
		return Slot{}, err
	}
	sl, err := s.acquire(ctx, name, cost)
	if err != nil {
		s.longDone(name)
		return Slot{}, err
	}
	sl.long = true
	sl.name = name
	return sl, nil
}

// longPass waits for a long-call pass: first for the tenant's turn (its
// one call that may hold or wait for a pass), then for a pass. Each tenant
// may have MaxQueued long calls waiting for its turn. On success the call
// holds both; longDone gives them back.
func (s *Scheduler) longPass(ctx context.Context, name string) error {
	s.mu.Lock()
	lt := s.longApps[name]
	if lt == nil {
		lt = &longTenant{turn: make(chan struct{}, 1)}
		s.longApps[name] = lt
	}
	if lt.refs > s.maxQueued {
		s.mu.Unlock()
		return provider.Errorf(provider.EUNAVAILABLE, "too many long provider calls of this app waiting (%d); retry later", s.maxQueued)
	}
	lt.refs++
	s.mu.Unlock()
	select {
	case lt.turn <- struct{}{}:
	case <-ctx.Done():
		s.longLeave(name, lt)
		return provider.Errorf(provider.EUNAVAILABLE, "request cancelled waiting for a provider worker: %w", ctx.Err())
	}
	select {
	case s.long <- struct{}{}:
		return nil
	case <-ctx.Done():
		<-lt.turn
		s.longLeave(name, lt)
		return provider.Errorf(provider.EUNAVAILABLE, "request cancelled waiting for a provider worker: %w", ctx.Err())
	}
}

// longDone gives back a long call's pass and its tenant's turn.
func (s *Scheduler) longDone(name string) {
	<-s.long
	s.mu.Lock()
	lt := s.longApps[name]
	s.mu.Unlock()
	if lt != nil {
		<-lt.turn
		s.longLeave(name, lt)
	}
}

// longLeave counts one of lt's calls out, forgetting lt with its last.
func (s *Scheduler) longLeave(name string, lt *longTenant) {
	s.mu.Lock()
	if lt.refs--; lt.refs == 0 && s.longApps[name] == lt {
		delete(s.longApps, name)
	}
	s.mu.Unlock()
}

// acquire is Acquire without the long-call pass.
func (s *Scheduler) acquire(ctx context.Context, name string, cost int64) (Slot, error) {
	heavy := cost >= HeavyCost && s.heavy != nil
	s.mu.Lock()
	t := s.tenants[name]
	if t == nil {
		if t = s.spare; t != nil {
			s.spare = nil
			t.name = name
		} else {
			t = &tenant{name: name, index: -1}
		}
		s.tenants[name] = t
	}
	start := max(s.vtime, t.finish)
	if s.free > 0 && len(s.waiting) == 0 {
		s.free--
		t.finish = start + cost
		t.running++
		s.vtime = start
		s.mu.Unlock()
		return Slot{s: s, t: t, heavy: heavy}, nil
	}
	if t.queue.Len() >= s.maxQueued {
		s.forget(t)
		s.mu.Unlock()
		return Slot{}, provider.Errorf(provider.EUNAVAILABLE, "too many provider calls of this app waiting (%d); retry later", s.maxQueued)
	}
	if err := ctx.Err(); err != nil {
		s.forget(t)
		s.mu.Unlock()
		return Slot{}, provider.Errorf(provider.EUNAVAILABLE, "request cancelled waiting for a provider worker: %w", err)
	}
	w := &waiter{t: t, start: start, seq: s.seq, ready: make(chan struct{})}
	s.seq++
	t.finish = start + cost
	w.elem = t.queue.PushBack(w)
	if t.index < 0 {
		heap.Push(&s.waiting, t)
	}
	s.mu.Unlock()

	select {
	case <-w.ready:
		return Slot{s: s, t: t, heavy: heavy}, nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	if !w.granted {
		front := t.queue.Front() == w.elem
		t.queue.Remove(w.elem)
		switch {
		case t.queue.Len() == 0:
			heap.Remove(&s.waiting, t.index)
			s.forget(t)
		case front:
			heap.Fix(&s.waiting, t.index)
		}
		s.mu.Unlock()
		return Slot{}, provider.Errorf(provider.EUNAVAILABLE, "request cancelled waiting for a provider worker: %w", ctx.Err())
	}
	s.mu.Unlock()
	// The slot was given as ctx ended: pass it on without running.
	s.release(t)
	return Slot{}, provider.Errorf(provider.EUNAVAILABLE, "request cancelled waiting for a provider worker: %w", ctx.Err())
}

// Release gives the slot back: to the waiting call with the smallest
// tags, or to the pool. Release it exactly once.
func (sl Slot) Release() {
	if sl.s != nil {
		sl.s.release(sl.t)
		if sl.long {
			sl.s.longDone(sl.name)
		}
	}
}

// Heavy reports whether the slot's call should run on a low-priority
// thread (Run): its cost is at least HeavyCost and the scheduler has
// such threads.
func (sl Slot) Heavy() bool { return sl.heavy }

// Run runs f on a low-priority thread if the call is heavy, else on the
// calling goroutine, and returns when f has returned. A panic in f (a
// provider bug) is recovered and returned as EIO, wherever f ran, so that
// it never kills a pool thread; its value is not in the error (it could
// hold anything the provider had in hand).
func (sl Slot) Run(f func()) error {
	if !sl.heavy {
		return recovered(f)
	}
	return sl.s.heavy.run(f)
}

// recovered runs f and turns a panic in it into EIO.
func recovered(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = provider.Errorf(provider.EIO, "the provider call panicked (%T): a provider bug", v)
		}
	}()
	f()
	return nil
}

// Do runs f once the call has a slot (Acquire, Run, Release) and returns
// nil after f returns, Run's error if f panicked, or Acquire's error
// without running f.
func (s *Scheduler) Do(ctx context.Context, name string, cost int64, f func()) error {
	sl, err := s.Acquire(ctx, name, cost)
	if err != nil {
		return err
	}
	defer sl.Release()
	return sl.Run(f)
}

// release frees t's slot: it goes to the waiting call with the smallest
// tags, or back to the pool.
func (s *Scheduler) release(t *tenant) {
	s.mu.Lock()
	t.running--
	if len(s.waiting) > 0 {
		next := s.waiting[0]
		w := next.queue.Remove(next.queue.Front()).(*waiter)
		if next.queue.Len() == 0 {
			heap.Pop(&s.waiting)
		} else {
			heap.Fix(&s.waiting, 0)
		}
		next.running++
		s.vtime = max(s.vtime, w.start)
		w.granted = true
		close(w.ready)
	} else {
		s.free++
	}
	s.forget(t)
	s.mu.Unlock()
}

// forget drops t's state once it has no call waiting or running. Its
// finish tag goes with it: a tenant that comes back starts at the virtual
// time, which is what its old tag would give once the others have moved
// past it.
func (s *Scheduler) forget(t *tenant) {
	if t.running == 0 && t.queue.Len() == 0 && s.tenants[t.name] == t {
		delete(s.tenants, t.name)
		if s.spare == nil {
			// Kept for the next tenant: a caller alone, one call at a
			// time, allocates nothing.
			*t = tenant{index: -1}
			s.spare = t
		}
	}
}

// tenantHeap orders tenants with waiting calls by their first call's
// start tag, then arrival.
type tenantHeap []*tenant

func (h tenantHeap) Len() int { return len(h) }

func (h tenantHeap) Less(i, j int) bool {
	a, b := h[i].queue.Front().Value.(*waiter), h[j].queue.Front().Value.(*waiter)
	if a.start != b.start {
		return a.start < b.start
	}
	return a.seq < b.seq
}

func (h tenantHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *tenantHeap) Push(x any) {
	t := x.(*tenant)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *tenantHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}

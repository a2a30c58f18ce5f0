// Package clock provides the clocks keystored injects into core: the
// system clock for the daemon and a fake clock that tests move by hand.
// Both also make timers, so that what the daemon schedules (the sweep of
// keys due for rotation) runs on the injected clock and a test drives it
// by moving the fake clock, never by sleeping.
package clock

import (
	"context"
	"sync"
	"time"
)

// Timer is a one-shot timer of a clock: C receives the clock's time once,
// when the timer fires. Stop prevents a timer that has not fired from
// firing and reports whether it did so.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// TimerClock is a clock that also makes timers: System and *Fake.
type TimerClock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// System is the wall clock.
type System struct{}

// Now returns the current time.
func (System) Now() time.Time { return time.Now() }

// NewTimer returns a timer that fires after d of wall-clock time.
func (System) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop() bool          { return t.t.Stop() }

// Fake is a clock that only moves when told. Its timers fire when Advance
// or Set moves it to or past their time. It is safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer // pending, unordered
	// changed is closed (and replaced) whenever a timer is added or
	// removed, waking WaitTimers and WaitTimer.
	changed chan struct{}
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d, firing the timers due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.fireLocked()
}

// Set sets the clock to t, firing the timers due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
	f.fireLocked()
}

// NewTimer returns a timer that fires when the clock reaches its time
// plus d (at once if d <= 0).
func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, at: f.now.Add(d), c: make(chan time.Time, 1)}
	f.timers = append(f.timers, t)
	f.fireLocked()
	f.notifyLocked()
	return t
}

// Timers returns how many timers wait to fire.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitTimers blocks until at least n timers wait to fire, or ctx ends
// (then it returns ctx's error). A test calls it before Advance, so that
// the code under test has armed the timer the advance is meant to fire.
func (f *Fake) WaitTimers(ctx context.Context, n int) error {
	return f.waitFor(ctx, func() bool { return len(f.timers) >= n })
}

// WaitTimer blocks until a timer waits to fire at exactly at, or ctx
// ends (then it returns ctx's error).
func (f *Fake) WaitTimer(ctx context.Context, at time.Time) error {
	return f.waitFor(ctx, func() bool {
		for _, t := range f.timers {
			if t.at.Equal(at) {
				return true
			}
		}
		return false
	})
}

// waitFor blocks until cond, called with f.mu held, holds.
func (f *Fake) waitFor(ctx context.Context, cond func() bool) error {
	for {
		f.mu.Lock()
		if cond() {
			f.mu.Unlock()
			return nil
		}
		if f.changed == nil {
			f.changed = make(chan struct{})
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fireLocked fires and removes the timers whose time has come.
func (f *Fake) fireLocked() {
	kept := f.timers[:0]
	fired := false
	for _, t := range f.timers {
		if t.at.After(f.now) {
			kept = append(kept, t)
			continue
		}
		t.c <- f.now // buffered, and each timer fires once
		fired = true
	}
	clear(f.timers[len(kept):])
	f.timers = kept
	if fired {
		f.notifyLocked()
	}
}

func (f *Fake) notifyLocked() {
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

type fakeTimer struct {
	f  *Fake
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	f := t.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.timers {
		if p == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			f.notifyLocked()
			return true
		}
	}
	return false
}

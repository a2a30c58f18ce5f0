package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
)

var _ clock.TimerClock = (*clock.Fake)(nil)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(tm clock.Timer) (time.Time, bool) {
	select {
	case at := <-tm.C():
		return at, true
	default:
		return time.Time{}, false
	}
}

// A fake timer fires once, when the clock reaches its time, with the
// clock's time; not before.
func TestFakeTimerFiresOnAdvance(t *testing.T) {
	f := clock.NewFake(t0)
	tm := f.NewTimer(time.Minute)
	if f.Timers() != 1 {
		t.Fatalf("Timers() = %d, want 1", f.Timers())
	}
	f.Advance(time.Minute - time.Nanosecond)
	if _, ok := fired(tm); ok {
		t.Fatal("the timer fired before its time")
	}
	f.Advance(time.Hour)
	at, ok := fired(tm)
	if !ok || !at.Equal(t0.Add(time.Hour+time.Minute-time.Nanosecond)) {
		t.Fatalf("fired = %v, %v; want the clock's time after the advance", at, ok)
	}
	if f.Timers() != 0 || tm.Stop() {
		t.Fatal("a fired timer is still pending")
	}
	f.Advance(time.Hour)
	if _, ok := fired(tm); ok {
		t.Fatal("the timer fired twice")
	}
}

func TestFakeTimerSetAndImmediate(t *testing.T) {
	f := clock.NewFake(t0)
	tm := f.NewTimer(time.Hour)
	f.Set(t0.Add(2 * time.Hour))
	if _, ok := fired(tm); !ok {
		t.Fatal("Set past the timer's time did not fire it")
	}
	if _, ok := fired(f.NewTimer(0)); !ok {
		t.Fatal("a timer of 0 did not fire at once")
	}
}

func TestFakeTimerStop(t *testing.T) {
	f := clock.NewFake(t0)
	a, b := f.NewTimer(time.Minute), f.NewTimer(time.Minute)
	if !a.Stop() || a.Stop() {
		t.Fatal("Stop: want true for a pending timer, then false")
	}
	f.Advance(time.Minute)
	if _, ok := fired(a); ok {
		t.Fatal("a stopped timer fired")
	}
	if _, ok := fired(b); !ok {
		t.Fatal("stopping one timer kept another from firing")
	}
}

// WaitTimers returns once the wanted number of timers is armed, by
// another goroutine, and gives up with ctx.
func TestFakeWaitTimers(t *testing.T) {
	f := clock.NewFake(t0)
	go f.NewTimer(time.Minute)
	if err := f.WaitTimers(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	go f.NewTimer(time.Hour)
	if err := f.WaitTimer(context.Background(), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitTimers(ctx, 3); err == nil {
		t.Fatal("WaitTimers(3) with two timers and a cancelled context returned nil")
	}
	if err := f.WaitTimer(ctx, t0.Add(time.Second)); err == nil {
		t.Fatal("WaitTimer for a time no timer has, with a cancelled context, returned nil")
	}
}

func TestSystemTimer(t *testing.T) {
	var c clock.TimerClock = clock.System{}
	tm := c.NewTimer(0)
	<-tm.C() // fires; how soon is not asserted
	if tm.Stop() {
		t.Fatal("Stop of a fired timer returned true")
	}
	if !c.NewTimer(time.Hour).Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
}

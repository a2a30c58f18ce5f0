package server

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// The scheduled sweep's period (config [rotation] sweep_interval).
const (
	DefaultSweepInterval = 10 * time.Minute
	MinSweepInterval     = time.Minute
	MaxSweepInterval     = 24 * time.Hour
)

// sweepOp is the audit operation of a scheduled sweep call.
const sweepOp = "daemon.sweep"

// Sweeper runs the keystore's Sweep on a schedule: every interval after
// the end of the previous sweep, a complete sweep of every key, as a
// series of bounded Sweep calls (core.DefaultSweepLimit keys each), each
// audited as one record with op "daemon.sweep" and the daemon's own uid
// and pid. It waits on the timers of the server's clock, so a test with a
// fake clock drives it by moving the clock.
type Sweeper struct {
	s      *Server
	clk    clock.TimerClock
	caller Caller
	reset  chan struct{} // SetInterval wakes Run; capacity 1

	mu       sync.Mutex
	interval time.Duration
	sweeps   int // complete sweeps so far
}

// NewSweeper returns a sweeper over s's keystore with the given interval
// (0: none until SetInterval). The server's Config.Clock must make timers
// (clock.TimerClock: clock.System and *clock.Fake do), else EINVAL.
func (s *Server) NewSweeper(interval time.Duration) (*Sweeper, error) {
	clk, ok := s.clock.(clock.TimerClock)
	if !ok {
		return nil, provider.Errorf(provider.EINVAL, "the server's clock makes no timers; the sweep cannot be scheduled")
	}
	if err := CheckSweepInterval(interval); err != nil {
		return nil, err
	}
	return &Sweeper{s: s, clk: clk, interval: interval, reset: make(chan struct{}, 1),
		caller: Caller{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid()), PID: int32(os.Getpid()), Operator: true}}, nil
}

// CheckSweepInterval reports an interval that is neither 0 (no scheduled
// sweep) nor between MinSweepInterval and MaxSweepInterval (EINVAL).
func CheckSweepInterval(d time.Duration) error {
	if d != 0 && (d < MinSweepInterval || d > MaxSweepInterval) {
		return provider.Errorf(provider.EINVAL, "sweep interval %s: want 0 (off) or %s to %s", d, MinSweepInterval, MaxSweepInterval)
	}
	return nil
}

// SetInterval changes the interval while Run runs: the next sweep starts
// d after the change (0 stops the schedule). A sweep in progress
// finishes first.
func (w *Sweeper) SetInterval(d time.Duration) error {
	if err := CheckSweepInterval(d); err != nil {
		return err
	}
	w.mu.Lock()
	w.interval = d
	w.mu.Unlock()
	select {
	case w.reset <- struct{}{}:
	default: // a wake-up is pending already; Run reads the interval then
	}
	return nil
}

// Interval returns the current interval.
func (w *Sweeper) Interval() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.interval
}

// Sweeps returns how many complete sweeps Run has made.
func (w *Sweeper) Sweeps() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sweeps
}

// Run sweeps on the schedule until ctx ends; a sweep in progress stops
// after the key in hand.
func (w *Sweeper) Run(ctx context.Context) {
	var t clock.Timer
	var fire <-chan time.Time
	arm := func() {
		if t != nil {
			t.Stop()
		}
		t, fire = nil, nil
		if d := w.Interval(); d > 0 {
			t = w.clk.NewTimer(d)
			fire = t.C()
		}
	}
	arm()
	for {
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-w.reset:
			arm()
		case <-fire:
			t, fire = nil, nil
			w.SweepAll(ctx)
			arm()
		}
	}
}

// SweepAll makes one complete sweep now and returns what it did, summed
// over its calls. It stops early when ctx ends or a call fails (a call
// that cannot be audited fails); the error is logged and returned.
func (w *Sweeper) SweepAll(ctx context.Context) (core.SweepResult, error) {
	var total core.SweepResult
	log := w.s.log
	token := ""
	for {
		res, err := w.sweepOnce(ctx, token)
		total.Examined += res.Examined
		total.Rotated = append(total.Rotated, res.Rotated...)
		total.Failed = append(total.Failed, res.Failed...)
		for _, r := range res.Rotated {
			log.Info("scheduled sweep: key rotated", "key", r.ID.String(), "version", uint32(r.Version))
		}
		for _, f := range res.Failed {
			log.Warn("scheduled sweep: key not rotated", "key", f.ID.String(), "err", f.Err)
		}
		if err != nil {
			if ctx.Err() != nil {
				log.Info("scheduled sweep interrupted (the daemon stops)", "examined", total.Examined, "rotated", len(total.Rotated))
			} else {
				log.Error("scheduled sweep stopped", "examined", total.Examined, "rotated", len(total.Rotated), "err", err)
			}
			return total, err
		}
		if res.NextPageToken == "" || res.NextPageToken == token {
			break
		}
		token = res.NextPageToken
	}
	w.mu.Lock()
	w.sweeps++
	w.mu.Unlock()
	level := slog.LevelDebug // every interval: quiet unless it did something
	if len(total.Rotated)+len(total.Failed) > 0 {
		level = slog.LevelInfo
	}
	log.Log(ctx, level, "scheduled sweep done", "examined", total.Examined, "rotated", len(total.Rotated), "failed", len(total.Failed))
	return total, nil
}

// sweepOnce makes one bounded Sweep call as its own audited request.
func (w *Sweeper) sweepOnce(ctx context.Context, token string) (core.SweepResult, error) {
	c := w.s.newCall(sweepOp, w.caller)
	ctx = withCall(ctx, c)
	res, err := w.s.ks.Sweep(ctx, w.caller.coreCaller(), core.SweepOptions{PageToken: token})
	c.setNote(sweepNote(res))
	if !c.finish(ctx, codeOf(err)) && err == nil {
		err = provider.Errorf(provider.EIO, "audit log unavailable; sweep stopped")
	}
	return res, err
}

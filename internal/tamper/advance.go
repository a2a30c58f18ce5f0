package tamper

import (
	"context"
	"errors"
	"strconv"

	"github.com/nexus-os/keystored/core/provider"
)

// startCounter applies the counter's start rules (docs/storage.md, "The
// external counter"), with L the value of the log's last audit.counter
// record and X the counter's.
//
// With act false it only decides: it returns the refusal, if any, and
// changes nothing (no create, increment or record) — Verify runs it so
// that a refused start signs nothing.
func (t *Tracker) startCounter(ctx context.Context, act bool) error {
	c := t.o.Counter
	desc := c.Describe()
	// L: the value the key vouches for (the signed snapshot's, or a
	// counter record a checkpoint covers): a counter record appended
	// without a signature after it could be anyone's.
	L, found := t.signedCounter.v, t.signedCounter.has
	X, err := c.Read(ctx)
	missing := errors.Is(err, ErrCounterMissing)
	if err != nil && !missing {
		return provider.Errorf(provider.EIO, "external counter %s: %w", desc, err)
	}
	accept := t.o.AcceptCounterChange
	var problem error
	if missing {
		if found && !accept {
			return provider.Errorf(provider.EIO, "%w: %s is missing but the audit log says it reached %d: the counter was removed or replaced; "+
				"restore it, or restart tracking from a new counter with %s (audited)", ErrCounterBehind, desc, L, counterFlag)
		}
		cr, ok := c.(creator)
		if !ok {
			return provider.Errorf(provider.EIO, "external counter %s does not exist and cannot be created here: %w", desc, err)
		}
		if !act {
			return nil
		}
		if err := cr.Create(ctx); err != nil {
			return provider.Errorf(provider.EIO, "external counter %s: create: %w", desc, err)
		}
		// Its starting value: 0 for a file, for a TPM counter what its
		// first increment gave.
		if X, err = c.Read(ctx); err != nil {
			return provider.Errorf(provider.EIO, "external counter %s: after create: %w", desc, err)
		}
		if found {
			problem = errors.New("counter missing")
		}
	}
	switch {
	case problem != nil:
	case !found && X > 0 && !missing && !accept:
		// A counter already in use, but the log has no record of it: a
		// state and log older than the counter (from before it was
		// configured, or a backup with the log and index replaced).
		return provider.Errorf(provider.EIO, "%w: %s is at %d but the audit log has no counter record: the state directory and audit log are older than the counter, "+
			"or were replaced; if this counter is new to this state, accept it with %s (audited)", ErrCounterAhead, desc, X, counterFlag)
	case !found:
		if !act {
			return nil
		}
		// First use: tracking starts at the counter's value (0 for a new
		// one).
		t.value = X
		if accept {
			if err := t.note(ctx, OpOverride, "", 0, "counter change accepted (first use at "+strconv.FormatUint(X, 10)+"): "+desc); err != nil {
				return err
			}
		}
		return t.step(ctx)
	case X == L:
	case X+1 == L:
		if !act {
			return nil
		}
		// A crash between the counter record (signed) and the increment.
		v, err := c.Increment(ctx)
		if err != nil {
			return provider.Errorf(provider.EIO, "external counter %s: finish the increment to %d: %w", desc, L, err)
		}
		if v != L {
			return provider.Errorf(provider.EIO, "external counter %s: finishing the increment to %d gave %d: another process advances it", desc, L, v)
		}
		if err := t.note(ctx, OpCounterFinished, "", L, "finished the interrupted increment of "+desc+" to "+strconv.FormatUint(L, 10)); err != nil {
			return err
		}
	case X > L:
		if !accept {
			return provider.Errorf(provider.EIO, "%w: %s is at %d but the audit log's last counter record says %d: "+
				"the state directory and audit log are older than the external counter: restored from a backup? "+
				"(%s accepts them, audited, and restarts tracking from the counter)", ErrCounterAhead, desc, X, L, counterFlag)
		}
		problem = ErrCounterAhead
	default: // X+1 < L
		if !accept {
			return provider.Errorf(provider.EIO, "%w: %s is at %d but the audit log's last counter record says %d: "+
				"the counter was replaced or reset (%s restarts tracking from it, audited)", ErrCounterBehind, desc, X, L, counterFlag)
		}
		problem = ErrCounterBehind
	}
	if !act {
		return nil
	}
	t.value = L
	if !accept {
		return nil
	}
	what := "none found"
	if problem != nil {
		what = problem.Error()
	}
	detail := "counter change accepted (" + what + "): log says " + strconv.FormatUint(L, 10) + ", " + desc + " says " + strconv.FormatUint(X, 10)
	if err := t.note(ctx, OpOverride, "", 0, detail); err != nil {
		return err
	}
	if problem == nil {
		return nil
	}
	t.value = X
	return t.step(ctx)
}

// step is one round of Advance: an audit.counter record with Gen N+1
// (durable), then the increment to N+1. After a failed round it first
// brings the counter back in line with the log (the start rules).
func (t *Tracker) step(ctx context.Context) error {
	t.stepMu.Lock()
	defer t.stepMu.Unlock()
	c := t.o.Counter
	desc := c.Describe()
	if t.dirty {
		L, _ := t.idx.Counter()
		X, err := c.Read(ctx)
		if err != nil {
			return provider.Errorf(provider.EIO, "external counter %s: %w", desc, err)
		}
		switch {
		case X+1 == L:
			v, err := c.Increment(ctx)
			if err != nil {
				return provider.Errorf(provider.EIO, "external counter %s: increment: %w", desc, err)
			}
			if v != L {
				return provider.Errorf(provider.EIO, "%w: %s went to %d, expected %d: another process advances it", ErrCounterAhead, desc, v, L)
			}
		case X > L:
			return provider.Errorf(provider.EIO, "%w: %s is at %d, the audit log says %d: another process advances it", ErrCounterAhead, desc, X, L)
		case X < L:
			return provider.Errorf(provider.EIO, "%w: %s is at %d, the audit log says %d: it was reset", ErrCounterBehind, desc, X, L)
		}
		t.value, t.dirty = L, false
	}
	n := t.value + 1
	if n == 0 {
		return provider.Errorf(provider.EIO, "external counter %s is at its maximum", desc)
	}
	if err := t.note(ctx, OpCounter, "", n, desc); err != nil {
		// The record may have its place in the log all the same.
		t.dirty = true
		return err
	}
	// Signed before the counter moves: at a start, only a counter value
	// a checkpoint covers counts (Tracker.Start).
	if err := t.log.CheckpointNow(ctx); err != nil {
		t.dirty = true
		return provider.Errorf(provider.EIO, "external counter %s: the checkpoint of its record %d: %w", desc, n, err)
	}
	v, err := c.Increment(ctx)
	if err != nil {
		t.dirty = true
		return provider.Errorf(provider.EIO, "external counter %s: increment to %d: %w", desc, n, err)
	}
	if v != n {
		t.dirty = true
		return provider.Errorf(provider.EIO, "%w: %s went to %d, expected %d: another process advances it", ErrCounterAhead, desc, v, n)
	}
	t.value = n
	return nil
}

// Advance advances the external counter past the caller's state change:
// it returns nil once an increment that started after the call has been
// recorded in the log and made. Concurrent callers share increments, as
// group commit shares an fsync: while one round runs, later callers wait
// for the next, which one round serves them all. Without a counter it
// does nothing. If ctx ends first it returns EUNAVAILABLE (the round goes
// on).
func (t *Tracker) Advance(ctx context.Context) error {
	if t.o.Counter == nil || !t.counting.Load() {
		// No counter, or Start has not applied its rules yet: the only
		// change before it is the daemon's own audit key at its first
		// start, which the counter's first record then follows.
		return nil
	}
	if err := ctx.Err(); err != nil {
		return provider.Errorf(provider.EUNAVAILABLE, "external counter not advanced: %w", err)
	}
	t.advMu.Lock()
	if t.closed {
		t.advMu.Unlock()
		return provider.Errorf(provider.EIO, "tamper tracker is closed")
	}
	var r *round
	if t.cur == nil {
		r = &round{done: make(chan struct{})}
		t.cur = r
		t.rounds.Add(1)
		t.advMu.Unlock()
		t.run(context.WithoutCancel(ctx), r)
	} else {
		if t.next == nil {
			t.next = &round{done: make(chan struct{})}
		}
		r = t.next
		t.advMu.Unlock()
	}
	select {
	case <-r.done:
		return r.err
	default:
	}
	// A round that is done wins over a ctx that ended meanwhile.
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		select {
		case <-r.done:
			return r.err
		default:
		}
		return provider.Errorf(provider.EUNAVAILABLE, "external counter advance not yet done: %w", ctx.Err())
	}
}

// run runs round r, then hands the next round, if callers joined it, to a
// new goroutine.
func (t *Tracker) run(ctx context.Context, r *round) {
	r.err = t.step(ctx)
	t.advMu.Lock()
	next := t.next
	t.next, t.cur = nil, next
	if next != nil {
		t.rounds.Add(1)
	}
	t.advMu.Unlock()
	close(r.done)
	t.rounds.Done()
	if next != nil {
		go t.run(ctx, next)
	}
}

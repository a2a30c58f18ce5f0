package server

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// The scheduled sweep rotates a key nobody uses once its period has
// passed: driven by the fake clock alone (the test waits for the sweeper's
// timers, never for wall-clock time). Each sweep call is one audited
// request of the daemon itself; SetInterval re-arms the schedule; the
// sweeper stops with its context.
func TestSweeperRotatesOnSchedule(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createRotating(t, "alice/p/idle-due", "bob/p/manual")
	w, err := e.srv.NewSweeper(10 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	mustOK(t, "first timer", e.clock.WaitTimer(ctx, testTime.Add(10*time.Minute)))

	// Ten minutes: nothing is due yet.
	e.clock.Advance(10 * time.Minute)
	mustOK(t, "second timer", e.clock.WaitTimer(ctx, testTime.Add(20*time.Minute)))
	if w.Sweeps() != 1 {
		t.Fatalf("%d sweeps, want 1", w.Sweeps())
	}
	if r := e.audit.last(t); r.Op != "daemon.sweep" || r.Result != "ok" || r.Items != 0 || r.Detail != "swept: examined 2, rotated 0, failed 0" {
		t.Fatalf("record of a sweep that rotated nothing: %+v", r)
	}

	// Past the key's period: the next sweep rotates it.
	n := e.audit.count()
	e.clock.Advance(time.Hour)
	now := testTime.Add(10*time.Minute + time.Hour)
	mustOK(t, "timer after the rotation", e.clock.WaitTimer(ctx, now.Add(10*time.Minute)))
	recs := e.audit.records()[n:]
	gr, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "p/idle-due"})
	mustOK(t, "Get", err)
	if v := gr.GetKey().GetCurrentVersion(); v != 2 {
		t.Fatalf("the idle key is at v%d after the scheduled sweep, want v2", v)
	}
	if !gr.GetKey().GetVersions()[1].GetCreated().AsTime().Equal(now) {
		t.Fatalf("v2 created %v, want the fake clock's %v", gr.GetKey().GetVersions()[1].GetCreated().AsTime(), now)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records for a sweep that rotated one key, want 2 (ahead, outcome): %+v", len(recs), recs)
	}
	ahead, final := recs[0], recs[1]
	if ahead.Op != "daemon.sweep" || ahead.Key != "alice/p/idle-due" || ahead.Version != 2 || ahead.Detail != "auto-rotated" {
		t.Fatalf("record written ahead: %+v", ahead)
	}
	if final.Op != "daemon.sweep" || final.Result != "ok" || final.Items != 0 || final.Failed != 0 ||
		final.Detail != "outcome of seq "+itoa(ahead.Seq)+": swept: examined 2, rotated 1, failed 0" {
		t.Fatalf("final record: %+v", final)
	}
	if c := final.Caller; !c.Operator || c.UID != int64(os.Geteuid()) || c.PID != int64(os.Getpid()) || c.App != "" {
		t.Fatalf("the sweep's caller is %+v, want the daemon itself as an operator", c)
	}

	// A new interval re-arms the timer from now; 0 stops the schedule.
	mustOK(t, "SetInterval", w.SetInterval(2*time.Hour))
	mustOK(t, "re-armed timer", e.clock.WaitTimer(ctx, now.Add(2*time.Hour)))
	mustOK(t, "SetInterval 0", w.SetInterval(0))
	mustOK(t, "SetInterval", w.SetInterval(5*time.Minute))
	mustOK(t, "re-armed timer", e.clock.WaitTimer(ctx, now.Add(5*time.Minute)))
	if got := e.clock.Timers(); got != 1 {
		t.Fatalf("%d timers armed after re-arming, want 1 (the old ones stopped)", got)
	}
	if c, _ := provider.CodeOf(w.SetInterval(time.Second)); c != provider.EINVAL {
		t.Fatalf("SetInterval(1s): code %v, want EINVAL", c)
	}

	cancel()
	<-done
	if got := e.clock.Timers(); got != 0 {
		t.Fatalf("%d timers armed after Run returned", got)
	}
}

// A sweeper with interval 0 arms no timer; one over the bounds is refused.
func TestSweeperInterval(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, d := range []time.Duration{-time.Minute, time.Second, MaxSweepInterval + time.Second} {
		if _, err := e.srv.NewSweeper(d); err == nil {
			t.Errorf("NewSweeper(%s) succeeded", d)
		} else if c, _ := provider.CodeOf(err); c != provider.EINVAL {
			t.Errorf("NewSweeper(%s): %v, want EINVAL", d, err)
		}
	}
	w, err := e.srv.NewSweeper(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	// Enabling it later arms the timer.
	mustOK(t, "SetInterval", w.SetInterval(time.Minute))
	mustOK(t, "timer", e.clock.WaitTimer(ctx, testTime.Add(time.Minute)))
	cancel()
	<-done
}

// A sweep call whose audit record cannot be written stops the sweep with
// EIO; nothing rotates without its record.
func TestSweeperFailsClosed(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createRotating(t, "alice/p/k-due")
	e.clock.Advance(time.Hour)
	w, err := e.srv.NewSweeper(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.audit.setBroken(true)
	_, err = w.SweepAll(bg)
	if c, _ := provider.CodeOf(err); c != provider.EIO {
		t.Fatalf("SweepAll with the audit log broken: %v, want EIO", err)
	}
	e.audit.setBroken(false)
	m, err := e.srv.Keystore().Get(bg, operator, mustKeyID(t, "alice/p/k-due"))
	if err != nil || m.Current != 1 {
		t.Fatalf("after a sweep that could not be audited the key is at v%d (%v), want v1", m.Current, err)
	}
	res, err := w.SweepAll(bg)
	if err != nil || len(res.Rotated) != 1 || res.Examined != 1 {
		t.Fatalf("SweepAll = %+v, %v", res, err)
	}
}

func mustKeyID(t *testing.T, s string) core.KeyID {
	t.Helper()
	id, err := provider.ParseKeyID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// operatorEnv is an env whose caller (this process's uid) is an operator
// of app "ops".
func operatorEnv(t *testing.T) *env {
	t.Helper()
	id, err := NewIdentity(map[uint32]string{myUID(): "ops"}, []uint32{myUID()}, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, envOpts{identity: &id})
}

// createRotating creates keys of several apps with a rotation period of an
// hour (names ending in "-due") or none.
func (e *env) createRotating(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		id, err := provider.ParseKeyID(name)
		if err != nil {
			t.Fatal(err)
		}
		o := core.CreateOptions{Algorithm: provider.Ed25519}
		if strings.HasSuffix(name, "-due") {
			o.Policy.RotationPeriod = time.Hour
		}
		if _, err := e.srv.Keystore().Create(bg, operator, id, o); err != nil {
			t.Fatal(err)
		}
	}
}

// Keys.Sweep rotates the due keys in bounded calls that resume from the
// page token, and each call is audited with its counts.
func TestSweepRPC(t *testing.T) {
	e := operatorEnv(t)
	e.createRotating(t, "a/p/one-due", "a/p/two", "b/p/three-due", "c/p/four-due", "c/p/five")
	e.clock.Advance(time.Hour)
	var rotated []string
	token, calls := "", 0
	for {
		n := e.audit.count()
		resp, err := e.keys.Sweep(bg, &keystorev1.SweepKeysRequest{Limit: 2, PageToken: token})
		mustOK(t, "Sweep", err)
		calls++
		if resp.GetExamined() > 2 || len(resp.GetFailed()) != 0 {
			t.Fatalf("call %d: %v", calls, resp)
		}
		for _, r := range resp.GetRotated() {
			if r.GetVersion() != 2 {
				t.Fatalf("rotated %s to v%d, want v2", r.GetKey(), r.GetVersion())
			}
			rotated = append(rotated, r.GetKey())
		}
		recs := e.audit.records()[n:]
		final := recs[len(recs)-1]
		want := fmt.Sprintf("swept: examined %d, rotated %d, failed 0", resp.GetExamined(), len(resp.GetRotated()))
		if len(recs) == 2 {
			want = fmt.Sprintf("outcome of seq %d: %s", recs[0].Seq, want)
		}
		if final.Op != "keys.sweep" || final.Result != "ok" || final.Items != 0 || final.Failed != 0 || final.Detail != want || !final.Caller.Operator {
			t.Fatalf("call %d: final record %+v, want keys.sweep ok with detail %q", calls, final, want)
		}
		// One record, or, when it rotated keys, one written ahead of the
		// first rotation and its outcome.
		if len(resp.GetRotated()) == 0 && len(recs) != 1 || len(resp.GetRotated()) > 0 && len(recs) != 2 {
			t.Fatalf("call %d rotated %d keys and wrote %d records: %+v", calls, len(resp.GetRotated()), len(recs), recs)
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if calls > 5 {
			t.Fatal("the sweep does not end")
		}
	}
	if calls != 3 || strings.Join(rotated, " ") != "a/p/one-due b/p/three-due c/p/four-due" {
		t.Fatalf("%d calls rotated %v", calls, rotated)
	}
	for _, key := range []string{"a/p/one-due", "b/p/three-due", "c/p/four-due"} {
		gr, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: key})
		mustOK(t, "Get "+key, err)
		if gr.GetKey().GetCurrentVersion() != 2 {
			t.Fatalf("%s is at v%d after the sweep", key, gr.GetKey().GetCurrentVersion())
		}
	}
	_, err := e.keys.Sweep(bg, &keystorev1.SweepKeysRequest{Limit: -1})
	wantCode(t, "Sweep with limit -1", err, provider.EINVAL)
}

// A key that fails to rotate is answered in the response with its error;
// the call succeeds and its record counts the failure.
func TestSweepRPCReportsFailures(t *testing.T) {
	id, err := NewIdentity(map[uint32]string{myUID(): "ops"}, []uint32{myUID()}, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{identity: &id, quotas: core.Quotas{Default: core.Quota{VersionsPerKey: 1}}})
	e.createRotating(t, "a/p/k-due")
	e.clock.Advance(time.Hour)
	resp, err := e.keys.Sweep(bg, &keystorev1.SweepKeysRequest{})
	mustOK(t, "Sweep", err)
	if len(resp.GetRotated()) != 0 || len(resp.GetFailed()) != 1 || resp.GetFailed()[0].GetKey() != "a/p/k-due" ||
		resp.GetFailed()[0].GetError().GetReason() != "EDQUOT" {
		t.Fatalf("Sweep at the versions quota = %v", resp)
	}
	r := e.audit.last(t)
	if r.Op != "keys.sweep" || r.Result != "ok" || r.Detail != "swept: examined 1, rotated 0, failed 1" {
		t.Fatalf("record %+v", r)
	}
}

// Only operators sweep: an app gets EPERM, audited.
func TestSweepRPCOperatorsOnly(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createRotating(t, "alice/p/k-due")
	e.clock.Advance(time.Hour)
	_, err := e.keys.Sweep(bg, &keystorev1.SweepKeysRequest{})
	wantCode(t, "Sweep by an app", err, provider.EPERM)
	if r := e.audit.last(t); r.Op != "keys.sweep" || r.Result != "EPERM" || r.Caller.Operator {
		t.Fatalf("record %+v, want keys.sweep EPERM", r)
	}
	gr, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "p/k-due"})
	mustOK(t, "Get", err)
	if gr.GetKey().GetCurrentVersion() != 1 {
		t.Fatal("a refused sweep rotated the key")
	}
}

// Sweep's receive limit is the small one: a request over 16 KiB is
// refused before its body is read.
func TestSweepRPCReceiveLimit(t *testing.T) {
	if got := ReceiveLimit("keys.sweep"); got != smallRequest {
		t.Fatalf("ReceiveLimit(keys.sweep) = %d, want %d", got, smallRequest)
	}
	e := operatorEnv(t)
	_, err := e.keys.Sweep(bg, &keystorev1.SweepKeysRequest{PageToken: strings.Repeat("a", 32<<10)})
	wantCode(t, "Sweep of 32 KiB", err, provider.EMSGSIZE)
	waitReleased(t, e)
}

// KeyMetadata says when a key is due for rotation and, by the daemon's
// clock, whether that time has passed; keys without a period, and revoked
// keys, say nothing.
func TestRotationDueInMetadata(t *testing.T) {
	e := newEnv(t, envOpts{})
	cr, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "p/due", Algorithm: "ed25519", Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}})
	mustOK(t, "Create", err)
	if m := cr.GetKey(); !m.GetRotationDue().AsTime().Equal(testTime.Add(time.Hour)) || m.GetRotationOverdue() {
		t.Fatalf("Create: rotation due %v, overdue %v; want %v, false", m.GetRotationDue(), m.GetRotationOverdue(), testTime.Add(time.Hour))
	}
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "p/never", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	e.clock.Advance(time.Hour)
	gr, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "p/due"})
	mustOK(t, "Get", err)
	if m := gr.GetKey(); !m.GetRotationDue().AsTime().Equal(testTime.Add(time.Hour)) || !m.GetRotationOverdue() {
		t.Fatalf("Get at the due time: rotation due %v, overdue %v; want overdue", m.GetRotationDue(), m.GetRotationOverdue())
	}
	lr, err := e.keys.List(bg, &keystorev1.ListKeysRequest{})
	mustOK(t, "List", err)
	for _, m := range lr.GetKeys() {
		switch m.GetId() {
		case "alice/p/due":
			if !m.GetRotationOverdue() || m.GetRotationDue() == nil {
				t.Errorf("List: %s rotation due %v, overdue %v", m.GetId(), m.GetRotationDue(), m.GetRotationOverdue())
			}
		case "alice/p/never":
			if m.GetRotationOverdue() || m.GetRotationDue() != nil {
				t.Errorf("List: %s without a period has rotation due %v, overdue %v", m.GetId(), m.GetRotationDue(), m.GetRotationOverdue())
			}
		}
	}
	// A sign rotates it: due again one period after the new version.
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "p/due", Message: []byte("m")})
	mustOK(t, "Sign", err)
	gr, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "p/due"})
	mustOK(t, "Get", err)
	if m := gr.GetKey(); m.GetCurrentVersion() != 2 || !m.GetRotationDue().AsTime().Equal(testTime.Add(2*time.Hour)) || m.GetRotationOverdue() {
		t.Fatalf("after the auto-rotation: v%d due %v overdue %v", m.GetCurrentVersion(), m.GetRotationDue(), m.GetRotationOverdue())
	}
	rr, err := e.keys.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: "p/due"})
	mustOK(t, "Revoke", err)
	if m := rr.GetKey(); m.GetRotationDue() != nil || m.GetRotationOverdue() {
		t.Fatalf("revoked key: rotation due %v, overdue %v", m.GetRotationDue(), m.GetRotationOverdue())
	}
}

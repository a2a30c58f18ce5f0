package server

import (
	"testing"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// A request over its method's receive limit is refused by the tap with
// EMSGSIZE and an audit record, before its body is read: the limit is the
// method's (Sign: 64 KiB of message), not the server-wide 9 MiB.
func TestReceiveLimitPerMethod(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createFor(t, "alice/sig/k", provider.Ed25519)
	n := e.audit.count()
	_, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: make([]byte, 1<<20)})
	wantCode(t, "Sign of 1 MiB", err, provider.EMSGSIZE)
	r := e.audit.last(t)
	if e.audit.count() != n+1 || r.Op != "keys.sign" || r.Result != "EMSGSIZE" {
		t.Fatalf("record %+v (%d new), want one keys.sign EMSGSIZE", r, e.audit.count()-n)
	}
	// Just over the payload bound, within the framing slack: the handler's
	// EMSGSIZE, as before.
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: make([]byte, provider.MaxSignMessage+1)})
	wantCode(t, "Sign of MaxSignMessage+1", err, provider.EMSGSIZE)
	waitReleased(t, e)
}

// A uid's requests in flight are bounded: a request whose memory does not
// fit in the uid's budget is refused with EUNAVAILABLE (retry later), and
// a small one that fits is still served.
func TestInFlightBudget(t *testing.T) {
	e := newEnv(t, envOpts{limits: Limits{InFlightBytesPerUID: 1 << 20}})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create", err)
	_, err = e.keys.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: make([]byte, 1<<20)})
	wantCode(t, "Seal of 1 MiB over a 1 MiB budget", err, provider.EUNAVAILABLE)
	_, err = e.keys.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: make([]byte, 1<<10)})
	mustOK(t, "Seal of 1 KiB", err)
	waitReleased(t, e)
}

// Requests over a uid's rate are refused with EUNAVAILABLE and audited as
// one record per interval whose count is exact.
func TestRateLimitCoalesced(t *testing.T) {
	e := newEnv(t, envOpts{limits: Limits{RatePerUID: 1e-9, BurstPerUID: 3, RefusalInterval: 1 << 62}})
	n := e.audit.count()
	const calls = 50
	refused := 0
	for range calls {
		_, err := e.keys.List(bg, &keystorev1.ListKeysRequest{})
		if err != nil {
			wantCode(t, "List over the rate", err, provider.EUNAVAILABLE)
			refused++
		}
	}
	if refused != calls-3 {
		t.Fatalf("%d of %d calls refused, want all but the burst of 3", refused, calls)
	}
	if got := e.audit.count() - n; got != 3 {
		t.Fatalf("%d records before the interval ends, want the 3 served calls'", got)
	}
	e.srv.FlushRefusals()
	recs := e.audit.records()[n:]
	if len(recs) != 4 {
		t.Fatalf("%d records, want 3 served + 1 coalesced: %+v", len(recs), recs)
	}
	r := recs[3]
	if r.Op != "keys.list" || r.Result != "EUNAVAILABLE" || r.Items != refused || r.Failed != refused || r.Caller.UID != int64(myUID()) {
		t.Fatalf("coalesced record %+v, want keys.list EUNAVAILABLE with items = failed = %d", r, refused)
	}
}

// A denied caller is refused before its body is read, however large it
// declares it, and is held to the denied rate.
func TestDeniedCallerRefusedAtAdmission(t *testing.T) {
	id, err := NewIdentity(nil, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{identity: &id, limits: Limits{DeniedRate: 1e-9, DeniedBurst: 2, RefusalInterval: 1 << 62}})
	for i := range 5 {
		_, err := e.keys.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: make([]byte, 4<<20)})
		want := provider.EPERM
		if i >= 2 {
			want = provider.EUNAVAILABLE
		}
		wantCode(t, "denied Seal", err, want)
	}
	e.srv.FlushRefusals()
	recs := e.audit.records()
	if len(recs) != 3 || recs[0].Result != "EPERM" || recs[1].Result != "EPERM" || recs[2].Result != "EUNAVAILABLE" || recs[2].Items != 3 {
		t.Fatalf("records %+v, want 2 EPERM and one EUNAVAILABLE counting 3", recs)
	}
}

// waitReleased waits (bounded) until no memory is reserved: a stream's
// reservation is released once its end is written to the socket, which
// may be just after the client has read it.
func waitReleased(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.inflight.inUse() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := e.srv.inflight.inUse(); got != 0 {
		t.Errorf("%d bytes still reserved after the calls ended", got)
	}
}

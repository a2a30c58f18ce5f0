package server

import (
	"bytes"
	"maps"
	"strings"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

// TestOneAuditRecordPerRequest: a mix of successful, failed, denied,
// malformed, batch, oversized and unknown calls yields exactly one record
// each, with the caller, op, key, result and batch counts, and never a
// payload.
func TestOneAuditRecordPerRequest(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createFor(t, "bob/sig/k", provider.Ed25519)
	start := e.audit.count()
	k := e.keys
	secretMsg := []byte("CANARY-message-7f3a")
	secretPT := []byte("CANARY-plaintext-91be")
	secretAAD := []byte("CANARY-aad-55d0")

	type call struct {
		op, key, result string
		version         uint32
		items, failed   int
		do              func() error
	}
	calls := []call{
		{"keys.create", "alice/sig/k", "ok", 1, 0, 0, func() error {
			_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
			return err
		}},
		{"keys.sign", "alice/sig/k", "ok", 1, 0, 0, func() error {
			_, err := k.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: secretMsg})
			return err
		}},
		{"keys.create", "alice/enc/k", "ok", 1, 0, 0, func() error {
			_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/k"})
			return err
		}},
		{"keys.seal", "alice/enc/k", "ok", 1, 0, 0, func() error {
			_, err := k.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: secretPT, Aad: secretAAD})
			return err
		}},
		{"keys.sign", "bob/sig/k", "EPERM", 0, 0, 0, func() error {
			_, err := k.Sign(bg, &keystorev1.SignRequest{Key: "bob/sig/k", Message: secretMsg})
			return err
		}},
		{"keys.get", "", "EINVAL", 0, 0, 0, func() error {
			_, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: "../../etc"})
			return err
		}},
		{"keys.get", "alice/sig/none", "ENOENT", 0, 0, 0, func() error {
			_, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: "sig/none"})
			return err
		}},
		{"keys.sign-batch", "alice/sig/k", "ok", 1, 3, 0, func() error {
			items := []*keystorev1.SignRequest{{Key: "sig/k", Message: secretMsg}, {Key: "sig/k"}, {Key: "sig/k", Message: []byte("x")}}
			_, err := k.SignBatch(bg, &keystorev1.SignBatchRequest{Items: items})
			return err
		}},
		{"keys.seal-batch", "", "ok", 0, 3, 2, func() error {
			items := []*keystorev1.SealRequest{{Key: "enc/k", Plaintext: secretPT}, {Key: "sig/k", Plaintext: secretPT}, {Key: "BAD"}}
			_, err := k.SealBatch(bg, &keystorev1.SealBatchRequest{Items: items})
			return err
		}},
		{"keys.sign-batch", "", "EINVAL", 0, 0, 0, func() error {
			_, err := k.SignBatch(bg, &keystorev1.SignBatchRequest{})
			return err
		}},
		{"keys.create", "", "EINVAL", 0, 0, 0, func() error {
			return invokeRaw(e.conn, keystorev1.Keys_Create_FullMethodName, []byte{0xff, 0xff})
		}},
		{"keys.create", "alice/mac/k", "ok", 1, 0, 0, func() error {
			_, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "mac/k", Use: "mac"})
			return err
		}},
		{"keys.mac", "alice/mac/k", "ok", 1, 0, 0, func() error {
			_, err := k.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: secretMsg})
			return err
		}},
		{"keys.verify-mac", "alice/mac/k", "ok", 1, 0, 0, func() error {
			_, err := k.VerifyMac(bg, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: secretMsg, Tag: secretMsg})
			return err
		}},
		{"keys.verify-mac", "alice/sig/k", "EPERM", 1, 0, 0, func() error {
			_, err := k.VerifyMac(bg, &keystorev1.VerifyMacRequest{Key: "sig/k", Version: 1, Message: secretMsg, Tag: secretMsg})
			return err
		}},
		{"keys.mac-batch", "", "ok", 0, 2, 1, func() error { // two keys named: no key
			items := []*keystorev1.MacRequest{{Key: "mac/k", Message: secretMsg}, {Key: "mac/none", Message: secretMsg}}
			_, err := k.MacBatch(bg, &keystorev1.MacBatchRequest{Items: items})
			return err
		}},
		{"keys.verify-mac-batch", "alice/mac/k", "ok", 1, 1, 0, func() error {
			items := []*keystorev1.VerifyMacRequest{{Key: "mac/k", Version: 1, Message: secretMsg, Tag: secretMsg}}
			_, err := k.VerifyMacBatch(bg, &keystorev1.VerifyMacBatchRequest{Items: items})
			return err
		}},
		{"store.put", "cfg", "ok", 0, 0, 0, func() error {
			_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "cfg", Value: secretPT})
			return err
		}},
		{"store.get", "nope", "ENOENT", 0, 0, 0, func() error {
			_, err := e.store.Get(bg, &keystorev1.GetValueRequest{Name: "nope"})
			return err
		}},
		{"anchors.list", "", "ok", 0, 0, 0, func() error {
			_, err := e.anchors.ListAnchors(bg, &keystorev1.ListAnchorsRequest{})
			return err
		}},
		{"anchors.verify", "root", "ENOENT", 0, 0, 0, func() error {
			_, err := e.anchors.Verify(bg, &keystorev1.VerifyAnchorRequest{Anchor: "root", Message: secretMsg})
			return err
		}},
		// Refused by the transport before any handler: over MaxRequestBytes.
		{"keys.seal", "", "EMSGSIZE", 0, 0, 0, func() error {
			_, err := k.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: make([]byte, MaxRequestBytes+1)})
			return err
		}},
		{opUnknown, "", "ENOTSUP", 0, 0, 0, func() error {
			return invokeRaw(e.conn, "/keystore.v1.Nope/Nope", nil)
		}},
	}
	for i, c := range calls {
		err := c.do()
		if (err == nil) != (c.result == "ok") {
			t.Fatalf("call %d (%s): err = %v, want result %s", i, c.op, err, c.result)
		}
		recs := e.audit.waitFor(t, start+i+1)
		if len(recs) != start+i+1 {
			t.Fatalf("after call %d (%s): %d records, want %d", i, c.op, len(recs)-start, i+1)
		}
		r := recs[len(recs)-1]
		if r.Op != c.op || r.Key != c.key || r.Result != c.result || r.Version != c.version || r.Items != c.items || r.Failed != c.failed {
			t.Errorf("call %d: record op=%q key=%q result=%q v=%d items=%d failed=%d; want %q %q %q %d %d %d",
				i, r.Op, r.Key, r.Result, r.Version, r.Items, r.Failed, c.op, c.key, c.result, c.version, c.items, c.failed)
		}
		if r.Caller.UID != int64(myUID()) || r.Caller.App != "alice" || r.Caller.Operator || r.Caller.PID <= 0 {
			t.Errorf("call %d: caller %+v", i, r.Caller)
		}
		if !r.Time.Equal(testTime) {
			t.Errorf("call %d: time %v, want the injected clock's %v", i, r.Time, testTime)
		}
	}
	// Give a late (transport) record a chance to show up, then check the
	// count is exact.
	if n := len(e.audit.records()) - start; n != len(calls) {
		t.Fatalf("%d records for %d calls", n, len(calls))
	}
	for _, r := range e.audit.records() {
		line := strings.Join([]string{r.Op, r.Key, r.Detail, r.Caller.App}, " ")
		for _, canary := range [][]byte{secretMsg, secretPT, secretAAD} {
			if bytes.Contains([]byte(line), canary) {
				t.Fatalf("record %+v holds a payload", r)
			}
		}
	}
}

// TestDeniedCallerAudited: an unmapped uid under "deny" gets EPERM for
// every RPC, each audited with its uid and no app.
func TestDeniedCallerAudited(t *testing.T) {
	id, err := NewIdentity(map[uint32]string{myUID() + 1: "other"}, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{identity: &id})
	before := e.audit.count()
	snap := e.mem.Snapshot()
	calls := []func() error{
		func() error {
			_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
			return err
		},
		func() error {
			_, err := e.keys.List(bg, &keystorev1.ListKeysRequest{})
			return err
		},
		func() error {
			_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v", Value: []byte("x")})
			return err
		},
		func() error {
			_, err := e.anchors.ListAnchors(bg, &keystorev1.ListAnchorsRequest{})
			return err
		},
		func() error { return invokeRaw(e.conn, keystorev1.Keys_Sign_FullMethodName, []byte{0xff}) },
	}
	for i, call := range calls {
		wantCode(t, "denied call", call(), provider.EPERM)
		if got := e.audit.count() - before; got != i+1 {
			t.Fatalf("after %d denied calls: %d records", i+1, got)
		}
	}
	for _, r := range e.audit.records()[before:] {
		if r.Result != "EPERM" || r.Caller.App != "" || r.Caller.UID != int64(myUID()) || r.Caller.Operator {
			t.Fatalf("denied record %+v", r)
		}
	}
	if !maps.EqualFunc(snap, e.mem.Snapshot(), bytes.Equal) {
		t.Fatal("denied calls changed the state")
	}
}

// TestAuditFailureFailsClosed: when the audit log cannot be written, every
// call fails with EIO and returns nothing, and no state changes.
func TestAuditFailureFailsClosed(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create", err)
	se, err := e.keys.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte("pt")})
	mustOK(t, "Seal", err)
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v", Value: []byte("old")})
	mustOK(t, "Put", err)
	snap := e.mem.Snapshot()

	e.audit.setBroken(true)
	un, err := e.keys.Unseal(bg, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: se.GetSealed()})
	wantCode(t, "Unseal with a broken audit log", err, provider.EIO)
	if un != nil {
		t.Fatalf("Unseal returned output %v while failing", un)
	}
	for what, call := range map[string]func() error{
		"Create": func() error {
			_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/new"})
			return err
		},
		"Rotate": func() error {
			_, err := e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "enc/k"})
			return err
		},
		"Revoke": func() error {
			_, err := e.keys.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: "enc/k"})
			return err
		},
		"Put": func() error {
			_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v", Value: []byte("new")})
			return err
		},
		"Delete": func() error {
			_, err := e.store.Delete(bg, &keystorev1.DeleteValueRequest{Name: "v"})
			return err
		},
		"Seal": func() error {
			_, err := e.keys.Seal(bg, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte("pt")})
			return err
		},
	} {
		wantCode(t, what+" with a broken audit log", call(), provider.EIO)
	}
	if !maps.EqualFunc(snap, e.mem.Snapshot(), bytes.Equal) {
		t.Fatal("state changed while the audit log was broken")
	}

	e.audit.setBroken(false)
	g, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "enc/k"})
	mustOK(t, "Get after repair", err)
	if g.GetKey().GetCurrentVersion() != 1 || g.GetKey().GetState() != keystorev1.KeyState_KEY_STATE_ACTIVE {
		t.Fatalf("key changed: %v", g.GetKey())
	}
	v, err := e.store.Get(bg, &keystorev1.GetValueRequest{Name: "v"})
	mustOK(t, "Get value after repair", err)
	if string(v.GetValue()) != "old" {
		t.Fatalf("value = %q, want old", v.GetValue())
	}
}

// TestRealAuditLog: the server's records land in a real audit.Log whose
// chain verifies.
func TestRealAuditLog(t *testing.T) {
	path := t.TempDir() + "/audit/audit.jsonl"
	lg, err := audit.Open(path, audit.WithSync(audit.SyncEveryRecord))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{})
	e.srv.audit = lg
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
	mustOK(t, "Sign", err)
	_, err = e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "x"})
	wantCode(t, "Get", err, provider.EINVAL)
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := audit.VerifyFile(path)
	if err != nil {
		t.Fatalf("VerifyFile: %v", err)
	}
	if n.Records != 4 { // create, its keys.applied note, sign, get
		t.Fatalf("log holds %d records, want 4", n.Records)
	}
}

package server

import (
	"testing"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Keys.GetUsage reports the caller's keys (tombstones included) and Store
// values against the app's quotas; another app's usage needs an operator.
func TestGetUsageRPC(t *testing.T) {
	e := newEnv(t, envOpts{quotas: core.Quotas{Default: core.Quota{Keys: 10, StoreValues: 5}}})
	for _, k := range []string{"p/a", "p/gone"} {
		_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
		mustOK(t, "Create "+k, err)
	}
	_, err := e.keys.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: "p/gone"})
	mustOK(t, "Revoke", err)
	_, err = e.keys.Destroy(bg, &keystorev1.DestroyKeyRequest{Key: "p/gone"})
	mustOK(t, "Destroy", err)
	for _, v := range []string{"one", "three"} {
		_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: v, Value: []byte(v)})
		mustOK(t, "Put", err)
	}
	u, err := e.keys.GetUsage(bg, &keystorev1.GetUsageRequest{})
	mustOK(t, "GetUsage", err)
	want := &keystorev1.GetUsageResponse{App: "alice", Keys: 2, KeysLimit: 10, VersionsPerKeyLimit: core.DefaultQuotaVersionsPerKey,
		StoreValues: 2, StoreValuesLimit: 5, StoreBytes: 8, StoreBytesLimit: core.DefaultQuotaStoreBytes}
	if !proto.Equal(u, want) {
		t.Fatalf("GetUsage = %v, want %v", u, want)
	}
	if r := e.audit.last(t); r.Op != "keys.get-usage" || r.Result != "ok" || r.Detail != "app alice" {
		t.Fatalf("record %+v", r)
	}
	if u, err := e.keys.GetUsage(bg, &keystorev1.GetUsageRequest{App: "alice"}); err != nil || u.GetKeys() != 2 {
		t.Fatalf("GetUsage naming the caller's own app = %v, %v", u, err)
	}
	_, err = e.keys.GetUsage(bg, &keystorev1.GetUsageRequest{App: "bob"})
	wantCode(t, "GetUsage of another app", err, provider.EPERM)
	_, err = e.keys.GetUsage(bg, &keystorev1.GetUsageRequest{App: "Bad App"})
	wantCode(t, "GetUsage of a malformed app", err, provider.EINVAL)
	if r := e.audit.last(t); r.Op != "keys.get-usage" || r.Result != "EINVAL" || r.Detail != "" {
		t.Fatalf("record of a refused GetUsage %+v (no caller-supplied text in the detail)", r)
	}

	o := operatorEnv(t)
	o.createFor(t, "alice/p/k", provider.Ed25519)
	u, err = o.keys.GetUsage(bg, &keystorev1.GetUsageRequest{App: "alice"})
	mustOK(t, "operator GetUsage", err)
	if u.GetApp() != "alice" || u.GetKeys() != 1 || u.GetStoreValues() != 0 {
		t.Fatalf("operator GetUsage of alice = %v", u)
	}
}

// Every version of a decrypt key reports its seal count and budget; a
// sign key's report none.
func TestSealCountsInMetadata(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "box/k"})
	mustOK(t, "Create", err)
	for range 3 {
		_, err := e.keys.Seal(bg, &keystorev1.SealRequest{Key: "box/k", Plaintext: []byte("x")})
		mustOK(t, "Seal", err)
	}
	gr, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "box/k"})
	mustOK(t, "Get", err)
	if v := gr.GetKey().GetVersions()[0]; v.GetSeals() != 3 || v.GetSealLimit() != alg.SealLimit192 {
		t.Fatalf("v1 seals %d of %d, want 3 of %d", v.GetSeals(), v.GetSealLimit(), uint64(alg.SealLimit192))
	}
	cr, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	if v := cr.GetKey().GetVersions()[0]; v.GetSeals() != 0 || v.GetSealLimit() != 0 {
		t.Fatalf("sign key: seals %d of %d, want none", v.GetSeals(), v.GetSealLimit())
	}
}

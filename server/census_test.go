package server

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// TestCensusMetrics: keystored_keys counts the keys by app and state and
// keystored_quota_used/limit show each app's quota use; a scrape within
// CensusInterval (by the server's clock) reuses the last count.
func TestCensusMetrics(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, k := range []string{"sig/a", "sig/b"} {
		_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
		mustOK(t, "Create", err)
	}
	_, err := e.keys.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: "sig/b"})
	mustOK(t, "Revoke", err)
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v", Value: []byte("12345")})
	mustOK(t, "Put", err)
	e.createFor(t, "bob/sig/k", provider.Ed25519)

	want := func(body string) {
		t.Helper()
		if err := testutil.GatherAndCompare(e.srv.Registry(), strings.NewReader(body), MetricKeys, MetricQuotaUsed, MetricQuotaLimit); err != nil {
			t.Error(err)
		}
	}
	const head = `# HELP keystored_keys Keys in storage by app and state (unreadable: metadata that cannot be read); refreshed at most every 30 s.
# TYPE keystored_keys gauge
`
	const quotas = `# HELP keystored_quota_limit Each app's quota, by resource (keys, store_values, store_bytes).
# TYPE keystored_quota_limit gauge
keystored_quota_limit{app="alice",resource="keys"} 1000
keystored_quota_limit{app="alice",resource="store_bytes"} 4.194304e+06
keystored_quota_limit{app="alice",resource="store_values"} 1024
keystored_quota_limit{app="bob",resource="keys"} 1000
keystored_quota_limit{app="bob",resource="store_bytes"} 4.194304e+06
keystored_quota_limit{app="bob",resource="store_values"} 1024
`
	used := func(aliceKeys int) string {
		return `# HELP keystored_quota_used What each app holds against its quota, by resource (keys in any state, store_values, store_bytes); refreshed at most every 30 s.
# TYPE keystored_quota_used gauge
keystored_quota_used{app="alice",resource="keys"} ` + string(rune('0'+aliceKeys)) + `
keystored_quota_used{app="alice",resource="store_bytes"} 5
keystored_quota_used{app="alice",resource="store_values"} 1
keystored_quota_used{app="bob",resource="keys"} 1
keystored_quota_used{app="bob",resource="store_bytes"} 0
keystored_quota_used{app="bob",resource="store_values"} 0
`
	}
	keys := func(aliceActive int) string {
		return head + `keystored_keys{app="alice",state="active"} ` + string(rune('0'+aliceActive)) + `
keystored_keys{app="alice",state="destroyed"} 0
keystored_keys{app="alice",state="revoked"} 1
keystored_keys{app="alice",state="unreadable"} 0
keystored_keys{app="bob",state="active"} 1
keystored_keys{app="bob",state="destroyed"} 0
keystored_keys{app="bob",state="revoked"} 0
keystored_keys{app="bob",state="unreadable"} 0
`
	}
	want(keys(1) + quotas + used(2))
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/c", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	want(keys(1) + quotas + used(2)) // cached
	e.clock.Advance(CensusInterval)
	want(keys(2) + quotas + used(3))
	if n := e.audit.count(); n != 6 {
		t.Errorf("%d audit records, want 6 (five requests and bob's in-process create; scrapes write none)", n)
	}
}

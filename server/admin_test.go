package server

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/software"
)

// kekFileEnv is an env over a software provider with a KEK file, this
// process's uid being app "alice" and, when operator is set, an operator.
func kekFileEnv(t *testing.T, operator bool) (*env, keystorev1.AdminClient) {
	t.Helper()
	var ops []uint32
	if operator {
		ops = []uint32{myUID()}
	}
	id, err := NewIdentity(map[uint32]string{myUID(): "alice"}, ops, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	kekPath := filepath.Join(t.TempDir(), "kek")
	e := newEnv(t, envOpts{identity: &id, wrap: func(provider.Provider) provider.Provider {
		p, err := software.New(software.Config{KEKFile: kekPath, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}})
	return e, keystorev1.NewAdminClient(e.conn)
}

// TestAdminRotateWrappingKey: the Admin service rotates the KEK for an
// operator (one audit record, with the fingerprints and counts), reports
// it in WrappingKeyStatus, and refuses an app (EPERM, audited) and a
// provider that cannot rotate (ENOTSUP).
func TestAdminRotateWrappingKey(t *testing.T) {
	e, admin := kekFileEnv(t, true)
	for _, k := range []string{"sig/a", "sig/b"} {
		_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
		mustOK(t, "Create", err)
	}
	st, err := admin.WrappingKeyStatus(bg, &keystorev1.WrappingKeyStatusRequest{})
	mustOK(t, "WrappingKeyStatus", err)
	if st.GetCurrent() == "" || st.GetPending() != "" || !st.GetRotatable() || !slices.Equal(st.GetProviderWrappingKeys(), []string{st.GetCurrent()}) {
		t.Fatalf("status before = %v", st)
	}
	n := e.audit.count()
	r, err := admin.RotateWrappingKey(bg, &keystorev1.RotateWrappingKeyRequest{})
	mustOK(t, "RotateWrappingKey", err)
	if r.GetFrom() != st.GetCurrent() || r.GetTo() == "" || r.GetTo() == r.GetFrom() || r.GetKeys() != 2 || r.GetRewrapped() != 2 {
		t.Fatalf("rotation = %v", r)
	}
	// Written ahead before any change, then the outcome with the counts.
	recs := e.audit.records()[n:]
	if len(recs) != 2 || recs[0].Op != "admin.kek-rotate" || recs[0].Result != "ok" || recs[1].Op != "admin.kek-rotate" || recs[1].Result != "ok" ||
		!strings.Contains(recs[1].Detail, r.GetFrom()+" -> "+r.GetTo()+": 2 keys, 2 handles rewrapped") {
		t.Fatalf("audit records of the rotation: %+v, want admin.kek-rotate written ahead, then its outcome naming both KEKs and the counts", recs)
	}
	st, err = admin.WrappingKeyStatus(bg, &keystorev1.WrappingKeyStatusRequest{})
	mustOK(t, "WrappingKeyStatus", err)
	if st.GetCurrent() != r.GetTo() || st.GetPending() != "" {
		t.Fatalf("status after = %v", st)
	}
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/a", Message: []byte("m")})
	mustOK(t, "Sign after the rotation", err)

	app, adminApp := kekFileEnv(t, false)
	_, err = adminApp.RotateWrappingKey(bg, &keystorev1.RotateWrappingKeyRequest{})
	wantCode(t, "RotateWrappingKey by an app", err, provider.EPERM)
	if rec := app.audit.last(t); rec.Op != "admin.kek-rotate" || rec.Result != "EPERM" {
		t.Fatalf("record %+v, want admin.kek-rotate EPERM", rec)
	}
	_, err = adminApp.WrappingKeyStatus(bg, &keystorev1.WrappingKeyStatusRequest{})
	wantCode(t, "WrappingKeyStatus by an app", err, provider.EPERM)

	id, err := NewIdentity(map[uint32]string{myUID(): "alice"}, []uint32{myUID()}, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	bytesKEK := newEnv(t, envOpts{identity: &id})
	_, err = keystorev1.NewAdminClient(bytesKEK.conn).RotateWrappingKey(bg, &keystorev1.RotateWrappingKeyRequest{})
	wantCode(t, "RotateWrappingKey with KEK bytes", err, provider.ENOTSUP)
}

package server

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// TestKeysHappyPath drives every Keys RPC once through a real Unix socket.
func TestKeysHappyPath(t *testing.T) {
	e := newEnv(t, envOpts{})
	k := e.keys

	cr, err := k.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/main", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	m := cr.GetKey()
	if m.GetId() != "alice/sig/main" || m.GetAlgorithm() != "ed25519" || m.GetState() != keystorev1.KeyState_KEY_STATE_ACTIVE ||
		m.GetCurrentVersion() != 1 || len(m.GetVersions()) != 1 || m.GetUses()[0] != "sign" || m.GetInsecure() {
		t.Fatalf("Create metadata = %v", m)
	}
	if m.GetCreated() == nil || !m.GetCreated().AsTime().Equal(testTime) {
		t.Errorf("created = %v, want %v (from the injected clock)", m.GetCreated(), testTime)
	}
	// The full form names the same key.
	gr, err := k.Get(bg, &keystorev1.GetKeyRequest{Key: "alice/sig/main"})
	mustOK(t, "Get", err)
	if gr.GetKey().GetId() != "alice/sig/main" {
		t.Fatalf("Get id = %q", gr.GetKey().GetId())
	}

	msg := []byte("hello keystored")
	sr, err := k.Sign(bg, &keystorev1.SignRequest{Key: "sig/main", Message: msg})
	mustOK(t, "Sign", err)
	if sr.GetKey() != "alice/sig/main" || sr.GetVersion() != 1 || len(sr.GetSignature()) != ed25519.SignatureSize {
		t.Fatalf("Sign = %v", sr)
	}
	pk, err := k.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/main"})
	mustOK(t, "PublicKey", err)
	if pk.GetVersion() != 1 || pk.GetAlgorithm() != "ed25519" || !ed25519.Verify(pk.GetPublicKey(), msg, sr.GetSignature()) {
		t.Fatalf("PublicKey = %v does not verify the signature with crypto/ed25519", pk)
	}
	vr, err := k.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/main", Version: 1, Message: msg, Signature: sr.GetSignature()})
	mustOK(t, "Verify", err)
	if !vr.GetValid() {
		t.Fatal("Verify of a good signature: valid = false")
	}

	rr, err := k.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "sig/main"})
	mustOK(t, "Rotate", err)
	if rr.GetKey().GetCurrentVersion() != 2 || rr.GetKey().GetVersions()[0].GetState() != keystorev1.VersionState_VERSION_STATE_RETIRED {
		t.Fatalf("Rotate = %v", rr.GetKey())
	}
	sr2, err := k.Sign(bg, &keystorev1.SignRequest{Key: "sig/main", Message: msg})
	mustOK(t, "Sign after rotate", err)
	if sr2.GetVersion() != 2 {
		t.Fatalf("Sign after rotate: version %d, want 2", sr2.GetVersion())
	}
	// The old version still verifies what it signed.
	vr, err = k.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/main", Version: 1, Message: msg, Signature: sr.GetSignature()})
	mustOK(t, "Verify v1 after rotate", err)
	if !vr.GetValid() {
		t.Fatal("v1 signature no longer verifies after rotation")
	}
	pk1, err := k.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/main", Version: 1})
	mustOK(t, "PublicKey v1", err)
	if !bytes.Equal(pk1.GetPublicKey(), pk.GetPublicKey()) {
		t.Fatal("PublicKey@1 changed after rotation")
	}

	rv, err := k.RevokeVersion(bg, &keystorev1.RevokeKeyVersionRequest{Key: "sig/main", Version: 1})
	mustOK(t, "RevokeVersion", err)
	if rv.GetKey().GetVersions()[0].GetState() != keystorev1.VersionState_VERSION_STATE_REVOKED {
		t.Fatalf("RevokeVersion: v1 state %v", rv.GetKey().GetVersions()[0].GetState())
	}
	sp, err := k.SetPolicy(bg, &keystorev1.SetKeyPolicyRequest{Key: "sig/main", Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}})
	mustOK(t, "SetPolicy", err)
	if sp.GetKey().GetPolicy().GetRotationPeriodSeconds() != 3600 {
		t.Fatalf("SetPolicy: policy %v", sp.GetKey().GetPolicy())
	}

	// A decrypt key: seal, unseal, rewrap after a rotation.
	_, err = k.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/data"})
	mustOK(t, "Create default algorithm", err)
	pt, aad := []byte("secret payload"), []byte("context")
	se, err := k.Seal(bg, &keystorev1.SealRequest{Key: "enc/data", Plaintext: pt, Aad: aad})
	mustOK(t, "Seal", err)
	if se.GetVersion() != 1 {
		t.Fatalf("Seal version %d", se.GetVersion())
	}
	un, err := k.Unseal(bg, &keystorev1.UnsealRequest{Key: "enc/data", Sealed: se.GetSealed(), Aad: aad})
	mustOK(t, "Unseal", err)
	if !bytes.Equal(un.GetPlaintext(), pt) || un.GetVersion() != 1 {
		t.Fatalf("Unseal = %q v%d", un.GetPlaintext(), un.GetVersion())
	}
	_, err = k.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "enc/data"})
	mustOK(t, "Rotate enc", err)
	rw, err := k.Rewrap(bg, &keystorev1.RewrapRequest{Key: "enc/data", Sealed: se.GetSealed(), Aad: aad})
	mustOK(t, "Rewrap", err)
	if rw.GetVersion() != 2 {
		t.Fatalf("Rewrap version %d, want 2", rw.GetVersion())
	}
	un, err = k.Unseal(bg, &keystorev1.UnsealRequest{Key: "enc/data", Sealed: rw.GetSealed(), Aad: aad})
	mustOK(t, "Unseal rewrapped", err)
	if !bytes.Equal(un.GetPlaintext(), pt) || un.GetVersion() != 2 {
		t.Fatalf("Unseal rewrapped = %q v%d", un.GetPlaintext(), un.GetVersion())
	}

	lr, err := k.List(bg, &keystorev1.ListKeysRequest{PageSize: 1})
	mustOK(t, "List", err)
	if len(lr.GetKeys()) != 1 || lr.GetKeys()[0].GetId() != "alice/enc/data" || lr.GetNextPageToken() == "" {
		t.Fatalf("List page 1 = %v", lr)
	}
	lr, err = k.List(bg, &keystorev1.ListKeysRequest{PageSize: 1, PageToken: lr.GetNextPageToken()})
	mustOK(t, "List page 2", err)
	if len(lr.GetKeys()) != 1 || lr.GetKeys()[0].GetId() != "alice/sig/main" {
		t.Fatalf("List page 2 = %v", lr)
	}

	rk, err := k.Revoke(bg, &keystorev1.RevokeKeyRequest{Key: "sig/main"})
	mustOK(t, "Revoke", err)
	if rk.GetKey().GetState() != keystorev1.KeyState_KEY_STATE_REVOKED || rk.GetKey().GetRevoked() == nil {
		t.Fatalf("Revoke = %v", rk.GetKey())
	}
	_, err = k.Sign(bg, &keystorev1.SignRequest{Key: "sig/main", Message: msg})
	wantCode(t, "Sign after revoke", err, provider.EKEYREVOKED)
	dk, err := k.Destroy(bg, &keystorev1.DestroyKeyRequest{Key: "sig/main"})
	mustOK(t, "Destroy", err)
	if dk.GetKey().GetState() != keystorev1.KeyState_KEY_STATE_DESTROYED {
		t.Fatalf("Destroy = %v", dk.GetKey())
	}
	_, err = k.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/main", Algorithm: "ed25519"})
	wantCode(t, "Create over a destroyed key", err, provider.EALREADY)
}

// TestVerifyInvalidIsNotAnError: a signature that does not verify is
// valid=false with an OK status, audited as ok with a note; other errors
// stay errors.
func TestVerifyInvalidIsNotAnError(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	sr, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
	mustOK(t, "Sign", err)
	bad := append([]byte(nil), sr.GetSignature()...)
	bad[0] ^= 1
	for _, c := range []struct {
		name string
		msg  []byte
		sig  []byte
	}{
		{"flipped bit", []byte("m"), bad},
		{"other message", []byte("n"), sr.GetSignature()},
		{"empty signature", []byte("m"), nil},
		{"short signature", []byte("m"), sr.GetSignature()[:10]},
	} {
		vr, err := e.keys.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: c.msg, Signature: c.sig})
		if err != nil {
			t.Fatalf("%s: got error %v, want valid=false", c.name, err)
		}
		if vr.GetValid() {
			t.Fatalf("%s: valid = true", c.name)
		}
		if r := e.audit.last(t); r.Result != "ok" || r.Detail != noteInvalid || r.Op != "keys.verify" {
			t.Fatalf("%s: audit record %+v, want ok with detail %q", c.name, r, noteInvalid)
		}
	}
	_, err = e.keys.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/k", Version: 2, Message: []byte("m"), Signature: sr.GetSignature()})
	wantCode(t, "Verify of a missing version", err, provider.ENOENT)
	_, err = e.keys.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/nope", Version: 1, Message: []byte("m"), Signature: sr.GetSignature()})
	wantCode(t, "Verify of a missing key", err, provider.ENOENT)
}

// TestVersionBounds: versions arrive as int64 and must be 1..2^32-1 (0
// only where the proto says it means the current version).
func TestVersionBounds(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	for _, v := range []int64{-1, -1 << 63, 1 << 32, 1<<32 + 1, 1<<63 - 1} {
		_, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/k", Version: v})
		wantCode(t, "PublicKey version", err, provider.EINVAL)
		_, err = e.keys.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/k", Version: v, Message: []byte("m"), Signature: make([]byte, 64)})
		wantCode(t, "Verify version", err, provider.EINVAL)
		_, err = e.keys.RevokeVersion(bg, &keystorev1.RevokeKeyVersionRequest{Key: "sig/k", Version: v})
		wantCode(t, "RevokeVersion version", err, provider.EINVAL)
	}
	_, err = e.keys.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/k", Version: 0, Message: []byte("m"), Signature: make([]byte, 64)})
	wantCode(t, "Verify version 0", err, provider.EINVAL)
	_, err = e.keys.RevokeVersion(bg, &keystorev1.RevokeKeyVersionRequest{Key: "sig/k", Version: 0})
	wantCode(t, "RevokeVersion version 0", err, provider.EINVAL)
	pk, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/k", Version: 0})
	mustOK(t, "PublicKey version 0 (current)", err)
	if pk.GetVersion() != 1 {
		t.Fatalf("PublicKey version 0 → v%d, want 1", pk.GetVersion())
	}
	_, err = e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/k", Version: 1<<32 - 1})
	wantCode(t, "PublicKey of version 2^32-1 (valid, absent)", err, provider.ENOENT)
}

// TestKeyNames: both name forms; malformed names are EINVAL before any
// core call.
func TestKeyNames(t *testing.T) {
	e := newEnv(t, envOpts{})
	long := string(bytes.Repeat([]byte("a"), 65))
	for _, name := range []string{
		"", "x", "a/b/c/d", "/a", "a/", "../x", "a/..", "a/./b", "A/b", "a/b c", "a/b\x00", "a/\n", "a/é",
		"a/" + long, string(bytes.Repeat([]byte("a/"), 200)), "alice/../bob",
	} {
		_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: name, Algorithm: "ed25519"})
		wantCode(t, "Create "+name, err, provider.EINVAL)
	}
	if e.mem.Snapshot() == nil {
		t.Fatal("no snapshot")
	}
	for name := range e.mem.Snapshot() {
		if name != "keystore/MANIFEST" {
			t.Fatalf("malformed names left %s in storage", name)
		}
	}
}

// A page whose keys would exceed MaxListBytes is cut after the last key
// that fits and continues from there; unreadable keys land on the page
// that covers them.
func TestListResponseIsBounded(t *testing.T) {
	big := make([]byte, MaxListBytes/3)
	var page core.ListPage
	for _, name := range []string{"a", "b", "c", "d"} {
		id, err := provider.NewKeyID("app", "p", name)
		if err != nil {
			t.Fatal(err)
		}
		page.Keys = append(page.Keys, core.Metadata{ID: id, Algorithm: provider.Ed25519, Use: provider.UseSign,
			State: core.StateActive, Current: 1, Versions: []core.VersionInfo{{Version: 1, State: core.VersionPrimary, PublicKey: big}}})
	}
	late, _ := provider.NewKeyID("app", "p", "cz")
	early, _ := provider.NewKeyID("app", "p", "aa")
	page.Unreadable = []core.UnreadableKey{{ID: early, Err: provider.ErrIO}, {ID: late, Err: provider.ErrIO}}
	out := listResponse(page, testTime)
	if len(out.Keys) != 2 || out.NextPageToken != "app/p/b" {
		t.Fatalf("got %d keys, next %q; want 2 keys and next app/p/b", len(out.Keys), out.NextPageToken)
	}
	if len(out.Unreadable) != 1 || out.Unreadable[0].Id != "app/p/aa" {
		t.Fatalf("unreadable %v, want only app/p/aa", out.Unreadable)
	}
	if size := proto.Size(out); size > MaxResponseBytes {
		t.Fatalf("response of %d bytes", size)
	}
	// A single key over the budget is still returned alone.
	one := core.ListPage{Keys: page.Keys[:1], NextPageToken: "x"}
	one.Keys[0].Versions[0].PublicKey = make([]byte, MaxListBytes+1)
	if out := listResponse(one, testTime); len(out.Keys) != 1 || out.NextPageToken != "x" {
		t.Fatalf("single large key: %d keys, next %q", len(out.Keys), out.NextPageToken)
	}
}

package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/testseed"
)

// knownHMAC returns HMAC-SHA-256 of msg under the key the testseed
// provider (seed testSeed) holds for version v of the hmac-sha256 key id.
func knownHMAC(t *testing.T, id string, v provider.Version, msg []byte) []byte {
	t.Helper()
	kid, err := provider.ParseKeyID(id)
	if err != nil {
		t.Fatal(err)
	}
	known, err := testseed.InsecureKnownSecrets(testSeed, provider.KeyRef{ID: kid, Version: v, Algorithm: provider.HMACSHA256, Use: provider.UseMAC, Provider: testseed.Name})
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, known[0])
	_, _ = m.Write(msg) // a hash.Hash's Write never fails
	return m.Sum(nil)
}

// TestMac: a mac key created by use alone is hmac-sha256 with uses
// ["mac"]; its tag is HMAC-SHA-256 under the key (computed here with
// crypto/hmac from the testseed provider's known key); VerifyMac accepts
// it, answers valid=false (OK status, audited "tag invalid") for any other
// tag or message, and after a rotation still accepts the old version's tag
// until that version is revoked (EKEYREVOKED). Versions outside
// 1..2^32-1 are EINVAL, a missing one ENOENT; messages over 1 MiB
// EMSGSIZE; wrong uses EPERM both ways.
func TestMac(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	cr, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "mac/k", Use: "mac"})
	mustOK(t, "Create use mac", err)
	if m := cr.GetKey(); m.GetAlgorithm() != string(provider.HMACSHA256) || len(m.GetUses()) != 1 || m.GetUses()[0] != "mac" ||
		len(m.GetVersions()) != 1 || m.GetVersions()[0].GetPublicKey() != nil {
		t.Fatalf("Create use mac = %v, want hmac-sha256 with uses [mac] and no public key", m)
	}
	msg := []byte("webhook body")
	mr, err := e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: msg})
	mustOK(t, "Mac", err)
	if want := knownHMAC(t, "alice/mac/k", 1, msg); mr.GetKey() != "alice/mac/k" || mr.GetVersion() != 1 || !bytes.Equal(mr.GetTag(), want) {
		t.Fatalf("Mac = %v; want version 1 and tag %x (crypto/hmac)", mr, want)
	}
	if r := e.audit.last(t); r.Op != "keys.mac" || r.Result != "ok" || r.Key != "alice/mac/k" || r.Version != 1 {
		t.Fatalf("record %+v, want keys.mac ok of alice/mac/k@1", r)
	}
	for _, n := range []int{0, provider.MaxMACMessage} {
		big := bytes.Repeat([]byte{'x'}, n)
		mr, err := e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: big})
		mustOK(t, fmt.Sprintf("Mac of %d bytes", n), err)
		if !bytes.Equal(mr.GetTag(), knownHMAC(t, "alice/mac/k", 1, big)) {
			t.Errorf("Mac of %d bytes is not HMAC-SHA-256 of it", n)
		}
	}
	_, err = e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: make([]byte, provider.MaxMACMessage+1)})
	wantCode(t, "Mac of MaxMACMessage+1", err, provider.EMSGSIZE)
	_, err = e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: make([]byte, 2<<20)})
	wantCode(t, "Mac of 2 MiB (the receive limit)", err, provider.EMSGSIZE)

	verify := func(v int64, m, tag []byte) (bool, error) {
		r, err := e.keys.VerifyMac(bg, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: v, Message: m, Tag: tag})
		return r.GetValid(), err
	}
	ok, err := verify(1, msg, mr.GetTag())
	mustOK(t, "VerifyMac", err)
	if !ok {
		t.Fatal("VerifyMac of the tag: valid = false")
	}
	if r := e.audit.last(t); r.Op != "keys.verify-mac" || r.Result != "ok" || r.Detail != "" || r.Version != 1 {
		t.Fatalf("record %+v, want keys.verify-mac ok of version 1", r)
	}
	bad := bytes.Clone(mr.GetTag())
	bad[len(bad)-1] ^= 1
	for name, tc := range map[string]struct{ msg, tag []byte }{
		"flipped bit":   {msg, bad},
		"other message": {[]byte("other body"), mr.GetTag()},
		"empty tag":     {msg, nil},
		"truncated tag": {msg, mr.GetTag()[:16]},
		"longer tag":    {msg, append(bytes.Clone(mr.GetTag()), 0)},
	} {
		ok, err := verify(1, tc.msg, tc.tag)
		if err != nil || ok {
			t.Fatalf("VerifyMac, %s: valid %v, %v; want false with no error", name, ok, err)
		}
		if r := e.audit.last(t); r.Op != "keys.verify-mac" || r.Result != "ok" || r.Detail != noteInvalidTag {
			t.Fatalf("VerifyMac, %s: record %+v, want ok with detail %q", name, r, noteInvalidTag)
		}
	}
	_, err = verify(1, msg, make([]byte, provider.MaxMAC+1))
	wantCode(t, "VerifyMac of a tag over MaxMAC", err, provider.EMSGSIZE)
	for _, v := range []int64{0, -1, -1 << 63, 1 << 32, 1<<63 - 1} {
		_, err := verify(v, msg, mr.GetTag())
		wantCode(t, fmt.Sprintf("VerifyMac version %d", v), err, provider.EINVAL)
	}
	_, err = verify(2, msg, mr.GetTag())
	wantCode(t, "VerifyMac of a version the key does not have", err, provider.ENOENT)

	// Rotation: the new primary tags, the old version still verifies.
	_, err = e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "mac/k"})
	mustOK(t, "Rotate", err)
	mr2, err := e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: msg})
	mustOK(t, "Mac after rotate", err)
	if mr2.GetVersion() != 2 || bytes.Equal(mr2.GetTag(), mr.GetTag()) || !bytes.Equal(mr2.GetTag(), knownHMAC(t, "alice/mac/k", 2, msg)) {
		t.Fatalf("Mac after rotate = %v", mr2)
	}
	if ok, err := verify(1, msg, mr.GetTag()); err != nil || !ok {
		t.Fatalf("VerifyMac of v1's tag after rotate: %v, %v", ok, err)
	}
	if ok, err := verify(2, msg, mr.GetTag()); err != nil || ok {
		t.Fatalf("VerifyMac of v1's tag as v2: %v, %v; want false", ok, err)
	}
	_, err = e.keys.RevokeVersion(bg, &keystorev1.RevokeKeyVersionRequest{Key: "mac/k", Version: 1})
	mustOK(t, "RevokeVersion 1", err)
	_, err = verify(1, msg, mr.GetTag())
	wantCode(t, "VerifyMac of a revoked version", err, provider.EKEYREVOKED)

	// Uses: a mac key neither signs, seals nor has a public key; a sign
	// key does not MAC.
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "mac/k", Message: msg})
	wantCode(t, "Sign with a mac key", err, provider.EPERM)
	_, err = e.keys.Seal(bg, &keystorev1.SealRequest{Key: "mac/k", Plaintext: msg})
	wantCode(t, "Seal with a mac key", err, provider.EPERM)
	_, err = e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "mac/k"})
	wantCode(t, "PublicKey of a mac key", err, provider.EPERM)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Use: "sign"})
	mustOK(t, "Create use sign", err)
	_, err = e.keys.Mac(bg, &keystorev1.MacRequest{Key: "sig/k", Message: msg})
	wantCode(t, "Mac with a sign key", err, provider.EPERM)
	_, err = e.keys.VerifyMac(bg, &keystorev1.VerifyMacRequest{Key: "sig/k", Version: 1, Message: msg, Tag: mr.GetTag()})
	wantCode(t, "VerifyMac with a sign key", err, provider.EPERM)
	_, err = e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/none", Message: msg})
	wantCode(t, "Mac with a missing key", err, provider.ENOENT)
	// Another app's key, existing or not: EPERM, as for sign.
	e.createFor(t, "bob/mac/k", provider.HMACSHA256)
	for _, key := range []string{"bob/mac/k", "bob/mac/none"} {
		_, err = e.keys.Mac(bg, &keystorev1.MacRequest{Key: key, Message: msg})
		wantCode(t, "Mac with "+key, err, provider.EPERM)
		_, err = e.keys.VerifyMac(bg, &keystorev1.VerifyMacRequest{Key: key, Version: 1, Message: msg, Tag: mr.GetTag()})
		wantCode(t, "VerifyMac with "+key, err, provider.EPERM)
	}
}

// TestCreateUse: CreateKeyRequest.use picks the provider's first
// algorithm of the use (core.DefaultAlgorithms) when no algorithm is
// given, must be the algorithm's own use when one is, and is EINVAL when
// it names no use; empty is decrypt.
func TestCreateUse(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		key, alg, use string
		wantAlg       provider.Algorithm
		wantUse       string
	}{
		{"d/empty", "", "", provider.XChaCha20Poly1305, "decrypt"},
		{"d/decrypt", "", "decrypt", provider.XChaCha20Poly1305, "decrypt"},
		{"d/sign", "", "sign", provider.Ed25519, "sign"},
		{"d/mac", "", "mac", provider.HMACSHA256, "mac"},
		{"d/hmac512", "hmac-sha512", "mac", provider.HMACSHA512, "mac"},
		{"d/hmac384", "hmac-sha384", "", provider.HMACSHA384, "mac"},
		{"d/ecdsa", "ecdsa-p384-sha384", "sign", provider.ECDSAP384, "sign"},
	} {
		cr, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: tc.key, Algorithm: tc.alg, Use: tc.use})
		mustOK(t, "Create "+tc.key, err)
		if m := cr.GetKey(); m.GetAlgorithm() != string(tc.wantAlg) || len(m.GetUses()) != 1 || m.GetUses()[0] != tc.wantUse {
			t.Errorf("Create %s (algorithm %q, use %q) = %s %v, want %s [%s]", tc.key, tc.alg, tc.use, m.GetAlgorithm(), m.GetUses(), tc.wantAlg, tc.wantUse)
		}
	}
	for name, req := range map[string]*keystorev1.CreateKeyRequest{
		"unknown use":        {Key: "e/unknown", Use: "encrypt"},
		"upper-case use":     {Key: "e/upper", Use: "MAC"},
		"long use":           {Key: "e/long", Use: string(bytes.Repeat([]byte("m"), 1<<12))},
		"sign with a mac":    {Key: "e/sign-hmac", Algorithm: "hmac-sha256", Use: "sign"},
		"mac with an aead":   {Key: "e/mac-aead", Algorithm: "aes-256-gcm", Use: "mac"},
		"decrypt with ecdsa": {Key: "e/dec-ecdsa", Algorithm: "ecdsa-p256-sha256", Use: "decrypt"},
	} {
		_, err := e.keys.Create(bg, req)
		wantCode(t, "Create, "+name, err, provider.EINVAL)
	}
}

// TestMacBatch: results in order, per-item failures in their places, the
// tags are HMAC-SHA-256 of each item's own message; VerifyMacBatch answers
// a mismatched tag as valid=false (not a failed item) and counts them in
// the audit detail.
func TestMacBatch(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "mac/k", Algorithm: "hmac-sha256"})
	mustOK(t, "Create", err)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create sign", err)

	items := make([]*keystorev1.MacRequest, 200)
	for i := range items {
		items[i] = &keystorev1.MacRequest{Key: "mac/k", Message: []byte(fmt.Sprintf("message %d", i))}
	}
	items[3] = &keystorev1.MacRequest{Key: "sig/k", Message: []byte("m")}                              // wrong use
	items[50] = &keystorev1.MacRequest{Key: "mac/missing", Message: []byte("m")}                       // absent
	items[100] = &keystorev1.MacRequest{Key: "Bad", Message: []byte("m")}                              // malformed
	items[199] = &keystorev1.MacRequest{Key: "mac/k", Message: make([]byte, provider.MaxMACMessage+1)} // too large
	want := map[int]string{3: "EPERM", 50: "ENOENT", 100: "EINVAL", 199: "EMSGSIZE"}
	r, err := e.keys.MacBatch(bg, &keystorev1.MacBatchRequest{Items: items})
	mustOK(t, "MacBatch", err)
	if len(r.GetResults()) != len(items) {
		t.Fatalf("%d results for %d items", len(r.GetResults()), len(items))
	}
	var verify []*keystorev1.VerifyMacRequest
	for i, res := range r.GetResults() {
		if reason, bad := want[i]; bad {
			if res.GetResponse() != nil || res.GetError().GetReason() != reason || res.GetError().GetMessage() == "" {
				t.Fatalf("item %d: %v, want error %s", i, res, reason)
			}
			continue
		}
		if res.GetError() != nil || res.GetResponse().GetVersion() != 1 ||
			!bytes.Equal(res.GetResponse().GetTag(), knownHMAC(t, "alice/mac/k", 1, items[i].GetMessage())) {
			t.Fatalf("item %d: %v is not the tag of its own message (results out of order?)", i, res)
		}
		verify = append(verify, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: items[i].GetMessage(), Tag: res.GetResponse().GetTag()})
	}
	if rec := e.audit.last(t); rec.Op != "keys.mac-batch" || rec.Items != len(items) || rec.Failed != len(want) || rec.Result != "ok" {
		t.Fatalf("record %+v", rec)
	}

	verify[1].Tag = verify[2].Tag                 // another message's tag: invalid
	verify[4].Message = []byte("changed message") // invalid
	verify[5].Version = 0                         // EINVAL
	verify[6].Key = "sig/k"                       // EPERM
	vr, err := e.keys.VerifyMacBatch(bg, &keystorev1.VerifyMacBatchRequest{Items: verify})
	mustOK(t, "VerifyMacBatch", err)
	for i, res := range vr.GetResults() {
		switch i {
		case 1, 4:
			if res.GetError() != nil || res.GetResponse() == nil || res.GetResponse().GetValid() {
				t.Fatalf("verify item %d: %v, want valid=false", i, res)
			}
		case 5, 6:
			if reason := map[int]string{5: "EINVAL", 6: "EPERM"}[i]; res.GetError().GetReason() != reason {
				t.Fatalf("verify item %d: %v, want %s", i, res, reason)
			}
		default:
			if !res.GetResponse().GetValid() {
				t.Fatalf("verify item %d: %v, want valid", i, res)
			}
		}
	}
	if rec := e.audit.last(t); rec.Op != "keys.verify-mac-batch" || rec.Items != len(verify) || rec.Failed != 2 || rec.Detail != "2 tags invalid" {
		t.Fatalf("record %+v, want keys.verify-mac-batch with 2 failed and detail %q", rec, "2 tags invalid")
	}
	_, err = e.keys.MacBatch(bg, &keystorev1.MacBatchRequest{})
	wantCode(t, "empty MacBatch", err, provider.EINVAL)
	_, err = e.keys.VerifyMacBatch(bg, &keystorev1.VerifyMacBatchRequest{Items: make([]*keystorev1.VerifyMacRequest, MaxBatchItems+1)})
	wantCode(t, "VerifyMacBatch of 1025", err, provider.EINVAL)
	big := make([]*keystorev1.MacRequest, 9)
	for i := range big {
		big[i] = &keystorev1.MacRequest{Key: "mac/k", Message: make([]byte, provider.MaxMACMessage)}
	}
	_, err = e.keys.MacBatch(bg, &keystorev1.MacBatchRequest{Items: big})
	wantCode(t, "MacBatch over MaxBatchBytes", err, provider.EMSGSIZE)
}

// TestMacReceiveLimits: the MAC methods' receive limits follow their
// payload bounds.
func TestMacReceiveLimits(t *testing.T) {
	for op, want := range map[string]int64{
		"keys.mac":              provider.MaxMACMessage + framing,
		"keys.verify-mac":       provider.MaxMACMessage + provider.MaxMAC + framing,
		"keys.mac-batch":        MaxBatchBytes + framing,
		"keys.verify-mac-batch": MaxBatchBytes + framing,
	} {
		if got := ReceiveLimit(op); got != want {
			t.Errorf("ReceiveLimit(%s) = %d, want %d", op, got, want)
		}
	}
	for method, op := range map[string]string{
		keystorev1.Keys_Mac_FullMethodName:            "keys.mac",
		keystorev1.Keys_VerifyMac_FullMethodName:      "keys.verify-mac",
		keystorev1.Keys_MacBatch_FullMethodName:       "keys.mac-batch",
		keystorev1.Keys_VerifyMacBatch_FullMethodName: "keys.verify-mac-batch",
	} {
		if got := OpName(method); got != op {
			t.Errorf("OpName(%s) = %q, want %q", method, got, op)
		}
	}
}

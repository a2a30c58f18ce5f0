package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// TestSignDigest: a digest the caller computed is signed with the key's
// own hash and verifies with crypto/ecdsa and with Verify, by digest and
// by message; a request naming both a message and a digest, a digest
// without its hash, an unknown hash, another algorithm's hash or a digest
// of the wrong size is EINVAL; a key that signs whole messages only is
// EPERM.
func TestSignDigest(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/ec", Algorithm: string(provider.ECDSAP256)})
	mustOK(t, "Create ecdsa", err)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/ed", Algorithm: string(provider.Ed25519)})
	mustOK(t, "Create ed25519", err)
	msg := []byte("a file much larger than this, hashed by the caller")
	d := sha256.Sum256(msg)

	sr, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/ec", Digest: d[:], DigestHash: "sha256"})
	mustOK(t, "Sign digest", err)
	if sr.GetVersion() != 1 || sr.GetKey() != "alice/sig/ec" {
		t.Fatalf("Sign digest = %v", sr)
	}
	if r := e.audit.last(t); r.Op != "keys.sign" || r.Result != "ok" || r.Key != "alice/sig/ec" {
		t.Fatalf("record %+v", r)
	}
	pk, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/ec"})
	mustOK(t, "PublicKey", err)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pk.GetPublicKey())
	if err != nil {
		t.Fatalf("public key is not a SEC 1 P-256 point: %v", err)
	}
	if !ecdsa.VerifyASN1(pub, d[:], sr.GetSignature()) {
		t.Fatal("the digest's signature does not verify with crypto/ecdsa")
	}
	for name, req := range map[string]*keystorev1.VerifyRequest{
		"by digest":  {Key: "sig/ec", Version: 1, Digest: d[:], DigestHash: "sha256", Signature: sr.GetSignature()},
		"by message": {Key: "sig/ec", Version: 1, Message: msg, Signature: sr.GetSignature()},
	} {
		vr, err := e.keys.Verify(bg, req)
		mustOK(t, "Verify "+name, err)
		if !vr.GetValid() {
			t.Errorf("Verify %s: valid = false", name)
		}
	}
	other := sha256.Sum256([]byte("another file"))
	vr, err := e.keys.Verify(bg, &keystorev1.VerifyRequest{Key: "sig/ec", Version: 1, Digest: other[:], DigestHash: "sha256", Signature: sr.GetSignature()})
	mustOK(t, "Verify of another digest", err)
	if vr.GetValid() {
		t.Error("the signature verifies over another digest")
	}

	d384 := sha512.Sum384(msg)
	for name, req := range map[string]*keystorev1.SignRequest{
		"message and digest":      {Key: "sig/ec", Message: msg, Digest: d[:], DigestHash: "sha256"},
		"message and digest hash": {Key: "sig/ec", Message: msg, DigestHash: "sha256"},
		"digest without its hash": {Key: "sig/ec", Digest: d[:]},
		"unknown hash":            {Key: "sig/ec", Digest: d[:16], DigestHash: "md5"},
		"upper-case hash name":    {Key: "sig/ec", Digest: d[:], DigestHash: "SHA256"},
		"another algorithm's":     {Key: "sig/ec", Digest: d384[:], DigestHash: "sha384"},
		"short digest":            {Key: "sig/ec", Digest: d[:31], DigestHash: "sha256"},
		"long digest":             {Key: "sig/ec", Digest: append(d[:], 0), DigestHash: "sha256"},
		"hash without a digest":   {Key: "sig/ec", DigestHash: "sha256"},
	} {
		_, err := e.keys.Sign(bg, req)
		wantCode(t, "Sign, "+name, err, provider.EINVAL)
		_, err = e.keys.Verify(bg, &keystorev1.VerifyRequest{Key: req.GetKey(), Version: 1, Message: req.GetMessage(),
			Digest: req.GetDigest(), DigestHash: req.GetDigestHash(), Signature: sr.GetSignature()})
		wantCode(t, "Verify, "+name, err, provider.EINVAL)
	}
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/ed", Digest: d[:], DigestHash: "sha256"})
	wantCode(t, "Sign a digest with ed25519", err, provider.EPERM)
	d512 := sha512.Sum512(msg)
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/ed", Digest: d512[:], DigestHash: "sha512"})
	wantCode(t, "Sign a SHA-512 digest with ed25519 (not ed25519ph)", err, provider.EPERM)

	// A batch item may be a digest too.
	br, err := e.keys.SignBatch(bg, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
		{Key: "sig/ec", Digest: d[:], DigestHash: "sha256"},
		{Key: "sig/ec", Message: msg, Digest: d[:], DigestHash: "sha256"},
	}})
	mustOK(t, "SignBatch of digests", err)
	if res := br.GetResults(); len(res) != 2 || !ecdsa.VerifyASN1(pub, d[:], res[0].GetResponse().GetSignature()) ||
		res[1].GetError().GetReason() != "EINVAL" {
		t.Fatalf("SignBatch of digests = %v", br)
	}
}

// TestSignExplicitVersion: a Sign naming a version signs with it while it
// is primary or retired, the response and the audit record name it, and
// once it is revoked it is EKEYREVOKED; a version the key never had is
// ENOENT, and one outside 0..2^32-1 EINVAL.
func TestSignExplicitVersion(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	pk1, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/k", Version: 1})
	mustOK(t, "PublicKey v1", err)
	_, err = e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "sig/k"})
	mustOK(t, "Rotate", err)
	msg := []byte("bound to version 1")

	sr, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Version: 1, Message: msg})
	mustOK(t, "Sign with retired version 1", err)
	if sr.GetVersion() != 1 || !ed25519.Verify(pk1.GetPublicKey(), msg, sr.GetSignature()) {
		t.Fatalf("Sign version 1 = v%d, and the signature verifies under v1: %v", sr.GetVersion(), ed25519.Verify(pk1.GetPublicKey(), msg, sr.GetSignature()))
	}
	if r := e.audit.last(t); r.Op != "keys.sign" || r.Version != 1 || r.Result != "ok" {
		t.Fatalf("record %+v, want keys.sign of version 1", r)
	}
	sr, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Version: 2, Message: msg})
	mustOK(t, "Sign with primary version 2", err)
	if sr.GetVersion() != 2 {
		t.Fatalf("Sign version 2 = v%d", sr.GetVersion())
	}
	sr, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: msg})
	mustOK(t, "Sign with version 0", err)
	if sr.GetVersion() != 2 {
		t.Fatalf("Sign version 0 = v%d, want the primary 2", sr.GetVersion())
	}
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Version: 3, Message: msg})
	wantCode(t, "Sign with a version the key never had", err, provider.ENOENT)
	for _, v := range []int64{-1, -1 << 63, 1 << 32, 1<<63 - 1} {
		_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Version: v, Message: msg})
		wantCode(t, "Sign version out of range", err, provider.EINVAL)
	}
	_, err = e.keys.RevokeVersion(bg, &keystorev1.RevokeKeyVersionRequest{Key: "sig/k", Version: 1})
	mustOK(t, "RevokeVersion 1", err)
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Version: 1, Message: msg})
	wantCode(t, "Sign with revoked version 1", err, provider.EKEYREVOKED)
	if r := e.audit.last(t); r.Op != "keys.sign" || r.Version != 1 || r.Result != "EKEYREVOKED" {
		t.Fatalf("record %+v, want keys.sign of version 1, EKEYREVOKED", r)
	}
	// The batch form takes the version too.
	br, err := e.keys.SignBatch(bg, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
		{Key: "sig/k", Version: 2, Message: msg}, {Key: "sig/k", Version: 1, Message: msg}}})
	mustOK(t, "SignBatch with versions", err)
	if res := br.GetResults(); res[0].GetResponse().GetVersion() != 2 || res[1].GetError().GetReason() != "EKEYREVOKED" {
		t.Fatalf("SignBatch with versions = %v", br)
	}
}

package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

// SignDigest signs the caller's digest; the daemon's Verify takes the
// message or the digest; an explicit version signs while it is active.
func TestSignDigestAndVersion(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	if _, err := c.Create(ctx, "rel/ec", client.CreateOptions{Algorithm: client.ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("a large release "), 8<<10) // 128 KiB: over the message bound
	d := sha256.Sum256(msg)
	if _, err := c.Sign(ctx, "rel/ec", msg); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("Sign(128 KiB) = %v, want ErrTooLarge", err)
	}
	sig, err := c.SignDigest(ctx, "rel/ec", crypto.SHA256, d[:])
	if err != nil || sig.Version != 1 || sig.Key != "app/rel/ec" {
		t.Fatalf("SignDigest = %+v, %v", sig, err)
	}
	pub, err := c.PublicKey(ctx, "rel/ec", 1)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pub.CryptoPublicKey()
	if err != nil || !ecdsa.VerifyASN1(k.(*ecdsa.PublicKey), d[:], sig.Signature) {
		t.Fatalf("the digest signature does not verify with crypto/ecdsa (%v)", err)
	}
	if err := c.VerifyDigest(ctx, "rel/ec", 1, crypto.SHA256, d[:], sig.Signature); err != nil {
		t.Errorf("VerifyDigest = %v", err)
	}
	other := sha256.Sum256([]byte("other"))
	if err := c.VerifyDigest(ctx, "rel/ec", 1, crypto.SHA256, other[:], sig.Signature); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("VerifyDigest(other digest) = %v, want ErrBadMessage", err)
	}
	// A short message: Sign hashes inside, VerifyDigest checks that
	// signature over the caller's digest, and the reverse.
	short := []byte("short")
	ds := sha256.Sum256(short)
	s1, err := c.Sign(ctx, "rel/ec", short)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyDigest(ctx, "rel/ec", 1, crypto.SHA256, ds[:], s1.Signature); err != nil {
		t.Errorf("VerifyDigest of Sign(message) = %v", err)
	}
	s2, err := c.SignDigest(ctx, "rel/ec", crypto.SHA256, ds[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(ctx, "rel/ec", 1, short, s2.Signature); err != nil {
		t.Errorf("Verify(message) of SignDigest = %v", err)
	}

	// Malformed inputs are refused before anything is sent.
	for name, in := range map[string]client.SignInput{
		"short digest":       {Hash: crypto.SHA256, Digest: d[:31]},
		"digest without":     {Digest: d[:]},
		"both":               {Message: short, Hash: crypto.SHA256, Digest: d[:]},
		"not a digest hash":  {Hash: crypto.SHA1, Digest: make([]byte, 20)},
		"sha384 size digest": {Hash: crypto.SHA384, Digest: d[:]},
	} {
		if _, err := c.SignWith(ctx, "rel/ec", 0, in); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("SignWith(%s) = %v, want ErrInvalid", name, err)
		}
		if err := c.VerifyWith(ctx, "rel/ec", 1, in, sig.Signature); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("VerifyWith(%s) = %v, want ErrInvalid", name, err)
		}
	}
	// The daemon refuses another hash than the algorithm's.
	d384 := make([]byte, 48)
	if _, err := c.SignDigest(ctx, "rel/ec", crypto.SHA384, d384); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("SignDigest(sha384) on P-256 = %v, want ErrInvalid", err)
	}
	// A pure Ed25519 key signs no digest.
	if _, err := c.Create(ctx, "rel/ed", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SignDigest(ctx, "rel/ed", crypto.SHA256, d[:]); !errors.Is(err, client.ErrPermission) {
		t.Errorf("SignDigest on ed25519 = %v, want ErrPermission", err)
	}

	// Explicit versions.
	if _, err := c.Rotate(ctx, "rel/ec"); err != nil {
		t.Fatal(err)
	}
	old, err := c.SignWith(ctx, "rel/ec", 1, client.SignInput{Hash: crypto.SHA256, Digest: d[:]})
	if err != nil || old.Version != 1 || !ecdsa.VerifyASN1(k.(*ecdsa.PublicKey), d[:], old.Signature) {
		t.Fatalf("SignWith(version 1, retired) = %+v, %v", old, err)
	}
	cur, err := c.SignWith(ctx, "rel/ec", 0, client.SignInput{Message: short})
	if err != nil || cur.Version != 2 {
		t.Fatalf("SignWith(version 0) = %+v, %v; want version 2", cur, err)
	}
	if _, err := c.SignWith(ctx, "rel/ec", 3, client.SignInput{Message: short}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("SignWith(version 3) = %v, want ErrNotFound", err)
	}
	if _, err := c.RevokeVersion(ctx, "rel/ec", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SignWith(ctx, "rel/ec", 1, client.SignInput{Message: short}); !errors.Is(err, client.ErrKeyRevoked) {
		t.Errorf("SignWith(revoked version 1) = %v, want ErrKeyRevoked", err)
	}
}

// Create with a use and no algorithm takes the provider's default for it.
func TestCreateUse(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	for _, tt := range []struct {
		use  client.Use
		alg  client.Algorithm
		uses string
	}{
		{client.UseSign, client.Ed25519, "sign"},
		{client.UseDecrypt, client.XChaCha20Poly1305, "decrypt"},
		{client.UseMAC, client.HMACSHA256, "mac"},
		{0, client.XChaCha20Poly1305, "decrypt"},
	} {
		k, err := c.Create(ctx, "use/"+tt.uses+string(rune('a'+tt.use)), client.CreateOptions{Use: tt.use})
		if err != nil || k.Algorithm != tt.alg || len(k.Uses) != 1 || k.Uses[0] != tt.uses {
			t.Errorf("Create(use %v) = %s %v, %v; want %s [%s]", tt.use, k.Algorithm, k.Uses, err, tt.alg, tt.uses)
		}
	}
	if _, err := c.Create(ctx, "use/bad", client.CreateOptions{Algorithm: client.Ed25519, Use: client.UseMAC}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Create(ed25519, use mac) = %v, want ErrInvalid", err)
	}
	if _, err := c.Create(ctx, "use/bad", client.CreateOptions{Use: 9}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Create(use 9) = %v, want ErrInvalid", err)
	}
}

// MAC tags are the full HMAC output, deterministic, checked by VerifyMAC
// in constant time; a retired version still verifies.
func TestMAC(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	sizes := map[client.Algorithm]int{client.HMACSHA256: 32, client.HMACSHA384: 48, client.HMACSHA512: 64}
	msg := []byte("webhook body\x00\xff")
	for alg, size := range sizes {
		key := "hooks/" + string(alg)
		k, err := c.Create(ctx, key, client.CreateOptions{Algorithm: alg})
		if err != nil || k.Uses[0] != "mac" {
			t.Fatalf("Create(%s) = %+v, %v", alg, k, err)
		}
		m, err := c.MAC(ctx, key, msg)
		if err != nil || len(m.Tag) != size || m.Version != 1 || m.Key != "app/"+key {
			t.Fatalf("MAC(%s) = %+v, %v; want a %d-byte tag of version 1", alg, m, err, size)
		}
		again, err := c.MAC(ctx, key, msg)
		if err != nil || !hmac.Equal(again.Tag, m.Tag) {
			t.Errorf("MAC(%s) twice: tags differ (%v)", alg, err)
		}
		if err := c.VerifyMAC(ctx, key, 1, msg, m.Tag); err != nil {
			t.Errorf("VerifyMAC(%s) = %v", alg, err)
		}
		bad := bytes.Clone(m.Tag)
		bad[0] ^= 1
		for name, tag := range map[string][]byte{"flipped": bad, "truncated": m.Tag[:size-1], "empty": nil} {
			if err := c.VerifyMAC(ctx, key, 1, msg, tag); !errors.Is(err, client.ErrBadMessage) {
				t.Errorf("VerifyMAC(%s, %s tag) = %v, want ErrBadMessage", alg, name, err)
			}
		}
		if err := c.VerifyMAC(ctx, key, 1, []byte("other"), m.Tag); !errors.Is(err, client.ErrBadMessage) {
			t.Errorf("VerifyMAC(%s, other message) = %v, want ErrBadMessage", alg, err)
		}
		if _, err := c.Rotate(ctx, key); err != nil {
			t.Fatal(err)
		}
		m2, err := c.MAC(ctx, key, msg)
		if err != nil || m2.Version != 2 || hmac.Equal(m2.Tag, m.Tag) {
			t.Errorf("MAC(%s) after rotate = %+v, %v; want a new tag of version 2", alg, m2, err)
		}
		if err := c.VerifyMAC(ctx, key, 1, msg, m.Tag); err != nil {
			t.Errorf("VerifyMAC(%s, retired version 1) = %v", alg, err)
		}
		if err := c.VerifyMAC(ctx, key, 2, msg, m.Tag); !errors.Is(err, client.ErrBadMessage) {
			t.Errorf("VerifyMAC(%s, version 1's tag against 2) = %v, want ErrBadMessage", alg, err)
		}
	}
	if _, err := c.MAC(ctx, "hooks/hmac-sha256", make([]byte, provider.MaxMACMessage+1)); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("MAC(1 MiB + 1) = %v, want ErrTooLarge", err)
	}
	if _, err := c.MAC(ctx, "hooks/hmac-sha256", make([]byte, provider.MaxMACMessage)); err != nil {
		t.Errorf("MAC(1 MiB) = %v", err)
	}
	if _, err := c.Create(ctx, "p/sig", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MAC(ctx, "p/sig", msg); !errors.Is(err, client.ErrPermission) {
		t.Errorf("MAC with a signing key = %v, want ErrPermission", err)
	}
	if _, err := c.Sign(ctx, "hooks/hmac-sha256", msg); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Sign with a mac key = %v, want ErrPermission", err)
	}
}

func TestMACBatch(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	if _, err := c.Create(ctx, "hooks/k", client.CreateOptions{Algorithm: client.HMACSHA256}); err != nil {
		t.Fatal(err)
	}
	res, err := c.MACBatch(ctx, []client.MACItem{{Key: "hooks/k", Message: []byte("a")}, {Key: "hooks/missing"}, {Key: "hooks/k", Message: nil}})
	if err != nil || len(res) != 3 {
		t.Fatalf("MACBatch = %d results, %v", len(res), err)
	}
	if res[0].Err != nil || len(res[0].Tag) != 32 || res[2].Err != nil || !errors.Is(res[1].Err, client.ErrNotFound) {
		t.Fatalf("MACBatch = %+v", res)
	}
	vres, err := c.VerifyMACBatch(ctx, []client.VerifyMACItem{
		{Key: "hooks/k", Version: 1, Message: []byte("a"), Tag: res[0].Tag},
		{Key: "hooks/k", Version: 1, Message: []byte("b"), Tag: res[0].Tag},
		{Key: "hooks/k", Version: 1, Message: nil, Tag: res[2].Tag},
		{Key: "hooks/k", Version: 2, Message: []byte("a"), Tag: res[0].Tag},
	})
	if err != nil || len(vres) != 4 {
		t.Fatalf("VerifyMACBatch = %v, %v", vres, err)
	}
	if vres[0] != nil || !errors.Is(vres[1], client.ErrBadMessage) || vres[2] != nil || !errors.Is(vres[3], client.ErrNotFound) {
		t.Errorf("VerifyMACBatch = %v; want ok, EBADMSG, ok, ENOENT", vres)
	}
}

// SignBatch carries digests and versions per item; a malformed digest
// fails alone without being sent.
func TestSignBatchDigests(t *testing.T) {
	ctx := context.Background()
	c, srv := dial(t, clienttest.Options{})
	if _, err := c.Create(ctx, "rel/ec", client.CreateOptions{Algorithm: client.ECDSAP384}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rotate(ctx, "rel/ec"); err != nil {
		t.Fatal(err)
	}
	d := make([]byte, 48)
	items := []client.SignItem{
		{Key: "rel/ec", Hash: crypto.SHA384, Digest: d},
		{Key: "rel/ec", Hash: crypto.SHA384, Digest: d, Version: 1},
		{Key: "rel/ec", Hash: crypto.SHA384, Digest: d[:47]},
		{Key: "rel/ec", Message: []byte("m"), Version: 1},
	}
	res, err := c.SignBatch(ctx, items)
	if err != nil || len(res) != 4 {
		t.Fatalf("SignBatch = %d, %v", len(res), err)
	}
	if res[0].Err != nil || res[0].Version != 2 || res[1].Err != nil || res[1].Version != 1 || res[3].Err != nil || res[3].Version != 1 {
		t.Errorf("SignBatch = %+v", res)
	}
	if !errors.Is(res[2].Err, client.ErrInvalid) {
		t.Errorf("item 2 (short digest) = %v, want ErrInvalid", res[2].Err)
	}
	calls := srv.Calls("/keystore.v1.Keys/SignBatch")
	res, err = c.SignBatch(ctx, items[2:3])
	if err != nil || !errors.Is(res[0].Err, client.ErrInvalid) || srv.Calls("/keystore.v1.Keys/SignBatch") != calls {
		t.Errorf("SignBatch(only a bad item) = %+v, %v; want its error and no call", res, err)
	}
}

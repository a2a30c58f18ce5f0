package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/client"
)

func TestCreateSignVerify(t *testing.T) {
	ctx := context.Background()
	d := start(t)
	c := dial(t, d)

	k, err := c.Create(ctx, "signing/release", client.CreateOptions{Algorithm: client.Ed25519})
	if err != nil {
		t.Fatal(err)
	}
	if k.State != client.KeyActive || k.CurrentVersion != 1 || k.Insecure || k.Provider != "software" {
		t.Fatalf("Create = %+v", k)
	}
	if c.Insecure() {
		t.Error("the software provider's daemon reported insecure")
	}
	msg := []byte("release 1.0\x00\xff")
	sig, err := c.Sign(ctx, "signing/release", msg)
	if err != nil || sig.Version != 1 || sig.Key != k.ID {
		t.Fatalf("Sign = %+v, %v", sig, err)
	}
	pub, err := c.PublicKey(ctx, "signing/release", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub.Raw, msg, sig.Signature) {
		t.Fatal("the daemon's signature does not verify with crypto/ed25519")
	}
	if err := c.Verify(ctx, "signing/release", 1, msg, sig.Signature); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := c.Verify(ctx, "signing/release", 1, []byte("forged"), sig.Signature); !errors.Is(err, client.ErrBadMessage) || !errors.Is(err, syscall.EBADMSG) {
		t.Errorf("Verify(forged) = %v, want ErrBadMessage", err)
	}

	// The same through the CLI binary.
	r := ctlOK(t, d, msg, "sign", "signing/release")
	if !ed25519.Verify(pub.Raw, msg, r.stdout) {
		t.Error("keystorectl sign output does not verify")
	}
	if !strings.Contains(r.stderr, "signed by "+k.ID+"@1") {
		t.Errorf("sign stderr %q", r.stderr)
	}
	ctlOK(t, d, msg, "verify", "signing/release@1", "--sig", writeTemp(t, r.stdout))
	ctlFails(t, d, []byte("forged"), 74, "EBADMSG", "verify", "signing/release@1", "--sig", writeTemp(t, r.stdout))

	// Batches and the crypto.Signer through the real daemon.
	res, err := c.SignBatch(ctx, []client.SignItem{{Key: "signing/release", Message: []byte("a")}, {Key: "signing/none", Message: []byte("b")}})
	if err != nil || len(res) != 2 || res[0].Err != nil || !ed25519.Verify(pub.Raw, []byte("a"), res[0].Signature.Signature) || res[1].Err == nil {
		t.Errorf("SignBatch = %+v, %v", res, err)
	}
	s, err := c.Signer(ctx, "signing/release")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Sign(nil, msg, nil); err != nil || !ed25519.Verify(s.Public().(ed25519.PublicKey), msg, got) {
		t.Errorf("Signer.Sign: %v", err)
	}
}

func TestRotateSemantics(t *testing.T) {
	ctx := context.Background()
	d := start(t)
	c := dial(t, d)
	if _, err := c.Create(ctx, "p/sig", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "p/box", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	msg := []byte("before rotation")
	old, err := c.Sign(ctx, "p/sig", msg)
	if err != nil {
		t.Fatal(err)
	}
	sealedOld, err := c.Seal(ctx, "p/box", []byte("old secret"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"p/sig", "p/box"} {
		k, err := c.Rotate(ctx, key)
		if err != nil || k.CurrentVersion != 2 {
			t.Fatalf("Rotate(%s) = v%d, %v", key, k.CurrentVersion, err)
		}
		if v, _ := k.Version(1); v.State != client.VersionRetired {
			t.Errorf("%s v1 = %v, want retired", key, v.State)
		}
		if v, _ := k.Version(2); v.State != client.VersionPrimary {
			t.Errorf("%s v2 = %v, want primary", key, v.State)
		}
	}
	newSig, err := c.Sign(ctx, "p/sig", msg)
	if err != nil || newSig.Version != 2 {
		t.Fatalf("Sign after rotate = v%d, %v; want version 2", newSig.Version, err)
	}
	if err := c.Verify(ctx, "p/sig", 1, msg, old.Signature); err != nil {
		t.Errorf("old signature with version 1 after rotate: %v", err)
	}
	if err := c.Verify(ctx, "p/sig", 2, msg, newSig.Signature); err != nil {
		t.Errorf("new signature: %v", err)
	}
	if err := c.Verify(ctx, "p/sig", 2, msg, old.Signature); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("old signature against version 2 = %v, want ErrBadMessage", err)
	}
	u, err := c.Unseal(ctx, "p/box", sealedOld.Data, []byte("aad"))
	if err != nil || string(u.Plaintext) != "old secret" || u.Version != 1 {
		t.Errorf("Unseal(old) after rotate = %q v%d, %v", u.Plaintext, u.Version, err)
	}
	s2, err := c.Seal(ctx, "p/box", []byte("new"), nil)
	if err != nil || s2.Version != 2 {
		t.Errorf("Seal after rotate = v%d, %v", s2.Version, err)
	}
	rw, err := c.Rewrap(ctx, "p/box", sealedOld.Data, []byte("aad"))
	if err != nil || rw.Version != 2 {
		t.Errorf("Rewrap = v%d, %v", rw.Version, err)
	}
	// The CLI: the old version still verifies.
	ctlOK(t, d, msg, "verify", "p/sig@1", "--sig", writeTemp(t, old.Signature))
}

func TestRevokeEveryUse(t *testing.T) {
	ctx := context.Background()
	d := start(t)
	c := dial(t, d)
	if _, err := c.Create(ctx, "p/sig", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "p/box", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sig, err := c.Sign(ctx, "p/sig", []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal(ctx, "p/box", []byte("s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sigFile, sealedFile := writeTemp(t, sig.Signature), writeTemp(t, sealed.Data)
	for _, key := range []string{"p/sig", "p/box"} {
		k, err := c.Revoke(ctx, key)
		if err != nil || k.State != client.KeyRevoked {
			t.Fatalf("Revoke(%s) = %v, %v", key, k.State, err)
		}
	}
	uses := map[string]func() error{
		"sign":       func() error { _, err := c.Sign(ctx, "p/sig", []byte("m")); return err },
		"verify":     func() error { return c.Verify(ctx, "p/sig", 1, []byte("m"), sig.Signature) },
		"rotate":     func() error { _, err := c.Rotate(ctx, "p/sig"); return err },
		"seal":       func() error { _, err := c.Seal(ctx, "p/box", []byte("s"), nil); return err },
		"unseal":     func() error { _, err := c.Unseal(ctx, "p/box", sealed.Data, nil); return err },
		"rewrap":     func() error { _, err := c.Rewrap(ctx, "p/box", sealed.Data, nil); return err },
		"sign-batch": func() error { r, err := c.SignBatch(ctx, []client.SignItem{{Key: "p/sig"}}); return itemErr(r, err) },
	}
	for name, use := range uses {
		err := use()
		if !errors.Is(err, client.ErrKeyRevoked) || !errors.Is(err, syscall.EKEYREVOKED) {
			t.Errorf("%s on a revoked key = %v, want ErrKeyRevoked", name, err)
		}
	}
	// The CLI exits 128 on every use, with the hint.
	for _, args := range [][]string{
		{"sign", "p/sig"},
		{"verify", "p/sig@1", "--sig", sigFile},
		{"rotate", "p/sig"},
		{"seal", "p/box"},
		{"unseal", "p/box", "--in", sealedFile},
	} {
		r := ctlFails(t, d, []byte("m"), 128, "EKEYREVOKED", args...)
		if !strings.Contains(r.stderr, "hint: the key is revoked; create a new key") {
			t.Errorf("%v: stderr %q lacks the hint", args, r.stderr)
		}
	}
	ctlFails(t, d, nil, 114, "EALREADY", "revoke", "p/sig")
	ctlFails(t, d, nil, 114, "EALREADY", "create", "p/sig", "--alg", "ed25519")
	ctlOK(t, d, nil, "destroy", "p/sig")
	ctlFails(t, d, []byte("m"), 128, "EKEYREVOKED", "sign", "p/sig")
}

func itemErr(r []client.SignResult, err error) error {
	if err != nil {
		return err
	}
	if len(r) != 1 {
		return errors.New("wrong result count")
	}
	return r[0].Err
}

func TestSealUnsealAAD(t *testing.T) {
	ctx := context.Background()
	d := start(t)
	c := dial(t, d)
	if _, err := c.Create(ctx, "db/secrets", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pt := []byte("card 4111\x00\xff")
	s, err := c.Seal(ctx, "db/secrets", pt, []byte("row 7"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.Unseal(ctx, "db/secrets", s.Data, []byte("row 7"))
	if err != nil || !bytes.Equal(u.Plaintext, pt) {
		t.Fatalf("Unseal = %q, %v", u.Plaintext, err)
	}
	if _, err := c.Unseal(ctx, "db/secrets", s.Data, []byte("row 8")); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("Unseal(wrong AAD) = %v, want ErrBadMessage", err)
	}
	if _, err := c.Unseal(ctx, "db/secrets", s.Data, nil); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("Unseal(no AAD) = %v, want ErrBadMessage", err)
	}
	for i := range s.Data {
		tampered := bytes.Clone(s.Data)
		tampered[i] ^= 0x01
		u, err := c.Unseal(ctx, "db/secrets", tampered, []byte("row 7"))
		if err == nil || u.Plaintext != nil {
			t.Fatalf("Unseal with byte %d flipped = %q, %v; want an error and no plaintext", i, u.Plaintext, err)
		}
	}
	if _, err := c.Create(ctx, "db/other", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unseal(ctx, "db/other", s.Data, []byte("row 7")); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("Unseal under another key = %v, want ErrBadMessage", err)
	}

	// The CLI, binary-safe both ways.
	sealed := ctlOK(t, d, pt, "seal", "db/secrets", "--aad", "row 7").stdout
	if r := ctlOK(t, d, sealed, "unseal", "db/secrets", "--aad", "row 7"); !bytes.Equal(r.stdout, pt) {
		t.Errorf("keystorectl unseal = %q, want %q", r.stdout, pt)
	}
	r := ctlFails(t, d, sealed, 74, "EBADMSG", "unseal", "db/secrets", "--aad", "row 8")
	if len(r.stdout) != 0 {
		t.Errorf("failed unseal wrote %q", r.stdout)
	}
	sealed[len(sealed)-1] ^= 1
	ctlFails(t, d, sealed, 74, "EBADMSG", "unseal", "db/secrets", "--aad", "row 7")
}

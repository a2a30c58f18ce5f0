package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

func TestKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{App: "billing"})

	k, err := c.Create(ctx, "signing/release", client.CreateOptions{Algorithm: client.Ed25519, Policy: client.Policy{RotationPeriod: time.Hour}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if k.ID != "billing/signing/release" || k.Algorithm != client.Ed25519 || k.State != client.KeyActive || k.CurrentVersion != 1 {
		t.Fatalf("Create = %+v, want billing/signing/release ed25519 active v1", k)
	}
	if len(k.Uses) != 1 || k.Uses[0] != "sign" || k.Policy.RotationPeriod != time.Hour || k.Created.IsZero() {
		t.Errorf("Create: uses %v, policy %+v, created %v", k.Uses, k.Policy, k.Created)
	}
	v1, ok := k.Version(1)
	if !ok || v1.State != client.VersionPrimary || len(v1.PublicKey) != ed25519.PublicKeySize {
		t.Fatalf("version 1 = %+v, %v; want primary with a 32-byte public key", v1, ok)
	}
	if _, err := c.Create(ctx, "signing/release", client.CreateOptions{Algorithm: client.Ed25519}); !errors.Is(err, client.ErrAlready) {
		t.Errorf("Create again = %v, want ErrAlready", err)
	}

	got, err := c.Get(ctx, "billing/signing/release")
	if err != nil || got.ID != k.ID {
		t.Fatalf("Get = %+v, %v", got, err)
	}

	r, err := c.Rotate(ctx, "signing/release")
	if err != nil || r.CurrentVersion != 2 {
		t.Fatalf("Rotate = %+v, %v; want current version 2", r, err)
	}
	if v, _ := r.Version(1); v.State != client.VersionRetired || v.Retired.IsZero() {
		t.Errorf("after rotate, version 1 = %+v, want retired", v)
	}

	p, err := c.SetPolicy(ctx, "signing/release", client.Policy{MinDecryptionVersion: 2})
	if err != nil || p.Policy.MinDecryptionVersion != 2 {
		t.Fatalf("SetPolicy = %+v, %v", p.Policy, err)
	}

	rv, err := c.RevokeVersion(ctx, "signing/release", 1)
	if err != nil {
		t.Fatalf("RevokeVersion: %v", err)
	}
	if v, _ := rv.Version(1); v.State != client.VersionRevoked {
		t.Errorf("version 1 after RevokeVersion = %v, want revoked", v.State)
	}

	if _, err := c.Destroy(ctx, "signing/release"); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Destroy(active) = %v, want ErrPermission", err)
	}
	rk, err := c.Revoke(ctx, "signing/release")
	if err != nil || rk.State != client.KeyRevoked || rk.Revoked.IsZero() {
		t.Fatalf("Revoke = %+v, %v", rk, err)
	}
	if _, err := c.Revoke(ctx, "signing/release"); !errors.Is(err, client.ErrAlready) {
		t.Errorf("Revoke again = %v, want ErrAlready", err)
	}
	d, err := c.Destroy(ctx, "signing/release")
	if err != nil || d.State != client.KeyDestroyed {
		t.Fatalf("Destroy = %+v, %v", d.State, err)
	}
	if d.State.String() != "destroyed" {
		t.Errorf("KeyDestroyed.String() = %q", d.State.String())
	}
}

func TestListPages(t *testing.T) {
	ctx := context.Background()
	c, srv := dial(t, clienttest.Options{})
	for _, name := range []string{"p/a", "p/b", "p/c", "p/d", "p/e"} {
		if _, err := c.Create(ctx, name, client.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	srv.SetUnreadable("app/p/c")
	var ids []string
	var unreadable []client.UnreadableKey
	opts := client.ListOptions{PageSize: 2}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("listing does not end")
		}
		page, err := c.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page.Keys {
			ids = append(ids, k.ID)
		}
		unreadable = append(unreadable, page.Unreadable...)
		if page.NextPageToken == "" {
			break
		}
		opts.PageToken = page.NextPageToken
	}
	if want := "app/p/a app/p/b app/p/d app/p/e"; joined(ids) != want {
		t.Errorf("listed %q, want %q", joined(ids), want)
	}
	if len(unreadable) != 1 || unreadable[0].ID != "app/p/c" || !errors.Is(unreadable[0].Err, client.ErrIO) {
		t.Errorf("unreadable = %+v, want app/p/c with ErrIO", unreadable)
	}
	if _, err := c.List(ctx, client.ListOptions{PageSize: -1}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("List(page size -1) = %v, want ErrInvalid", err)
	}
	if _, err := c.List(ctx, client.ListOptions{App: "other"}); !errors.Is(err, client.ErrPermission) {
		t.Errorf("List(other app) = %v, want ErrPermission", err)
	}
}

func joined(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

func TestSignVerifyRotate(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	if _, err := c.Create(ctx, "p/sig", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	msg := []byte("release 1.0\x00\xff")
	s1, err := c.Sign(ctx, "p/sig", msg)
	if err != nil || s1.Version != 1 || s1.Key != "app/p/sig" {
		t.Fatalf("Sign = %+v, %v", s1, err)
	}
	pub, err := c.PublicKey(ctx, "p/sig", 0)
	if err != nil || pub.Version != 1 || pub.Algorithm != client.Ed25519 || pub.Ref() != "app/p/sig@1" {
		t.Fatalf("PublicKey = %+v, %v", pub, err)
	}
	if !ed25519.Verify(pub.Raw, msg, s1.Signature) {
		t.Fatal("signature does not verify with crypto/ed25519")
	}
	if err := c.Verify(ctx, "p/sig", 1, msg, s1.Signature); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	err = c.Verify(ctx, "p/sig", 1, []byte("other"), s1.Signature)
	if !errors.Is(err, client.ErrBadMessage) {
		t.Fatalf("Verify(wrong message) = %v, want ErrBadMessage", err)
	}

	if _, err := c.Rotate(ctx, "p/sig"); err != nil {
		t.Fatal(err)
	}
	s2, err := c.Sign(ctx, "p/sig", msg)
	if err != nil || s2.Version != 2 {
		t.Fatalf("Sign after rotate = %+v, %v; want version 2", s2, err)
	}
	if err := c.Verify(ctx, "p/sig", 1, msg, s1.Signature); err != nil {
		t.Errorf("old signature after rotate: %v", err)
	}
	if err := c.Verify(ctx, "p/sig", 2, msg, s1.Signature); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("old signature against version 2 = %v, want ErrBadMessage", err)
	}
	old, err := c.PublicKey(ctx, "p/sig", 1)
	if err != nil || old.Version != 1 || !bytes.Equal(old.Raw, pub.Raw) {
		t.Errorf("PublicKey(v1) after rotate = %+v, %v", old, err)
	}
	if _, err := c.PublicKey(ctx, "p/sig", 9); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("PublicKey(v9) = %v, want ErrNotFound", err)
	}

	if _, err := c.Revoke(ctx, "p/sig"); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"sign":   func() error { _, err := c.Sign(ctx, "p/sig", msg); return err },
		"verify": func() error { return c.Verify(ctx, "p/sig", 1, msg, s1.Signature) },
		"rotate": func() error { _, err := c.Rotate(ctx, "p/sig"); return err },
	} {
		if err := op(); !errors.Is(err, client.ErrKeyRevoked) {
			t.Errorf("%s on a revoked key = %v, want ErrKeyRevoked", name, err)
		}
	}
}

func TestSealUnsealRewrap(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	k, err := c.Create(ctx, "db/secrets", client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm != client.XChaCha20Poly1305 || k.Uses[0] != "decrypt" {
		t.Fatalf("default key = %s %v, want xchacha20-poly1305 decrypt", k.Algorithm, k.Uses)
	}
	pt := []byte("secret\x00bytes\xff")
	aad := []byte("row 7")
	s, err := c.Seal(ctx, "db/secrets", pt, aad)
	if err != nil || s.Version != 1 {
		t.Fatalf("Seal = %+v, %v", s, err)
	}
	u, err := c.Unseal(ctx, "db/secrets", s.Data, aad)
	if err != nil || !bytes.Equal(u.Plaintext, pt) || u.Version != 1 {
		t.Fatalf("Unseal = %q v%d, %v; want %q", u.Plaintext, u.Version, err, pt)
	}
	if _, err := c.Unseal(ctx, "db/secrets", s.Data, []byte("row 8")); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("Unseal(wrong AAD) = %v, want ErrBadMessage", err)
	}
	tampered := bytes.Clone(s.Data)
	tampered[len(tampered)-1] ^= 1
	if u, err := c.Unseal(ctx, "db/secrets", tampered, aad); !errors.Is(err, client.ErrBadMessage) || u.Plaintext != nil {
		t.Errorf("Unseal(tampered) = %q, %v; want no plaintext and ErrBadMessage", u.Plaintext, err)
	}
	empty, err := c.Seal(ctx, "db/secrets", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := c.Unseal(ctx, "db/secrets", empty.Data, nil); err != nil || u.Plaintext == nil || len(u.Plaintext) != 0 {
		t.Errorf("Unseal(empty) = %q (nil %v), %v; want a non-nil empty plaintext", u.Plaintext, u.Plaintext == nil, err)
	}

	if _, err := c.Rotate(ctx, "db/secrets"); err != nil {
		t.Fatal(err)
	}
	rw, err := c.Rewrap(ctx, "db/secrets", s.Data, aad)
	if err != nil || rw.Version != 2 {
		t.Fatalf("Rewrap = v%d, %v; want version 2", rw.Version, err)
	}
	u, err = c.Unseal(ctx, "db/secrets", rw.Data, aad)
	if err != nil || !bytes.Equal(u.Plaintext, pt) || u.Version != 2 {
		t.Errorf("Unseal(rewrapped) = %q v%d, %v", u.Plaintext, u.Version, err)
	}
	if _, err := c.Sign(ctx, "db/secrets", pt); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Sign with a decrypt key = %v, want ErrPermission", err)
	}
}

func TestOperatorNamesOtherApps(t *testing.T) {
	ctx := context.Background()
	app, _ := dial(t, clienttest.Options{App: "web"})
	if _, err := app.Create(ctx, "other/p/k", client.CreateOptions{}); !errors.Is(err, client.ErrPermission) {
		t.Errorf("app creating another app's key = %v, want ErrPermission", err)
	}
	op, _ := dial(t, clienttest.Options{App: "root", Operator: true})
	k, err := op.Create(ctx, "other/p/k", client.CreateOptions{})
	if err != nil || k.ID != "other/p/k" {
		t.Errorf("operator Create(other/p/k) = %q, %v", k.ID, err)
	}
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	val := []byte{0, 1, 2, 0xff}
	if err := c.PutValue(ctx, "config", val); err != nil {
		t.Fatal(err)
	}
	if err := c.PutValue(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetValue(ctx, "config")
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("GetValue = %v, %v", got, err)
	}
	if got, err := c.GetValue(ctx, "empty"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("GetValue(empty) = %v, %v; want a non-nil empty value", got, err)
	}
	page, err := c.ListValues(ctx, 1, "")
	if err != nil || len(page.Names) != 1 || page.Names[0] != "config" || page.NextPageToken == "" {
		t.Fatalf("ListValues(1) = %+v, %v", page, err)
	}
	page, err = c.ListValues(ctx, 1, page.NextPageToken)
	if err != nil || len(page.Names) != 1 || page.Names[0] != "empty" || page.NextPageToken != "" {
		t.Fatalf("ListValues page 2 = %+v, %v", page, err)
	}
	if err := c.DeleteValue(ctx, "config"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetValue(ctx, "config"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GetValue(deleted) = %v, want ErrNotFound", err)
	}
	if err := c.DeleteValue(ctx, "config"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("DeleteValue(deleted) = %v, want ErrNotFound", err)
	}
	if err := c.PutValue(ctx, "../x", nil); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("PutValue(../x) = %v, want ErrInvalid", err)
	}
	if _, err := c.ListValues(ctx, 1001, ""); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("ListValues(1001) = %v, want ErrInvalid", err)
	}
}

func TestAnchors(t *testing.T) {
	ctx := context.Background()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := dial(t, clienttest.Options{Anchors: map[string]ed25519.PublicKey{"vendor": pub}})
	anchors, err := c.ListAnchors(ctx)
	if err != nil || len(anchors) != 1 || anchors[0].Name != "vendor" || !bytes.Equal(anchors[0].PublicKey, pub) || anchors[0].Algorithm != client.Ed25519 {
		t.Fatalf("ListAnchors = %+v, %v", anchors, err)
	}
	msg := []byte("firmware")
	sig := ed25519.Sign(priv, msg)
	if err := c.VerifyAnchor(ctx, "vendor", msg, sig); err != nil {
		t.Errorf("VerifyAnchor(valid) = %v", err)
	}
	if err := c.VerifyAnchor(ctx, "vendor", []byte("other"), sig); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("VerifyAnchor(invalid) = %v, want ErrBadMessage", err)
	}
	if err := c.VerifyAnchor(ctx, "nobody", msg, sig); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("VerifyAnchor(unknown) = %v, want ErrNotFound", err)
	}
}

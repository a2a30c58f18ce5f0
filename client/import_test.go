package client_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

// WrapForImport seals the material to the parameters' public key with
// their info and an empty aad: crypto/hpke, in the role of the daemon's
// provider, opens it with exactly those.
func TestWrapForImportOpens(t *testing.T) {
	info := []byte("keystored import v1\x00app/box/k\x00aes-256-gcm")
	material := bytes.Repeat([]byte{7}, 32)
	for _, a := range hpkeAlgorithms {
		priv, pub := recipient(t, a)
		p := client.ImportParameters{Key: "app/box/k", Algorithm: client.AES256GCM, Token: "kit1.t", WrappingAlgorithm: a, Suite: pub.Suite, PublicKey: pub.Raw, Info: info}
		enc, wrapped, err := client.WrapForImport(p, material)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if got, err := open(priv, pub.Suite, enc, wrapped, info, nil); err != nil || !bytes.Equal(got, material) {
			t.Errorf("%s: open = %x, %v", a, got, err)
		}
		if _, err := open(priv, pub.Suite, enc, wrapped, info[:len(info)-1], nil); err == nil {
			t.Errorf("%s: opens with another info", a)
		}
		if _, err := open(priv, pub.Suite, enc, wrapped, info, []byte("x")); err == nil {
			t.Errorf("%s: opens with an aad", a)
		}
		bad := p
		bad.PublicKey = pub.Raw[1:]
		if _, _, err := client.WrapForImport(bad, material); !errors.Is(err, client.ErrIO) {
			t.Errorf("%s: a public key that does not decode: %v, want ErrIO", a, err)
		}
	}
}

// importFixture is a daemon with a client.
func importFixture(t *testing.T) (*client.Client, *clienttest.Server) {
	t.Helper()
	return dial(t, clienttest.Options{})
}

// pkcs8 marshals a private key as PKCS #8 DER.
func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Imported material is the key's: an HMAC key's tags are crypto/hmac's
// with the raw key, an Ed25519 or ECDSA key's signatures verify against
// the original public key, an X25519 HPKE key's public key is the
// original's and decrypts what was sealed to it. Imported keys say so.
func TestImportKeyThroughDaemon(t *testing.T) {
	c, _ := importFixture(t)
	ctx := context.Background()

	macKey := bytes.Repeat([]byte{0x42}, 32)
	k, err := c.ImportKey(ctx, "tokens/imported", client.HMACSHA256, macKey)
	if err != nil {
		t.Fatalf("ImportKey hmac: %v", err)
	}
	if k.Origin != client.OriginImported || k.Versions[0].Origin != client.OriginImported || k.Algorithm != client.HMACSHA256 {
		t.Errorf("imported key %+v", k)
	}
	tag, err := c.MAC(ctx, "tokens/imported", []byte("msg"))
	if err != nil {
		t.Fatal(err)
	}
	h := hmac.New(sha256.New, macKey)
	h.Write([]byte("msg")) // a hash's Write never fails
	if !bytes.Equal(tag.Tag, h.Sum(nil)) {
		t.Error("the imported HMAC key's tag is not crypto/hmac's with the raw key")
	}

	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportKey(ctx, "sig/ed", client.Ed25519, pkcs8(t, edPriv)); err != nil {
		t.Fatalf("ImportKey ed25519: %v", err)
	}
	sig, err := c.Sign(ctx, "sig/ed", []byte("msg"))
	if err != nil || !ed25519.Verify(edPriv.Public().(ed25519.PublicKey), []byte("msg"), sig.Signature) {
		t.Errorf("imported Ed25519 key: signature %v does not verify against the original public key", err)
	}

	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportKey(ctx, "sig/ec", client.ECDSAP256, pkcs8(t, ecPriv)); err != nil {
		t.Fatalf("ImportKey ecdsa: %v", err)
	}
	sig, err = c.Sign(ctx, "sig/ec", []byte("msg"))
	digest := sha256.Sum256([]byte("msg"))
	if err != nil || !ecdsa.VerifyASN1(&ecPriv.PublicKey, digest[:], sig.Signature) {
		t.Errorf("imported ECDSA key: signature %v does not verify against the original public key", err)
	}

	xKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportKey(ctx, "inbox/x", client.HPKEX25519, pkcs8(t, xKey)); err != nil {
		t.Fatalf("ImportKey hpke-x25519: %v", err)
	}
	pub, err := c.PublicKey(ctx, "inbox/x", 0)
	if err != nil || !bytes.Equal(pub.Raw, xKey.PublicKey().Bytes()) {
		t.Fatalf("imported X25519 public key %x, %v; want the original's", pub.Raw, err)
	}
	enc, ct, err := client.HPKESeal(pub, nil, nil, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Decrypt(ctx, "inbox/x", 1, client.HPKEMessage{Enc: enc, Ciphertext: ct}); err != nil || string(d.Plaintext) != "hi" {
		t.Errorf("Decrypt with the imported key: %+v, %v", d, err)
	}
}

// An imported key gets new versions by import only, unless rotated to
// generated material explicitly; then it is a generated key.
func TestImportedKeyVersionsAndRotate(t *testing.T) {
	c, _ := importFixture(t)
	ctx := context.Background()
	_, err := c.ImportKey(ctx, "box/k", client.AES256GCM, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal(ctx, "box/k", []byte("v1 data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.ImportKey(ctx, "box/k", client.AES256GCM, bytes.Repeat([]byte{2}, 32))
	if err != nil || k.CurrentVersion != 2 || k.Versions[1].Origin != client.OriginImported {
		t.Fatalf("second import: %+v, %v; want version 2, imported", k, err)
	}
	if _, err := c.Rotate(ctx, "box/k"); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Rotate of an imported key: %v, want ErrPermission", err)
	}
	k, err = c.RotateWith(ctx, "box/k", client.RotateOptions{Generate: true})
	if err != nil || k.CurrentVersion != 3 || k.Origin != client.OriginGenerated {
		t.Fatalf("RotateWith Generate: %+v, %v", k, err)
	}
	if v, _ := k.Version(3); v.Origin != client.OriginGenerated {
		t.Errorf("version 3 origin %q, want generated", v.Origin)
	}
	if v, _ := k.Version(1); v.Origin != client.OriginImported {
		t.Errorf("version 1 origin %q, want imported", v.Origin)
	}
	if u, err := c.Unseal(ctx, "box/k", sealed.Data, nil); err != nil || string(u.Plaintext) != "v1 data" {
		t.Errorf("unseal of version 1's data: %v", err)
	}
	if _, err := c.Rotate(ctx, "box/k"); err != nil {
		t.Errorf("Rotate of the now generated key: %v", err)
	}
	if _, err := c.GetImportParameters(ctx, "box/k", client.AES256GCM, client.ImportOptions{}); !errors.Is(err, client.ErrPermission) {
		t.Errorf("import parameters for a generated key: %v, want ErrPermission", err)
	}
}

// Tokens are single-use and expire; material of the wrong algorithm and
// algorithms without an import form are refused, each with its type.
func TestImportRefusals(t *testing.T) {
	c, srv := importFixture(t)
	ctx := context.Background()
	p, err := c.GetImportParameters(ctx, "box/a", client.AES256GCM, client.ImportOptions{WrappingAlgorithm: client.HPKEX25519, TTL: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if p.WrappingAlgorithm != client.HPKEX25519 || p.Key != "app/box/a" || !p.Expires.Equal(clienttest.Epoch.Add(2*time.Minute)) {
		t.Errorf("parameters %+v", p)
	}
	material := bytes.Repeat([]byte{3}, 32)
	enc, wrapped, err := client.WrapForImport(p, material)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Import(ctx, "box/a", p.Token, enc, wrapped, client.Policy{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Import(ctx, "box/a", p.Token, enc, wrapped, client.Policy{}); !errors.Is(err, client.ErrAlready) {
		t.Errorf("a reused token: %v, want ErrAlready", err)
	}
	if _, err := c.Import(ctx, "box/a", "kit1.AAAAAAAAAAAAAAAAAAAAAA", enc, wrapped, client.Policy{}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("an unknown token: %v, want ErrNotFound", err)
	}

	p, err = c.GetImportParameters(ctx, "box/b", client.AES256GCM, client.ImportOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	enc, wrapped, err = client.WrapForImport(p, material)
	if err != nil {
		t.Fatal(err)
	}
	srv.Advance(time.Minute + time.Second)
	if _, err := c.Import(ctx, "box/b", p.Token, enc, wrapped, client.Policy{}); !errors.Is(err, client.ErrExpired) {
		t.Errorf("an expired token: %v, want ErrExpired", err)
	}

	for _, tt := range []struct {
		name     string
		alg      client.Algorithm
		material []byte
		want     error
	}{
		{"a 16-byte aes-256-gcm key", client.AES256GCM, make([]byte, 16), client.ErrInvalid},
		{"an Ed25519 key as ECDSA", client.ECDSAP256, pkcs8(t, ed25519.NewKeyFromSeed(make([]byte, 32))), client.ErrInvalid},
		{"raw bytes as Ed25519", client.Ed25519, make([]byte, 32), client.ErrInvalid},
	} {
		if _, err := c.ImportKey(ctx, "box/"+tt.alg.String()[:4], tt.alg, tt.material); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, a := range []client.Algorithm{client.Ed448, client.MLDSA65, client.HPKEMLKEM768X25519} {
		if _, err := c.GetImportParameters(ctx, "x/"+a.String()[:5], a, client.ImportOptions{}); !errors.Is(err, client.ErrNotSupported) {
			t.Errorf("import parameters for %s: %v, want ErrNotSupported", a, err)
		}
	}
}

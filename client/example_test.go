package client_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"os"
	"time"

	"github.com/nexus-os/keystored/client"
)

func Example() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "keystore-state/keystored.sock")
	if err != nil {
		log.Fatal(err) // wraps client.ErrUnavailable if keystored is not running
	}
	defer c.Close()

	if _, err := c.Create(ctx, "signing/release", client.CreateOptions{Algorithm: client.Ed25519}); err != nil && !errors.Is(err, client.ErrAlready) {
		log.Fatal(err)
	}
	msg := []byte("release 1.0")
	sig, err := c.Sign(ctx, "signing/release", msg)
	switch {
	case errors.Is(err, client.ErrKeyRevoked):
		log.Fatal("the key is revoked; create a new one")
	case err != nil:
		log.Fatal(err)
	}
	// Keep sig.Version with the signature: Verify needs it.
	if err := c.Verify(ctx, "signing/release", sig.Version, msg, sig.Signature); errors.Is(err, client.ErrBadMessage) {
		log.Fatal("invalid signature")
	}
	fmt.Printf("signed by %s@%d\n", sig.Key, sig.Version)
}

func ExampleClient_Seal() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "keystore-state/keystored.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	aad := []byte("customers/42/card") // bound to the sealed data; needed again to unseal
	sealed, err := c.Seal(ctx, "db/cards", []byte("4111 1111 1111 1111"), aad)
	if err != nil {
		log.Fatal(err)
	}
	opened, err := c.Unseal(ctx, "db/cards", sealed.Data, aad)
	if errors.Is(err, client.ErrBadMessage) {
		log.Fatal("wrong key or AAD, or the data was modified")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(opened.Plaintext))
}

func ExampleClient_Signer() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "keystore-state/keystored.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// An ecdsa-p256-sha256 key (any signing key works). The signer is
	// bound to the key's current version: after a rotate it keeps signing
	// with it, as the certificate needs, until that version is revoked.
	signer, err := c.Signer(ctx, "tls/server")
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "service.internal"},
		DNSNames:     []string{"service.internal"},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		log.Fatal(err)
	}
	_ = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: signer,
		SupportedSignatureAlgorithms: client.TLSSignatureSchemes(signer.KeyVersion().Algorithm)}
	fmt.Println(len(der) > 0)
}

func ExampleClient_SignDigest() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "keystore-state/keystored.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A file of any size: hash it here, send only the digest.
	f, err := os.Open("release.tar")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	h := sha256.New() // the key's own hash: client.DigestHash(client.ECDSAP256)
	if _, err := io.Copy(h, f); err != nil {
		log.Fatal(err)
	}
	sig, err := c.SignDigest(ctx, "signing/release", crypto.SHA256, h.Sum(nil))
	if err != nil {
		log.Fatal(err)
	}
	// openssl dgst -sha256 -verify pub.pem -signature release.sig release.tar
	fmt.Printf("%s@%d: %d-byte DER signature\n", sig.Key, sig.Version, len(sig.Signature))
}

func ExampleClient_MAC() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "keystore-state/keystored.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	token := []byte(`{"user":42,"exp":1767225600}`)
	tag, err := c.MAC(ctx, "tokens/session", token) // an hmac-sha256 key
	if err != nil {
		log.Fatal(err)
	}
	// Later: the tag and its version travel with the token.
	if err := c.VerifyMAC(ctx, "tokens/session", tag.Version, token, tag.Tag); errors.Is(err, client.ErrBadMessage) {
		log.Fatal("forged or changed token")
	}
}

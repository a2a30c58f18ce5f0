package client_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/alg"
)

// hpkeAlgorithms are the HPKE algorithms, in the registry's order.
var hpkeAlgorithms = []client.Algorithm{client.HPKEX25519, client.HPKEP256, client.HPKEMLKEM768X25519}

// recipient is an HPKE key pair made here with crypto/hpke, as an
// independent sender or recipient would.
func recipient(t *testing.T, a client.Algorithm) (hpke.PrivateKey, client.PublicKey) {
	t.Helper()
	suite, ok := client.HPKESuiteOf(a)
	if !ok {
		t.Fatalf("HPKESuiteOf(%s) is false", a)
	}
	kem, err := hpke.NewKEM(suite.KEM)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv, client.PublicKey{Key: "app/inbox/k", Version: 1, Algorithm: a, Raw: priv.PublicKey().Bytes(), Suite: suite}
}

// open opens a base-mode message with crypto/hpke directly.
func open(priv hpke.PrivateKey, suite client.HPKESuite, enc, ct, info, aad []byte) ([]byte, error) {
	kdf, err := hpke.NewKDF(suite.KDF)
	if err != nil {
		return nil, err
	}
	aead, err := hpke.NewAEAD(suite.AEAD)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(enc, priv, kdf, aead, info)
	if err != nil {
		return nil, err
	}
	return r.Open(aad, ct)
}

// The client's suites are the registry's: the same identifiers and enc
// sizes, for exactly the asymmetric-decrypt algorithms.
func TestHPKESuitesMatchRegistry(t *testing.T) {
	reg := alg.Default()
	n := 0
	for _, name := range reg.Names() {
		spec, err := reg.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		suite, ok := client.HPKESuiteOf(name)
		if ok != (spec.KEMID != 0) {
			t.Errorf("%s: HPKESuiteOf ok %v, registry KEM %#x", name, ok, spec.KEMID)
			continue
		}
		if !ok {
			continue
		}
		n++
		if suite != (client.HPKESuite{KEM: spec.KEMID, KDF: spec.KDFID, AEAD: spec.AEADID}) || suite.EncSize() != spec.EncSize {
			t.Errorf("%s: client suite %v enc %d, registry KEM %#x KDF %#x AEAD %#x enc %d", name, suite, suite.EncSize(), spec.KEMID, spec.KDFID, spec.AEADID, spec.EncSize)
		}
	}
	if n != len(hpkeAlgorithms) {
		t.Errorf("%d HPKE algorithms in the registry, want %d", n, len(hpkeAlgorithms))
	}
	if s := (client.HPKESuite{KEM: 0x0020, KDF: 1, AEAD: 3}).String(); s != "KEM 0x0020, KDF 0x0001, AEAD 0x0003" {
		t.Errorf("String = %q", s)
	}
}

// HPKESeal's messages open with crypto/hpke used directly, with the same
// info and aad only; its enc has the suite's size.
func TestHPKESealOpensWithCryptoHPKE(t *testing.T) {
	info, aad := []byte("app v1"), []byte("header")
	for _, a := range hpkeAlgorithms {
		priv, pub := recipient(t, a)
		for _, n := range []int{0, 1, 1000} {
			pt := bytes.Repeat([]byte{0x5a}, n)
			enc, ct, err := client.HPKESeal(pub, info, aad, pt)
			if err != nil {
				t.Fatalf("%s: HPKESeal: %v", a, err)
			}
			if len(enc) != pub.Suite.EncSize() || len(ct) != n+16 {
				t.Errorf("%s: enc %d bytes, ciphertext %d; want %d and %d", a, len(enc), len(ct), pub.Suite.EncSize(), n+16)
			}
			got, err := open(priv, pub.Suite, enc, ct, info, aad)
			if err != nil || !bytes.Equal(got, pt) {
				t.Errorf("%s: open = %x, %v; want %x", a, got, err, pt)
			}
			flip := func(b []byte) []byte { c := bytes.Clone(b); c[len(c)/2] ^= 1; return c }
			for name, bad := range map[string][4][]byte{
				"enc":        {flip(enc), ct, info, aad},
				"ciphertext": {enc, flip(ct), info, aad},
				"info":       {enc, ct, []byte("app v2"), aad},
				"aad":        {enc, ct, info, nil},
			} {
				if _, err := open(priv, pub.Suite, bad[0], bad[1], bad[2], bad[3]); err == nil {
					t.Errorf("%s: a message with another %s opens", a, name)
				}
			}
		}
	}
}

func TestHPKESealRefuses(t *testing.T) {
	_, pub := recipient(t, client.HPKEX25519)
	big := func(n int) []byte { return make([]byte, n) }
	for _, tt := range []struct {
		name            string
		pub             client.PublicKey
		info, aad, data []byte
		want            error
	}{
		{"info over 4 KiB", pub, big(4<<10 + 1), nil, nil, client.ErrTooLarge},
		{"aad over 64 KiB", pub, nil, big(64<<10 + 1), nil, client.ErrTooLarge},
		{"plaintext over the bound", pub, nil, nil, big(client.MaxHPKEPlaintext + 1), client.ErrTooLarge},
		{"a signing key", client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: client.Ed25519, Raw: big(32)}, nil, nil, nil, client.ErrPermission},
		{"a public key that does not decode", client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: client.HPKEP256, Raw: big(65), Suite: pub.Suite}, nil, nil, nil, client.ErrIO},
		{"an unknown KEM", client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: "hpke-new", Raw: big(32), Suite: client.HPKESuite{KEM: 0x7777, KDF: 1, AEAD: 1}}, nil, nil, nil, client.ErrNotSupported},
	} {
		if _, _, err := client.HPKESeal(tt.pub, tt.info, tt.aad, tt.data); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	// At the bound it seals.
	if _, _, err := client.HPKESeal(pub, big(4<<10), big(64<<10), big(client.MaxHPKEPlaintext)); err != nil {
		t.Errorf("inputs at their bounds: %v", err)
	}
}

// The DHKEM keys decode as *ecdh.PublicKey (for crypto/x509); the hybrid
// has no such type.
func TestHPKECryptoPublicKey(t *testing.T) {
	for a, curve := range map[client.Algorithm]ecdh.Curve{client.HPKEX25519: ecdh.X25519(), client.HPKEP256: ecdh.P256()} {
		_, pub := recipient(t, a)
		k, err := pub.CryptoPublicKey()
		ek, ok := k.(*ecdh.PublicKey)
		if err != nil || !ok || ek.Curve() != curve || !bytes.Equal(ek.Bytes(), pub.Raw) {
			t.Errorf("%s: CryptoPublicKey = %T %v", a, k, err)
		}
		wrong := pub
		wrong.Suite.AEAD++
		if _, err := wrong.CryptoPublicKey(); !errors.Is(err, client.ErrIO) {
			t.Errorf("%s with another suite: %v, want ErrIO", a, err)
		}
	}
	_, pub := recipient(t, client.HPKEMLKEM768X25519)
	if _, err := pub.CryptoPublicKey(); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("hybrid CryptoPublicKey: %v, want ErrNotSupported", err)
	}
	if _, err := pub.HPKEPublicKey(); err != nil {
		t.Errorf("hybrid HPKEPublicKey: %v", err)
	}
}

// Through the daemon: a message sealed here to a version's public key
// (HPKESeal, or crypto/hpke directly) decrypts with that version, also
// after a rotation; tampering gives ErrBadMessage and no plaintext.
func TestDecryptThroughDaemon(t *testing.T) {
	c, _ := dial(t, clienttest.Options{})
	ctx := context.Background()
	for _, a := range hpkeAlgorithms {
		key := "inbox/" + string(a)[:len("hpke-")+4]
		k, err := c.Create(ctx, key, client.CreateOptions{Algorithm: a})
		if err != nil {
			t.Fatalf("%s: Create: %v", a, err)
		}
		if len(k.Uses) != 1 || k.Uses[0] != "asymmetric-decrypt" || k.Origin != client.OriginGenerated {
			t.Errorf("%s: uses %v, origin %q", a, k.Uses, k.Origin)
		}
		pub, err := c.PublicKey(ctx, key, 0)
		if err != nil {
			t.Fatalf("%s: PublicKey: %v", a, err)
		}
		if want, _ := client.HPKESuiteOf(a); pub.Suite != want || pub.Version != 1 {
			t.Errorf("%s: public key suite %v version %d, want %v and 1", a, pub.Suite, pub.Version, want)
		}
		info, aad, pt := []byte("info"), []byte("aad"), []byte("to the daemon")
		enc, ct, err := client.HPKESeal(pub, info, aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decrypt(ctx, key, 1, client.HPKEMessage{Enc: enc, Ciphertext: ct, Info: info, AAD: aad})
		if err != nil || !bytes.Equal(got.Plaintext, pt) || got.Version != 1 || got.Key != "app/"+key {
			t.Fatalf("%s: Decrypt = %+v, %v", a, got, err)
		}
		// Sealed with crypto/hpke directly (an independent sender).
		hpk, err := pub.HPKEPublicKey()
		if err != nil {
			t.Fatal(err)
		}
		kdf, _ := hpke.NewKDF(pub.Suite.KDF)    // the suite decoded above
		aead, _ := hpke.NewAEAD(pub.Suite.AEAD) // the suite decoded above
		enc2, s, err := hpke.NewSender(hpk, kdf, aead, nil)
		if err != nil {
			t.Fatal(err)
		}
		ct2, err := s.Seal(nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Decrypt(ctx, key, 0, client.HPKEMessage{Enc: enc2, Ciphertext: ct2}); err != nil || !bytes.Equal(got.Plaintext, pt) {
			t.Errorf("%s: Decrypt of crypto/hpke's message = %+v, %v", a, got, err)
		}
		flip := func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-1] ^= 1; return c }
		for name, m := range map[string]client.HPKEMessage{
			"enc":        {Enc: flip(enc), Ciphertext: ct, Info: info, AAD: aad},
			"ciphertext": {Enc: enc, Ciphertext: flip(ct), Info: info, AAD: aad},
			"info":       {Enc: enc, Ciphertext: ct, Info: flip(info), AAD: aad},
			"aad":        {Enc: enc, Ciphertext: ct, Info: info},
		} {
			if got, err := c.Decrypt(ctx, key, 1, m); !errors.Is(err, client.ErrBadMessage) || got.Plaintext != nil {
				t.Errorf("%s: tampered %s: %+v, %v; want ErrBadMessage", a, name, got, err)
			}
		}
		// After a rotation version 1 still decrypts; version 2 does not
		// open version 1's message.
		if _, err := c.Rotate(ctx, key); err != nil {
			t.Fatal(err)
		}
		m := client.HPKEMessage{Enc: enc, Ciphertext: ct, Info: info, AAD: aad}
		if got, err := c.Decrypt(ctx, key, 1, m); err != nil || !bytes.Equal(got.Plaintext, pt) {
			t.Errorf("%s: retired version 1: %+v, %v", a, got, err)
		}
		if _, err := c.Decrypt(ctx, key, 2, m); !errors.Is(err, client.ErrBadMessage) {
			t.Errorf("%s: version 2 on version 1's message: %v, want ErrBadMessage", a, err)
		}
		if _, err := c.RevokeVersion(ctx, key, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Decrypt(ctx, key, 1, m); !errors.Is(err, client.ErrKeyRevoked) {
			t.Errorf("%s: revoked version 1: %v, want ErrKeyRevoked", a, err)
		}
	}
	if _, err := c.Create(ctx, "box/k", client.CreateOptions{Algorithm: client.AES256GCM}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decrypt(ctx, "box/k", 0, client.HPKEMessage{Enc: make([]byte, 32), Ciphertext: make([]byte, 16)}); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Decrypt with an AEAD key: %v, want ErrPermission", err)
	}
}

package alg_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// TestHPKERoundTrip seals with crypto/hpke to each suite's public key and
// opens with the Decrypter; a flipped bit in enc, ciphertext, info or aad
// is EBADMSG.
func TestHPKERoundTrip(t *testing.T) {
	r := alg.Default()
	for _, name := range []provider.Algorithm{provider.HPKEX25519, provider.HPKEP256, provider.HPKEMLKEM768X25519} {
		t.Run(string(name), func(t *testing.T) {
			s, err := r.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.NewMaterial(bytes.Repeat([]byte{7}, s.RandomSize), true)
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.NewDecrypter(m)
			if err != nil {
				t.Fatal(err)
			}
			pub := d.PublicKey()
			if !s.CheckPublicKey(pub) {
				t.Fatalf("public key of %d bytes refused", len(pub))
			}
			kem, kdf, aead, err := s.Suite()
			if err != nil {
				t.Fatal(err)
			}
			pk, err := kem.NewPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			info, aad, msg := []byte("info"), []byte("aad"), []byte("hello hpke")
			enc, snd, err := hpke.NewSender(pk, kdf, aead, info)
			if err != nil {
				t.Fatal(err)
			}
			ct, err := snd.Seal(aad, msg)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := d.Decrypt(enc, ct, info, aad)
			if err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("Decrypt = %q, %v", pt, err)
			}
			for i, in := range [][4][]byte{{flip(enc), ct, info, aad}, {enc, flip(ct), info, aad}, {enc, ct, flip(info), aad}, {enc, ct, info, flip(aad)}, {enc[1:], ct, info, aad}} {
				if _, err := d.Decrypt(in[0], in[1], in[2], in[3]); !errors.Is(err, provider.ErrBadMessage) {
					t.Errorf("tampered input %d: %v, want EBADMSG", i, err)
				}
			}
		})
	}
}

func flip(b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)-1] ^= 1
	return c
}

// TestImportMaterial imports PKCS #8 keys and raw keys, and refuses keys
// of another kind.
func TestImportMaterial(t *testing.T) {
	r := alg.Default()
	seed := bytes.Repeat([]byte{3}, 32)
	edKey := ed25519.NewKeyFromSeed(seed)
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	xKey, err := ecdh.X25519().NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	xDER, err := x509.MarshalPKCS8PrivateKey(xKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := ecKey.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		alg     provider.Algorithm
		data    []byte
		wantPub []byte
		code    provider.Code
	}{
		{provider.Ed25519, edDER, edKey[32:], 0},
		{provider.Ed25519ph, edDER, edKey[32:], 0},
		{provider.ECDSAP256, ecDER, ecPub, 0},
		{provider.HPKEP256, ecDER, nil, 0},
		{provider.HPKEX25519, xDER, xKey.PublicKey().Bytes(), 0},
		{provider.AES256GCM, seed, nil, 0},
		{provider.HMACSHA256, seed, nil, 0},
		{provider.ECDSAP384, ecDER, nil, provider.EINVAL},
		{provider.Ed25519, ecDER, nil, provider.EINVAL},
		{provider.HPKEX25519, edDER, nil, provider.EINVAL},
		{provider.Ed25519, seed, nil, provider.EINVAL},
		{provider.AES256GCM, seed[:16], nil, provider.EINVAL},
		{provider.HMACSHA512, seed, nil, provider.EINVAL},
		{provider.Ed448, edDER, nil, provider.ENOTSUP},
		{provider.MLDSA44, edDER, nil, provider.ENOTSUP},
		{provider.HPKEMLKEM768X25519, seed, nil, provider.ENOTSUP},
	} {
		s, err := r.Lookup(c.alg)
		if err != nil {
			t.Fatal(err)
		}
		m, pub, err := s.ImportMaterial(c.data)
		if c.code != 0 {
			if !errors.Is(err, c.code) {
				t.Errorf("%s: %v, want %s", c.alg, err, c.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.alg, err)
			continue
		}
		if !s.SecretSizeOK(len(m)) {
			t.Errorf("%s: material of %d bytes", c.alg, len(m))
		}
		if c.wantPub != nil && !bytes.Equal(pub, c.wantPub) {
			t.Errorf("%s: public key differs from the imported key's", c.alg)
		}
		if s.PublicKeySize > 0 && !s.CheckPublicKey(pub) {
			t.Errorf("%s: public key refused", c.alg)
		}
	}
}

package pkcs11

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// pointSizes are the public key sizes ecPoint reads: Ed25519, Ed448, the
// uncompressed P-256 and P-384 points.
var pointSizes = []int{32, 57, 65, 97}

// TestECPoint: the DER OCTET STRING form and the bare bytes give the key;
// anything else fails with EIO.
func TestECPoint(t *testing.T) {
	for _, n := range pointSizes {
		key := bytes.Repeat([]byte{0xAB}, n)
		for _, v := range [][]byte{append([]byte{0x04, byte(n)}, key...), key} {
			got, err := ecPoint(v, n)
			if err != nil || !bytes.Equal(got, key) {
				t.Errorf("ecPoint(%x, %d) = %x, %v; want the key", v, n, got, err)
			}
		}
		bad := [][]byte{
			nil, {0x04}, {0x04, byte(n)}, append([]byte{0x04, byte(n + 1)}, key...), append([]byte{0x03, byte(n)}, key...),
			append([]byte{0x04, byte(n)}, key[:n-1]...), append([]byte{0x04, byte(n)}, append(key, 0)...), key[:n-1],
			append([]byte{0x04, 0x81, byte(n)}, key...),
		}
		for _, v := range bad {
			if got, err := ecPoint(v, n); err == nil {
				t.Errorf("ecPoint(%x, %d) = %x, want an error", v, n, got)
			} else {
				wantCode(t, "malformed CKA_EC_POINT", err, provider.EIO)
			}
		}
	}
}

// FuzzECPoint: any CKA_EC_POINT value either fails or yields n bytes
// found at its end; nothing panics.
func FuzzECPoint(f *testing.F) {
	for _, n := range pointSizes {
		key := bytes.Repeat([]byte{7}, n)
		f.Add(append([]byte{0x04, byte(n)}, key...), n)
		f.Add(key, n)
	}
	f.Add([]byte{0x04, 0x20}, 32)
	f.Add([]byte(nil), 65)
	f.Fuzz(func(t *testing.T, v []byte, n int) {
		if n < 0 || n > 200 {
			return
		}
		got, err := ecPoint(v, n)
		if err != nil {
			return
		}
		if len(got) != n || !bytes.HasSuffix(v, got) {
			t.Fatalf("ecPoint(%x, %d) = %x", v, n, got)
		}
	})
}

// TestECDSADER: r ‖ s from the token becomes the DER signature
// crypto/ecdsa verifies, with minimal integers (leading zero bytes gone, a
// zero byte added before a set top bit); a wrong length or a zero
// component is EIO.
func TestECDSADER(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	der, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	var sig ecdsaSignature
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	got, err := ecdsaDER(raw, 32)
	if err != nil || !bytes.Equal(got, der) || !ecdsa.VerifyASN1(&k.PublicKey, digest[:], got) {
		t.Errorf("ecdsaDER = %x, %v; want %x", got, err, der)
	}
	cases := []struct {
		r, s []byte
		want string
	}{
		{[]byte{0, 0, 1}, []byte{0, 0, 0x80}, "30070201010202" + "0080"}, // leading zeros dropped; 0x80 gets a zero byte
		{[]byte{0, 0, 0x7f}, []byte{0, 0xff, 0xff}, "300802017f020300ffff"},
	}
	for _, c := range cases {
		raw := append(bytes.Clone(c.r), c.s...)
		want, err := hex.DecodeString(c.want)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ecdsaDER(raw, 3); err != nil || !bytes.Equal(got, want) {
			t.Errorf("ecdsaDER(%x) = %x, %v; want %x", raw, got, err, want)
		}
	}
	for _, raw := range [][]byte{nil, make([]byte, 63), make([]byte, 65), make([]byte, 64), append(make([]byte, 32), bytes.Repeat([]byte{1}, 32)...)} {
		if _, err := ecdsaDER(raw, 32); err == nil {
			t.Errorf("ecdsaDER(%x) succeeded, want EIO", raw)
		} else {
			wantCode(t, "malformed ECDSA signature", err, provider.EIO)
		}
	}
}

// TestRSAPublicKey: CKA_MODULUS and CKA_PUBLIC_EXPONENT become the PKCS#1
// DER of the key; another modulus size or exponent is EIO.
func TestRSAPublicKey(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	n := k.N.Bytes()
	got, err := rsaPublicKey(n, rsaExponent, 2048)
	if err != nil || !bytes.Equal(got, x509.MarshalPKCS1PublicKey(&k.PublicKey)) {
		t.Errorf("rsaPublicKey = %x, %v; want the PKCS#1 DER", got, err)
	}
	if got2, err := rsaPublicKey(append([]byte{0, 0}, n...), []byte{0, 0, 1, 0, 1}, 2048); err != nil || !bytes.Equal(got2, got) {
		t.Errorf("rsaPublicKey with leading zeros = %v; want the same key", err)
	}
	bad := []struct {
		name     string
		n, e     []byte
		wantBits int
	}{
		{"3072-bit expected", n, rsaExponent, 3072},
		{"exponent 3", n, []byte{3}, 2048},
		{"exponent empty", n, nil, 2048},
		{"huge exponent", n, bytes.Repeat([]byte{0xff}, 16), 2048},
		{"short modulus", n[1:], rsaExponent, 2048},
		{"no modulus", nil, rsaExponent, 2048},
	}
	for _, c := range bad {
		if _, err := rsaPublicKey(c.n, c.e, c.wantBits); err == nil {
			t.Errorf("%s: rsaPublicKey succeeded, want EIO", c.name)
		} else {
			wantCode(t, c.name, err, provider.EIO)
		}
	}
}

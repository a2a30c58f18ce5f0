package client_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/alg"
)

// jwsVector is testdata/jws-es256.json.
type jwsVector struct {
	Source       string           `json:"source"`
	Algorithm    client.Algorithm `json:"algorithm"`
	X, Y         string
	SigningInput string `json:"signing_input"`
	Signature    string `json:"signature"`
}

// RFC 7515's ES256 example: its r‖s signature, converted to DER,
// verifies with crypto/ecdsa, and converts back to the same bytes.
func TestECDSASignatureJWSVector(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "jws-es256.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v jwsVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	dec := func(s string) []byte {
		out, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%s: %q: %v", v.Source, s, err)
		}
		return out
	}
	point := append(append([]byte{4}, dec(v.X)...), dec(v.Y)...)
	k, err := client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: v.Algorithm, Raw: point}.CryptoPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	raw := dec(v.Signature)
	der, err := client.ECDSASignatureDER(v.Algorithm, raw)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(v.SigningInput))
	if !ecdsa.VerifyASN1(k.(*ecdsa.PublicKey), digest[:], der) {
		t.Fatalf("%s: the converted signature does not verify", v.Source)
	}
	back, err := client.ECDSASignatureRaw(v.Algorithm, der)
	if err != nil || !bytes.Equal(back, raw) {
		t.Fatalf("ECDSASignatureRaw(DER) = %x, %v; want %x", back, err, raw)
	}
}

func TestECDSASignatureConversions(t *testing.T) {
	for _, tt := range []struct {
		alg   client.Algorithm
		curve elliptic.Curve
		size  int
	}{{client.ECDSAP256, elliptic.P256(), 32}, {client.ECDSAP384, elliptic.P384(), 48}} {
		key, err := ecdsa.GenerateKey(tt.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		digest := make([]byte, tt.size)
		for i := range 20 { // some signatures have a short r or s
			digest[0] = byte(i)
			der, err := ecdsa.SignASN1(rand.Reader, key, digest)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := client.ECDSASignatureRaw(tt.alg, der)
			if err != nil || len(raw) != 2*tt.size {
				t.Fatalf("%s: ECDSASignatureRaw = %d bytes, %v", tt.alg, len(raw), err)
			}
			back, err := client.ECDSASignatureDER(tt.alg, raw)
			if err != nil || !bytes.Equal(back, der) {
				t.Fatalf("%s: DER -> raw -> DER changed the signature (%v)", tt.alg, err)
			}
		}
		// r = 1 and s = 2 pad to the full size.
		small, err := asn1.Marshal(struct{ R, S *big.Int }{big.NewInt(1), big.NewInt(2)})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := client.ECDSASignatureRaw(tt.alg, small)
		want := make([]byte, 2*tt.size)
		want[tt.size-1], want[2*tt.size-1] = 1, 2
		if err != nil || !bytes.Equal(raw, want) {
			t.Errorf("%s: raw of (1, 2) = %x, %v; want %x", tt.alg, raw, err, want)
		}
		huge := new(big.Int).Lsh(big.NewInt(1), uint(8*tt.size)) // one bit too many
		for name, der := range map[string][]byte{
			"trailing byte": append(bytes.Clone(small), 0),
			"empty":         nil,
			"r zero":        marshalSig(t, big.NewInt(0), big.NewInt(2)),
			"s negative":    marshalSig(t, big.NewInt(1), big.NewInt(-2)),
			"r too large":   marshalSig(t, huge, big.NewInt(2)),
		} {
			if _, err := client.ECDSASignatureRaw(tt.alg, der); !errors.Is(err, client.ErrBadMessage) {
				t.Errorf("%s: ECDSASignatureRaw(%s) = %v, want ErrBadMessage", tt.alg, name, err)
			}
		}
		for name, raw := range map[string][]byte{
			"short":  make([]byte, 2*tt.size-1),
			"zeros":  make([]byte, 2*tt.size),
			"double": make([]byte, 4*tt.size),
		} {
			if _, err := client.ECDSASignatureDER(tt.alg, raw); !errors.Is(err, client.ErrBadMessage) {
				t.Errorf("%s: ECDSASignatureDER(%s) = %v, want ErrBadMessage", tt.alg, name, err)
			}
		}
	}
	if _, err := client.ECDSASignatureRaw(client.Ed25519, make([]byte, 64)); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("ECDSASignatureRaw(ed25519) = %v, want ErrInvalid", err)
	}
	if _, err := client.ECDSASignatureDER(client.RSA2048PSS, make([]byte, 64)); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("ECDSASignatureDER(rsa) = %v, want ErrInvalid", err)
	}
}

func marshalSig(t *testing.T, r, s *big.Int) []byte {
	t.Helper()
	b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzECDSASignature: any bytes either fail with a code or convert to a
// form that converts back to the same bytes.
func FuzzECDSASignature(f *testing.F) {
	f.Add(true, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02})
	f.Add(false, make([]byte, 64))
	f.Add(false, bytes.Repeat([]byte{0xff}, 96))
	f.Fuzz(func(t *testing.T, p384 bool, b []byte) {
		alg := client.ECDSAP256
		if p384 {
			alg = client.ECDSAP384
		}
		if raw, err := client.ECDSASignatureRaw(alg, b); err == nil {
			der, err := client.ECDSASignatureDER(alg, raw)
			if err != nil {
				t.Fatalf("raw of a DER signature does not convert back: %v", err)
			}
			if again, err := client.ECDSASignatureRaw(alg, der); err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("DER -> raw -> DER -> raw changed: %v", err)
			}
		} else if _, ok := client.CodeOf(err); !ok {
			t.Fatalf("error %v has no code", err)
		}
		if der, err := client.ECDSASignatureDER(alg, b); err == nil {
			raw, err := client.ECDSASignatureRaw(alg, der)
			if err != nil || !bytes.Equal(raw, b) {
				t.Fatalf("raw -> DER -> raw changed: %x, %v", raw, err)
			}
		}
	})
}

// FuzzCryptoPublicKey: any raw key of any signing algorithm decodes or
// fails with a code, never panics.
func FuzzCryptoPublicKey(f *testing.F) {
	algs := client.Algorithms()
	f.Add(uint8(0), make([]byte, 32))
	f.Add(uint8(5), append([]byte{4}, make([]byte, 64)...))
	f.Add(uint8(7), []byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, i uint8, raw []byte) {
		pub := client.PublicKey{Key: "a/p/k", Version: 1, Algorithm: algs[int(i)%len(algs)], Raw: raw}
		k, err := pub.CryptoPublicKey()
		if err != nil {
			if _, ok := client.CodeOf(err); !ok {
				t.Fatalf("error %v has no code", err)
			}
			return
		}
		if k == nil {
			t.Fatal("nil key without an error")
		}
	})
}

// Every algorithm has a use; the signing ones are those DigestHash and
// the Signer know.
func TestAlgorithmUse(t *testing.T) {
	counts := map[client.Use]int{}
	for _, alg := range client.Algorithms() {
		u := client.AlgorithmUse(alg)
		if !u.Valid() {
			t.Errorf("%s has no use", alg)
		}
		counts[u]++
	}
	if counts[client.UseSign] != 14 || counts[client.UseDecrypt] != 3 || counts[client.UseMAC] != 3 || counts[client.UseAsymmetricDecrypt] != 3 {
		t.Errorf("uses %v, want 14 sign, 3 decrypt, 3 mac, 3 asymmetric-decrypt", counts)
	}
	if u := client.AlgorithmUse("rot13"); u != 0 {
		t.Errorf("AlgorithmUse(rot13) = %v, want 0", u)
	}
}

// The client's knowledge of the algorithms (it may not link the
// registry) matches core/alg: the same names in the same order, the same
// use and digest hash.
func TestAlgorithmsMatchRegistry(t *testing.T) {
	reg := alg.Default()
	names := reg.Names()
	got := client.Algorithms()
	if len(got) != len(names) {
		t.Fatalf("client.Algorithms() has %d names, the registry %d: %v vs %v", len(got), len(names), got, names)
	}
	for i, name := range names {
		if got[i] != name {
			t.Errorf("algorithm %d: client %s, registry %s", i, got[i], name)
		}
		spec, err := reg.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if client.AlgorithmUse(name) != spec.Use || client.DigestHash(name) != spec.Hash {
			t.Errorf("%s: client use %v hash %v, registry use %v hash %v", name, client.AlgorithmUse(name), client.DigestHash(name), spec.Use, spec.Hash)
		}
	}
}

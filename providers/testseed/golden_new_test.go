package testseed

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"hash"
	"math/big"
	"testing"

	"golang.org/x/crypto/chacha20"

	"github.com/nexus-os/keystored/core/provider"
)

// The independent derivations of the ECDSA, RSA and HMAC golden vectors:
// each step of docs/testing.md written out again with the standard
// library and x/crypto, none of core/alg.

// rsaBits returns the modulus size of an RSA algorithm, or 0.
func rsaBits(a provider.Algorithm) int {
	switch a {
	case provider.RSA2048PSS, provider.RSA2048PKCS1:
		return 2048
	case provider.RSA3072PSS, provider.RSA3072PKCS1:
		return 3072
	case provider.RSA4096PSS, provider.RSA4096PKCS1:
		return 4096
	}
	return 0
}

// rsaPSS reports whether a is an RSA-PSS algorithm.
func rsaPSS(a provider.Algorithm) bool {
	return a == provider.RSA2048PSS || a == provider.RSA3072PSS || a == provider.RSA4096PSS
}

// randomSize is how many bytes of HKDF output make a key's material: 32
// for RSA (the key of the prime search), the material's size otherwise.
func randomSize(a provider.Algorithm, secretSize int) int {
	if rsaBits(a) != 0 {
		return 32
	}
	return secretSize
}

// ecdsaCurve returns the curve, hash and scalar size of an ECDSA
// algorithm.
func ecdsaCurve(a provider.Algorithm) (elliptic.Curve, func() hash.Hash, crypto.Hash, int) {
	if a == provider.ECDSAP384 {
		return elliptic.P384(), sha512.New384, crypto.SHA384, 48
	}
	return elliptic.P256(), sha256.New, crypto.SHA256, 32
}

// independentMaterial turns the HKDF output into the key's material as
// docs/testing.md says.
func independentMaterial(t *testing.T, a provider.Algorithm, random []byte) []byte {
	t.Helper()
	switch {
	case a == provider.ECDSAP256 || a == provider.ECDSAP384:
		// The first c_i = H^i(random) with 1 <= c_i < n.
		curve, newHash, _, _ := ecdsaCurve(a)
		c := bytes.Clone(random)
		for range 64 {
			if v := new(big.Int).SetBytes(c); v.Sign() > 0 && v.Cmp(curve.Params().N) < 0 {
				return c
			}
			h := newHash()
			h.Write(c)
			c = h.Sum(nil)
		}
		t.Fatalf("%s: no valid scalar in 64 steps", a)
	case rsaBits(a) != 0:
		return independentRSA(t, random, rsaBits(a))
	case a == provider.HPKEX25519 || a == provider.HPKEP256 || a == provider.HPKEMLKEM768X25519:
		// RFC 9180 DeriveKeyPair of the suite's KEM (crypto/hpke), its
		// private key serialized.
		kemID := map[provider.Algorithm]uint16{provider.HPKEX25519: 0x0020, provider.HPKEP256: 0x0010, provider.HPKEMLKEM768X25519: 0x647a}[a]
		kem, err := hpke.NewKEM(kemID)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kem.DeriveKeyPair(random)
		if err != nil {
			t.Fatal(err)
		}
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return random
}

// independentRSA is the insecure deterministic prime search of
// docs/testing.md, and the PKCS #1 RSAPrivateKey DER of its key built
// with encoding/asn1.
func independentRSA(t *testing.T, key []byte, bits int) []byte {
	t.Helper()
	stream, err := chacha20.NewUnauthenticatedCipher(key, make([]byte, chacha20.NonceSize))
	if err != nil {
		t.Fatal(err)
	}
	e := big.NewInt(65537)
	one := big.NewInt(1)
	prime := func() *big.Int {
		for range 1 << 16 {
			c := make([]byte, bits/16)
			stream.XORKeyStream(c, c) // the next bits/16 keystream bytes
			c[0] |= 0xc0
			c[len(c)-1] |= 1
			p := new(big.Int).SetBytes(c)
			if new(big.Int).Mod(new(big.Int).Sub(p, one), e).Sign() != 0 && p.ProbablyPrime(20) {
				return p
			}
		}
		t.Fatal("no prime found")
		return nil
	}
	p := prime()
	q := prime()
	pm, qm := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
	lcm := new(big.Int).Div(new(big.Int).Mul(pm, qm), new(big.Int).GCD(nil, nil, pm, qm))
	d := new(big.Int).ModInverse(e, lcm)
	der, err := asn1.Marshal(struct {
		Version               int
		N                     *big.Int
		E                     int
		D, P, Q, Dp, Dq, Qinv *big.Int
	}{0, new(big.Int).Mul(p, q), 65537, d, p, q,
		new(big.Int).Mod(d, pm), new(big.Int).Mod(d, qm), new(big.Int).ModInverse(q, p)})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// checkECDSA derives the SEC 1 public key from the scalar, verifies the
// golden signature with crypto/ecdsa, and checks that it is the RFC 6979
// signature crypto/ecdsa makes without a random source.
func checkECDSA(t *testing.T, v goldenVector, material, msg []byte) ([]byte, bool) {
	t.Helper()
	curve, newHash, h, _ := ecdsaCurve(v.Algorithm)
	k, err := ecdsa.ParseRawPrivateKey(curve, material)
	if err != nil {
		t.Fatalf("%s: scalar does not parse: %v", v.Algorithm, err)
	}
	pub, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sig := unhex(t, v.Signature)
	d := newHash()
	d.Write(msg)
	digest := d.Sum(nil)
	again, err := k.Sign(nil, digest, h)
	if err != nil || !bytes.Equal(again, sig) {
		t.Errorf("%s: golden signature is not the RFC 6979 one (err %v)", v.Algorithm, err)
	}
	return pub, ecdsa.VerifyASN1(&k.PublicKey, digest, sig)
}

// checkRSA derives the PKCS #1 public key from the private key DER,
// verifies the golden signature with crypto/rsa (PSS: salt of exactly 32
// bytes), and signs again: PKCS #1 v1.5 is deterministic, and the PSS
// salt is SHA-256(material ‖ digest).
func checkRSA(t *testing.T, v goldenVector, material, msg []byte) ([]byte, bool) {
	t.Helper()
	k, err := x509.ParsePKCS1PrivateKey(material)
	if err != nil {
		t.Fatalf("%s: private key does not parse: %v", v.Algorithm, err)
	}
	if k.N.BitLen() != rsaBits(v.Algorithm) || k.E != 65537 {
		t.Errorf("%s: a %d-bit modulus with e = %d", v.Algorithm, k.N.BitLen(), k.E)
	}
	sig := unhex(t, v.Signature)
	digest := sha256.Sum256(msg)
	var again []byte
	ok := false
	if rsaPSS(v.Algorithm) {
		opts := &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}
		ok = rsa.VerifyPSS(&k.PublicKey, crypto.SHA256, digest[:], sig, opts) == nil
		salt := sha256.Sum256(append(bytes.Clone(material), digest[:]...))
		again, err = rsa.SignPSS(bytes.NewReader(salt[:]), k, crypto.SHA256, digest[:], opts)
	} else {
		ok = rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, digest[:], sig) == nil
		again, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:])
	}
	if err != nil || !bytes.Equal(again, sig) {
		t.Errorf("%s: golden signature is not the documented deterministic one (err %v)", v.Algorithm, err)
	}
	return x509.MarshalPKCS1PublicKey(&k.PublicKey), ok
}

// checkTag checks a MAC vector with crypto/hmac: key = the material.
func checkTag(t *testing.T, v goldenVector, material, msg []byte) {
	t.Helper()
	var newHash func() hash.Hash
	switch v.Algorithm {
	case provider.HMACSHA256:
		newHash = sha256.New
	case provider.HMACSHA384:
		newHash = sha512.New384
	case provider.HMACSHA512:
		newHash = sha512.New
	default:
		t.Fatalf("no independent implementation for %s", v.Algorithm)
	}
	if v.PublicKey != "" {
		t.Errorf("%s: a MAC key has a public key in the golden file", v.Algorithm)
	}
	m := hmac.New(newHash, material)
	m.Write(msg)
	if got := unhex(t, v.Tag); !hmac.Equal(got, m.Sum(nil)) || len(got) != m.Size() {
		t.Errorf("%s: golden tag is not HMAC(material, message)", v.Algorithm)
	}
}

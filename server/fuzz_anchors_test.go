package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// fuzzAnchorKey is a deterministic Ed25519 anchor key.
func fuzzAnchorKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("keystored/server/fuzz/anchor"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// anchorPEM returns the PEM SubjectPublicKeyInfo of pub.
func anchorPEM(tb testing.TB, pub any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// testAnchors loads a directory holding one anchor, "release".
func testAnchors(tb testing.TB) *Anchors {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "anchors")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "release.pem"), anchorPEM(tb, fuzzAnchorKey().Public()), 0o600); err != nil {
		tb.Fatal(err)
	}
	a, err := LoadAnchors(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// FuzzLoadAnchor: any bytes as a trust anchor file are refused with an
// error naming the file, or give an Ed25519 anchor whose public key is 32
// bytes, whose fingerprint is the SHA-256 of the DER, and which verifies
// only its own key's signatures. Seeded with genuine PEM public keys
// (Ed25519, and refused kinds: ECDSA, a private key block, trailing data).
func FuzzLoadAnchor(f *testing.F) {
	good := anchorPEM(f, fuzzAnchorKey().Public())
	// A fixed ECDSA public key (the P-256 generator point).
	curve := elliptic.P256()
	ec := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).Set(curve.Params().Gx), Y: new(big.Int).Set(curve.Params().Gy)}
	seeds := [][]byte{
		good,
		anchorPEM(f, ec),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x2e}}),
		append(append([]byte(nil), good...), "trailing"...),
		[]byte(strings.Replace(string(good), "PUBLIC KEY", "RSA PUBLIC KEY", 2)),
		good[:len(good)/2],
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed set")
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.pem")
	msg := []byte("anchored message")
	goodSig := ed25519.Sign(fuzzAnchorKey(), msg)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := loadAnchor(path, "fuzz", alg.Default())
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if a.Algorithm != provider.Ed25519 || len(a.PublicKey) != ed25519.PublicKeySize || a.Name != "fuzz" {
			t.Fatalf("accepted anchor %+v", a)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatal("accepted a file without a PEM block")
		}
		sum := sha256.Sum256(block.Bytes)
		if a.Fingerprint != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Fatalf("fingerprint %s is not the DER's SHA-256", a.Fingerprint)
		}
		isOurs := string(a.PublicKey) == string(fuzzAnchorKey().Public().(ed25519.PublicKey))
		if got := a.spec.Verify(a.PublicKey, msg, goodSig); got != isOurs {
			t.Fatalf("anchor verifies the reference signature: %v, want %v", got, isOurs)
		}
	})
}

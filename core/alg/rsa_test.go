package alg

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// TestPSSSaltSurvivesClearedMaterial: an unhedged RSA-PSS signer's salt
// is SHA-256(material ‖ digest) even after the caller cleared the material
// it was made from (NewSigner's callers do), not SHA-256(zeros ‖ digest).
func TestPSSSaltSurvivesClearedMaterial(t *testing.T) {
	s, err := Default().Lookup(provider.RSA2048PSS)
	if err != nil {
		t.Fatal(err)
	}
	material, err := s.NewMaterial(bytes.Repeat([]byte{7}, s.RandomSize), true)
	if err != nil {
		t.Fatal(err)
	}
	kept := bytes.Clone(material)
	signer, err := s.NewSigner(material, false)
	if err != nil {
		t.Fatal(err)
	}
	clear(material)
	digest := sha256.Sum256([]byte("msg"))
	sig, err := signer.SignDigest(crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS1PrivateKey(kept)
	if err != nil {
		t.Fatal(err)
	}
	salt := sha256.Sum256(append(bytes.Clone(kept), digest[:]...))
	want, err := rsa.SignPSS(bytes.NewReader(salt[:]), k, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sig, want) {
		t.Fatal("the PSS salt is not SHA-256(material ‖ digest) once the caller cleared the material")
	}
}

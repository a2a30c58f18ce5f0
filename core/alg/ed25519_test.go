package alg_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// The Ed25519 signer (circl's, see builtins.go) makes RFC 8032's
// signatures: test vector 1 of section 7.1, and crypto/ed25519's signature
// for a range of seeds and message lengths.
func TestEd25519SignerMatchesRFC8032AndStdlib(t *testing.T) {
	spec, err := alg.Default().Lookup(provider.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	seed := unhex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	want := unhex(t, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
	s, err := spec.NewSigner(seed, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Sign(nil); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("RFC 8032 test 1: %x, %v; want %x", got, err, want)
	}
	if pub := unhex(t, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"); !bytes.Equal(s.PublicKey(), pub) {
		t.Fatalf("RFC 8032 test 1 public key %x, want %x", s.PublicKey(), pub)
	}
	for i := range 32 {
		seed := bytes.Repeat([]byte{byte(i*7 + 1)}, ed25519.SeedSize)
		seed[0] = byte(i)
		msg := bytes.Repeat([]byte{byte(i)}, i*37)
		s, err := spec.NewSigner(seed, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Sign(msg)
		if want := ed25519.Sign(ed25519.NewKeyFromSeed(seed), msg); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("seed %d, %d-byte message: %x, %v; crypto/ed25519 gives %x", i, len(msg), got, err, want)
		}
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

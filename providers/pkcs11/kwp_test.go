package pkcs11

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// TestKWPVectors: kwpWrap gives RFC 5649's own test vectors (section 6),
// the multi-semiblock and the one-semiblock case.
func TestKWPVectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, want string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		got, err := kwpWrap(kek, unhex(t, v.key))
		if err != nil {
			t.Fatalf("kwpWrap(%s): %v", v.key, err)
		}
		if !bytes.Equal(got, unhex(t, v.want)) {
			t.Errorf("kwpWrap(%s) = %x, want %s", v.key, got, v.want)
		}
	}
}

// TestKWPRefuses: empty input, input over maxKWP and a KEK of a size AES
// has not are EINVAL, not a panic.
func TestKWPRefuses(t *testing.T) {
	kek := make([]byte, 32)
	for _, c := range []struct {
		what    string
		kek, pt []byte
	}{
		{"empty plaintext", kek, nil},
		{"plaintext over maxKWP", kek, make([]byte, maxKWP+1)},
		{"15-byte KEK", kek[:15], []byte("key")},
	} {
		_, err := kwpWrap(c.kek, c.pt)
		wantCode(t, c.what, err, provider.EINVAL)
	}
	if _, err := kwpWrap(kek, make([]byte, maxKWP)); err != nil {
		t.Errorf("kwpWrap of maxKWP bytes: %v", err)
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

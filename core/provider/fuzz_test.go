package provider

import (
	"fmt"
	"testing"
)

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }

// FuzzKeyRefBinary: decoding never panics, and what decodes re-encodes to the
// same bytes.
func FuzzKeyRefBinary(f *testing.F) {
	id, _ := NewKeyID("app", "p", "n")
	b, _ := KeyRef{ID: id, Version: 1, Algorithm: Ed25519, Use: UseSign, Provider: "software"}.AppendBinary(nil)
	f.Add(b)
	f.Add([]byte(refMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseKeyRef(data)
		if err != nil {
			return
		}
		again, err := r.AppendBinary(nil)
		if err != nil || string(again) != string(data) {
			t.Fatalf("re-encoding differs: %x vs %x (%v)", again, data, err)
		}
	})
}

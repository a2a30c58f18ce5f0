package provider

import (
	"fmt"
	"testing"
)

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }

// FuzzParseVersionedID: any input either fails with EINVAL or parses to a
// value that formats back to exactly the input.
func FuzzParseVersionedID(f *testing.F) {
	seeds := []string{"a/b/c", "app/sign/k@1", "a/b/c@4294967295", "a/b/c@0", "../a/b", "a/b/c@01", "", "a/b/c@-1"}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseVersionedID(s)
		if err != nil {
			if c, ok := CodeOf(err); !ok || c != EINVAL {
				t.Fatalf("error %v is not EINVAL", err)
			}
			return
		}
		if r.String() != s {
			t.Fatalf("round trip %q -> %q", s, r.String())
		}
		for _, seg := range []string{r.ID.App(), r.ID.Purpose(), r.ID.Name()} {
			if seg == "." || seg == ".." || len(seg) > MaxSegment {
				t.Fatalf("bad segment %q accepted", seg)
			}
		}
	})
}

// FuzzParseKeyRef: decoding never panics, and what decodes re-encodes to the
// same bytes.
func FuzzParseKeyRef(f *testing.F) {
	id, _ := NewKeyID("app", "p", "n")
	b, _ := KeyRef{ID: id, Version: 1, Algorithm: Ed25519, Use: UseSign, Provider: "software"}.MarshalBinary()
	f.Add(b)
	f.Add([]byte(refMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseKeyRef(data)
		if err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil || string(again) != string(data) {
			t.Fatalf("re-encoding differs: %x vs %x (%v)", again, data, err)
		}
	})
}

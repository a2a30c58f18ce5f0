package testseed

import (
	"bytes"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// FuzzUnwrapHandle presents arbitrary handles under the golden refs: no
// input may panic, the genuine handle of a ref must work, and any other
// handle must fail (EIO, or EINVAL over MaxHandle), never ENOENT or
// success. The corpus is seeded from testdata/golden.json.
func FuzzUnwrapHandle(f *testing.F) {
	golden := readGolden(f)
	if len(golden.Vectors) == 0 {
		f.Fatal("no golden handles to seed the corpus: regenerate testdata/golden.json with -update")
	}
	for i, v := range golden.Vectors {
		h := unhex(f, v.Handle)
		f.Add(h, uint8(i))
		f.Add(h, uint8(i+1)) // the same handle under the next ref
		f.Add(h[:len(h)-1], uint8(i))
	}
	p, err := NewInsecure(goldenSeed)
	if err != nil {
		f.Fatal(err)
	}
	refs := make([]provider.KeyRef, len(golden.Vectors))
	genuine := make([][]byte, len(golden.Vectors))
	pubs := make([][]byte, len(golden.Vectors))
	for i, v := range golden.Vectors {
		refs[i] = v.ref(f)
		genuine[i] = unhex(f, v.Handle)
		pubs[i] = unhex(f, v.PublicKey)
	}
	f.Fuzz(func(t *testing.T, h []byte, which uint8) {
		i := int(which) % len(refs)
		_, err := exercise(p, refs[i], h, pubs[i])
		if bytes.Equal(h, genuine[i]) {
			if err != nil {
				t.Fatalf("genuine handle of %s failed: %v", refs[i].Algorithm, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("modified handle (%d bytes) accepted under %s", len(h), refs[i].Algorithm)
		}
		code, _ := provider.CodeOf(err)
		if code != provider.EIO && !(code == provider.EINVAL && len(h) > provider.MaxHandle) {
			t.Fatalf("modified handle under %s: got %v, want EIO", refs[i].Algorithm, err)
		}
	})
}

package alg

import (
	"bytes"
	"testing"
)

// BenchmarkCost measures each built-in algorithm's private-key operations
// (the figures behind Spec.Cost, Spec.GenerateCost and Spec.CostPerMiB;
// docs/performance.md lists them):
//
//	go test ./core/alg -run '^$' -bench Cost -benchtime 1s
//
// Compare each ns/op with ed25519/sign's: Cost is that ratio.
func BenchmarkCost(b *testing.B) {
	seed := bytes.Repeat([]byte{7}, 64)
	msg := bytes.Repeat([]byte{'m'}, 64)
	for _, s := range Builtins() {
		switch s.Use.String() {
		case "sign":
			b.Run(string(s.Name)+"/sign", func(b *testing.B) {
				k, err := s.NewSigner(testMaterial(b, &s), true)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := k.Sign(msg); err != nil {
						b.Fatal(err)
					}
				}
			})
			long := bytes.Repeat([]byte{'m'}, 1<<16)
			b.Run(string(s.Name)+"/sign-64KiB", func(b *testing.B) {
				k, err := s.NewSigner(testMaterial(b, &s), true)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(long)))
				for b.Loop() {
					if _, err := k.Sign(long); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(string(s.Name)+"/generate", func(b *testing.B) {
				for b.Loop() {
					m, err := s.NewMaterial(seed[:s.RandomSize], false)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := s.NewSigner(m, true); err != nil {
						b.Fatal(err)
					}
				}
			})
		case "mac":
			for _, size := range []int{64, 1 << 20} {
				m, err := s.NewMAC(seed[:s.SecretSize])
				if err != nil {
					b.Fatal(err)
				}
				pt := make([]byte, size)
				b.Run(string(s.Name)+"/mac-"+byteSize(size), func(b *testing.B) {
					b.SetBytes(int64(size))
					for b.Loop() {
						if _, err := m.Tag(pt); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		default:
			for _, size := range []int{1 << 10, 1 << 20} {
				pt := make([]byte, size)
				b.Run(string(s.Name)+"/seal-"+byteSize(size), func(b *testing.B) {
					a, err := s.NewAEAD(seed[:s.SecretSize])
					if err != nil {
						b.Fatal(err)
					}
					nonce := make([]byte, s.NonceSize)
					dst := make([]byte, 0, s.NonceSize+size+s.Overhead)
					b.SetBytes(int64(size))
					for b.Loop() {
						if _, err := a.Seal(dst[:0], nonce, pt, msg); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return "1MiB"
	case n >= 1<<10:
		return "1KiB"
	}
	return "64B"
}

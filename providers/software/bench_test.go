package software

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/provider"
)

// The provider benchmarks sit beside the raw library calls they wrap, so
// the provider's overhead (checks, cache lookup, nonce source) shows.

func BenchmarkSign(b *testing.B) {
	b.Run("ed25519-cached", func(b *testing.B) {
		p := newTest(b, Config{KEK: testKEK()})
		r := testRef(b, "bench", provider.Ed25519)
		g, err := p.Generate(context.Background(), r)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		msg := make([]byte, 64)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Sign(ctx, r, g.Handle, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ed25519-raw", func(b *testing.B) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		msg := make([]byte, 64)
		b.ReportAllocs()
		for b.Loop() {
			_ = ed25519.Sign(priv, msg)
		}
	})
}

func BenchmarkSeal1KiB(b *testing.B) {
	pt := make([]byte, 1024)
	aad := make([]byte, 64)
	b.Run("xchacha20-poly1305", func(b *testing.B) {
		p := newTest(b, Config{KEK: testKEK()})
		r := testRef(b, "bench", provider.XChaCha20Poly1305)
		g, err := p.Generate(context.Background(), r)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Seal(ctx, r, g.Handle, pt, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("xchacha20-poly1305-raw", func(b *testing.B) {
		key := make([]byte, chacha20poly1305.KeySize)
		if _, err := rand.Read(key); err != nil {
			b.Fatal(err)
		}
		a, err := chacha20poly1305.NewX(key)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(pt)+a.Overhead())
			if _, err := rand.Read(nonce); err != nil {
				b.Fatal(err)
			}
			_ = a.Seal(nonce, nonce, pt, aad)
		}
	})
}

package core_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/software"
)

// Benchmarks: the core with the software provider against the raw
// primitive in the same run (docs/performance.md records the figures).
//
//	go test -run XXX -bench . -benchtime 2s ./core/

func benchProvider(b *testing.B) provider.Provider {
	b.Helper()
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		b.Fatal(err)
	}
	p, err := software.New(software.Options{KEK: secret.New(kek)})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchKeystore(b *testing.B, a core.Algorithm) (*core.Keystore, core.KeyID) {
	b.Helper()
	p := benchProvider(b)
	ks, err := core.Open(ctx, core.Options{Storage: storage.NewMemory(), Provider: p, Clock: fixedClock{}, Audit: core.DiscardAudit{}})
	if err != nil {
		b.Fatal(err)
	}
	id := mustID(b, "bench/p/"+string(a))
	if _, err := ks.Create(ctx, appBench, id, core.CreateOptions{Algorithm: a}); err != nil {
		b.Fatal(err)
	}
	return ks, id
}

var appBench = core.Caller{App: "bench"}

type fixedClock struct{}

func (fixedClock) Now() time.Time { return epoch }

var msg64 = make([]byte, 64)

func BenchmarkSignEd25519(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		b.ReportAllocs()
		for b.Loop() {
			_ = ed25519.Sign(priv, msg64)
		}
	})
	b.Run("core+software", func(b *testing.B) {
		ks, id := benchKeystore(b, provider.Ed25519)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ks.Sign(ctx, appBench, id, msg64); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSignMLDSA65(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		_, sk, _ := mldsa65.GenerateKey(rand.Reader)
		sig := make([]byte, mldsa65.SignatureSize)
		b.ReportAllocs()
		for b.Loop() {
			if err := mldsa65.SignTo(sk, msg64, nil, true, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("core+software", func(b *testing.B) {
		ks, id := benchKeystore(b, provider.MLDSA65)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ks.Sign(ctx, appBench, id, msg64); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSeal1KiB(b *testing.B) {
	pt := make([]byte, 1024)
	aad := []byte("context")
	b.Run("raw", func(b *testing.B) {
		key := make([]byte, 32)
		a, _ := chacha20poly1305.NewX(key)
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			out := make([]byte, a.NonceSize(), a.NonceSize()+len(pt)+a.Overhead())
			if _, err := rand.Read(out); err != nil {
				b.Fatal(err)
			}
			_ = a.Seal(out, out, pt, aad)
		}
	})
	b.Run("core+software", func(b *testing.B) {
		ks, id := benchKeystore(b, provider.XChaCha20Poly1305)
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ks.Seal(ctx, appBench, id, pt, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnseal1KiB(b *testing.B) {
	ks, id := benchKeystore(b, provider.XChaCha20Poly1305)
	sealed, _, err := ks.Seal(ctx, appBench, id, make([]byte, 1024), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ks.Unseal(ctx, appBench, id, sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
}

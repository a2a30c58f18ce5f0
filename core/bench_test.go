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
	p, err := software.New(software.Config{KEK: secret.New(kek)})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchKeystore(b *testing.B, a core.Algorithm) (*core.Keystore, core.KeyID) {
	b.Helper()
	p := benchProvider(b)
	ks, err := core.Open(ctx, core.Config{Storage: storage.NewMemory(), Provider: p, Clock: fixedClock{}, Audit: core.DiscardAudit{}})
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
			if _, err := ks.Seal(ctx, appBench, id, pt, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnseal1KiB(b *testing.B) {
	ks, id := benchKeystore(b, provider.XChaCha20Poly1305)
	sealed, err := ks.Seal(ctx, appBench, id, make([]byte, 1024), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Unseal(ctx, appBench, id, sealed.Data, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRatios measures the targets as ratios on a shared
// machine: it alternates short slices of the raw primitive and of the same
// operation through the keystore, so both see the same background load,
// and reports keystore/raw throughput:
//
//	sign-ed25519   target >= 0.9
//	seal-1KiB      target >= 0.8
//	sign-ml-dsa-65 (reported)
//
// Run with: go test ./core -run '^$' -bench Ratios -benchtime 10x
func BenchmarkRatios(b *testing.B) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	_, mlPriv, _ := mldsa65.GenerateKey(rand.Reader)
	mlSig := make([]byte, mldsa65.SignatureSize)
	aeadKey := make([]byte, 32)
	xc, _ := chacha20poly1305.NewX(aeadKey)
	pt, aad := make([]byte, 1024), []byte("context")
	edKS, edID := benchKeystore(b, provider.Ed25519)
	mlKS, mlID := benchKeystore(b, provider.MLDSA65)
	xKS, xID := benchKeystore(b, provider.XChaCha20Poly1305)
	type pair struct {
		name      string
		raw, core func() error
		rawN      float64
		coreN     float64
		rawT      time.Duration
		coreT     time.Duration
	}
	pairs := []*pair{
		{name: "sign-ed25519",
			raw:  func() error { _ = ed25519.Sign(edPriv, msg64); return nil },
			core: func() error { _, err := edKS.Sign(ctx, appBench, edID, msg64); return err }},
		{name: "seal-1KiB",
			raw: func() error {
				out := make([]byte, xc.NonceSize(), xc.NonceSize()+len(pt)+xc.Overhead())
				if _, err := rand.Read(out); err != nil {
					return err
				}
				_ = xc.Seal(out, out, pt, aad)
				return nil
			},
			core: func() error { _, err := xKS.Seal(ctx, appBench, xID, pt, aad); return err }},
		{name: "sign-ml-dsa-65",
			raw:  func() error { return mldsa65.SignTo(mlPriv, msg64, nil, true, mlSig) },
			core: func() error { _, err := mlKS.Sign(ctx, appBench, mlID, msg64); return err }},
	}
	const slice = 20 * time.Millisecond
	run := func(f func() error) (float64, time.Duration) {
		start := time.Now()
		n := 0
		for time.Since(start) < slice {
			for range 16 {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
			n += 16
		}
		return float64(n), time.Since(start)
	}
	for b.Loop() {
		for range 10 {
			for _, p := range pairs {
				n, d := run(p.raw)
				p.rawN, p.rawT = p.rawN+n, p.rawT+d
				n, d = run(p.core)
				p.coreN, p.coreT = p.coreN+n, p.coreT+d
			}
		}
	}
	for _, p := range pairs {
		rawRate := p.rawN / p.rawT.Seconds()
		coreRate := p.coreN / p.coreT.Seconds()
		b.ReportMetric(coreRate/rawRate, p.name+"-ratio")
		b.ReportMetric(coreRate, p.name+"-core/s")
	}
}

package server

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/audit"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// Compare: go test -run '^$' -bench 'Ed25519|SignBatch|SignRPC' ./server
// KEYSTORED_BENCH_REAL_AUDIT=1 writes to a real audit log (audit.Open)
// instead of the in-memory fake: allocs/op and profiles as in the daemon.
// SignBatch64 reports signatures/s; the target is ≥ 0.8× RawEd25519Sign's
// (single-core) and close to RawEd25519SignParallel's on all cores.

var benchMsg = make([]byte, 64)

func BenchmarkRawEd25519Sign(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	b.ReportAllocs()
	for b.Loop() {
		ed25519.Sign(priv, benchMsg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

func BenchmarkRawEd25519SignParallel(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ed25519.Sign(priv, benchMsg)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

func benchEnv(b *testing.B) *env {
	b.Helper()
	// No rate limit: at 64 callers the in-process server passes the
	// default 20,000 requests/s, and a refused call would end the run.
	o := envOpts{limits: Limits{RatePerUID: 1 << 30, BurstPerUID: 1 << 30}}
	if os.Getenv("KEYSTORED_BENCH_REAL_AUDIT") != "" {
		// The daemon's audit log (a file in a temporary directory, the
		// default sync interval) instead of the in-memory fake, whose
		// growing slice of records is no allocation the daemon makes.
		l, err := audit.Open(filepath.Join(b.TempDir(), "audit", "audit.log"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := l.Close(); err != nil {
				b.Error(err)
			}
		})
		o.log = l
	}
	e := newEnv(b, o)
	if _, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/bench", Algorithm: "ed25519"}); err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkSignBatch64(b *testing.B) {
	e := benchEnv(b)
	items := make([]*keystorev1.SignRequest, 64)
	for i := range items {
		items[i] = &keystorev1.SignRequest{Key: "sig/bench", Message: benchMsg}
	}
	req := &keystorev1.SignBatchRequest{Items: items}
	b.ReportAllocs()
	for b.Loop() {
		r, err := e.keys.SignBatch(bg, req)
		if err != nil {
			b.Fatal(err)
		}
		if r.GetResults()[63].GetError() != nil {
			b.Fatal(r.GetResults()[63].GetError())
		}
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "sigs/s")
}

func BenchmarkSignRPCParallel(b *testing.B) {
	e := benchEnv(b)
	req := &keystorev1.SignRequest{Key: "sig/bench", Message: benchMsg}
	b.SetParallelism(32) // 32 × GOMAXPROCS concurrent callers
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.keys.Sign(bg, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

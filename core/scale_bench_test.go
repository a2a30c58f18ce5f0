package core_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/software"
)

// BenchmarkSignManyKeys signs in process on uniformly random keys among
// n, all cached (a first pass touches each): what the core and the
// software provider add per key beyond 10 keys, without the daemon.
//
//	go test ./core -run '^$' -bench SignManyKeys -benchtime 2s
func BenchmarkSignManyKeys(b *testing.B) {
	p := benchProvider(b)
	ks, err := core.Open(ctx, core.Config{Storage: storage.NewMemory(), Provider: p, Clock: fixedClock{}, Audit: core.DiscardAudit{},
		Quotas: core.Quotas{Default: core.Quota{Keys: 1 << 20}}})
	if err != nil {
		b.Fatal(err)
	}
	const most = 100000
	ids := make([]core.KeyID, most)
	for i := range ids {
		ids[i] = mustID(b, fmt.Sprintf("bench/p/k%06d", i))
		if _, err := ks.Create(ctx, appBench, ids[i], core.CreateOptions{Algorithm: provider.Ed25519}); err != nil {
			b.Fatal(err)
		}
		if _, err := ks.Sign(ctx, appBench, ids[i], msg64); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []int{10, most} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(uint64(n), 0))
				for pb.Next() {
					if _, err := ks.Sign(ctx, appBench, ids[r.IntN(n)], msg64); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMemoryPerKey reports the live heap each key costs once in
// memory: its record in core's cache (a Get), then its handle and
// unwrapped key in the software provider's cache (a Sign), then its
// entry in the key index (a List). A fresh keystore and provider over a
// state of n keys; heap after GC.
//
//	go test ./core -run '^$' -bench MemoryPerKey -benchtime 1x
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 10000
	kek := make([]byte, 32)
	newProvider := func() provider.Provider {
		p, err := software.New(software.Config{KEK: secret.New(slices.Clone(kek))})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	st := storage.NewMemory()
	q := core.Quotas{Default: core.Quota{Keys: 1 << 20}}
	open := func() *core.Keystore {
		ks, err := core.Open(ctx, core.Config{Storage: st, Provider: newProvider(), Clock: fixedClock{}, Audit: core.DiscardAudit{}, Quotas: q})
		if err != nil {
			b.Fatal(err)
		}
		return ks
	}
	ks := open()
	ids := make([]core.KeyID, n)
	for i := range ids {
		ids[i] = mustID(b, fmt.Sprintf("bench/p/k%06d", i))
		if _, err := ks.Create(ctx, appBench, ids[i], core.CreateOptions{Algorithm: provider.Ed25519}); err != nil {
			b.Fatal(err)
		}
	}
	ks = nil
	for b.Loop() {
		h0 := liveHeap()
		ks = open()
		for _, id := range ids {
			if _, err := ks.Get(ctx, appBench, id); err != nil {
				b.Fatal(err)
			}
		}
		h1 := liveHeap()
		for _, id := range ids {
			if _, err := ks.Sign(ctx, appBench, id, msg64); err != nil {
				b.Fatal(err)
			}
		}
		h2 := liveHeap()
		if _, err := ks.List(ctx, core.Caller{Operator: true}, core.ListOptions{PageSize: 1}); err != nil {
			b.Fatal(err)
		}
		h3 := liveHeap()
		b.ReportMetric(float64(h1-h0)/n, "record-B/key")
		b.ReportMetric(float64(h2-h1)/n, "unwrapped-B/key")
		b.ReportMetric(float64(h3-h2)/n, "index-B/key")
		runtime.KeepAlive(ks)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

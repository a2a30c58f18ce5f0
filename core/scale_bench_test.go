package core_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
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
	const most = 20000
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

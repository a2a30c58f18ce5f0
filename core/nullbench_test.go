package core_test

import (
	"context"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// nullProvider wraps a real provider for Generate but answers Seal with
// fixed bytes, so BenchmarkSealOverhead measures the core's own cost.
type nullProvider struct{ provider.Provider }

func (n nullProvider) SealAppend(_ context.Context, dst []byte, _ provider.KeyRef, _ provider.Handle, pt, _ []byte) ([]byte, error) {
	dst = append(dst, make([]byte, 24)...)
	dst = append(dst, pt...)
	return append(dst, make([]byte, 16)...), nil
}

// BenchmarkSealOverhead is the core's cost of a seal around a provider
// that does no cryptography (lookups, checks, budget, envelope, audit).
func BenchmarkSealOverhead(b *testing.B) {
	base, id := benchKeystore(b, provider.XChaCha20Poly1305)
	_ = base
	p := nullProvider{benchProvider(b)}
	ks, err := core.Open(ctx, core.Config{Storage: storage.NewMemory(), Provider: p, Clock: fixedClock{}, Audit: core.DiscardAudit{}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ks.Create(ctx, appBench, id, core.CreateOptions{Algorithm: provider.XChaCha20Poly1305}); err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Seal(ctx, appBench, id, pt, []byte("context")); err != nil {
			b.Fatal(err)
		}
	}
}

package pkcs11

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// BenchmarkEd25519Sign compares, in one run and on one SoftHSM2 token,
// Ed25519 signing through the plugin binary (daemon-side client → gRPC →
// plugin process → pkcs11 provider → SoftHSM2) with SoftHSM2 called
// directly from this process (C_SignInit + C_Sign, one session per
// goroutine), at 1 and 8 concurrent callers. The in-process provider (no
// plugin boundary) is measured too, to split the cost. Each sub-benchmark
// reports ops/s; the others also report x-direct, their ops/s over the
// direct ones' at the same number of callers (the target for the plugin is
// at least 0.8 at 8 callers).
func BenchmarkEd25519Sign(b *testing.B) {
	tk := newToken(b, "bench")
	client := tk.launch(b)
	plugRef := mustRef(b, "bench-plugin", 1, provider.Ed25519)
	plugKey := generate(b, client, plugRef)

	inproc := tk.open(b)
	directRef := mustRef(b, "bench-direct", 1, provider.Ed25519)
	inprocKey := generate(b, inproc, directRef)
	d := tk.openDirect(b)
	objs := d.objects(b, directRef, p11.CKO_PRIVATE_KEY)
	if len(objs) != 1 {
		b.Fatalf("%d private keys for %s, want 1", len(objs), directRef)
	}
	priv := objs[0]
	msg := make([]byte, 64)

	for _, callers := range []int{1, 8} {
		var directOps float64
		b.Run(fmt.Sprintf("callers=%d/direct", callers), func(b *testing.B) {
			sessions := make([]p11.SessionHandle, callers)
			for i := range sessions {
				sessions[i] = d.session(b)
			}
			mech := []*p11.Mechanism{p11.NewMechanism(ckmEdDSA, nil)}
			b.ResetTimer()
			parallel(b, callers, func(w int) error {
				if err := d.ctx.SignInit(sessions[w], mech, priv); err != nil {
					return err
				}
				_, err := d.ctx.Sign(sessions[w], msg)
				return err
			})
			directOps = opsPerSecond(b)
			b.ReportMetric(directOps, "ops/s")
		})
		b.Run(fmt.Sprintf("callers=%d/in-process", callers), func(b *testing.B) {
			ctx := b.Context()
			b.ResetTimer()
			parallel(b, callers, func(int) error {
				_, err := inproc.Sign(ctx, directRef, inprocKey.Handle, msg)
				return err
			})
			ops := opsPerSecond(b)
			b.ReportMetric(ops, "ops/s")
			if directOps > 0 {
				b.ReportMetric(ops/directOps, "x-direct")
			}
		})
		b.Run(fmt.Sprintf("callers=%d/plugin", callers), func(b *testing.B) {
			ctx := b.Context()
			b.ResetTimer()
			parallel(b, callers, func(int) error {
				_, err := client.Sign(ctx, plugRef, plugKey.Handle, msg)
				return err
			})
			ops := opsPerSecond(b)
			b.ReportMetric(ops, "ops/s")
			if directOps > 0 {
				b.ReportMetric(ops/directOps, "x-direct")
			}
		})
	}
}

// parallel runs b.N calls of op spread over callers goroutines (op gets
// the goroutine's index) and fails b on the first error.
func parallel(b *testing.B, callers int, op func(w int) error) {
	var (
		left    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	left.Store(int64(b.N))
	for w := range callers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := op(w); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}

// opsPerSecond is b.N over the measured time.
func opsPerSecond(b *testing.B) float64 {
	s := b.Elapsed().Seconds()
	if s <= 0 {
		return 0
	}
	return float64(b.N) / s
}

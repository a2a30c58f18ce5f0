package pkcs11

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// at least 0.9 at 8 callers; BenchmarkEd25519SignRatio measures it
// interleaved).
func BenchmarkEd25519Sign(b *testing.B) {
	msg := make([]byte, 64)
	compareDirect(b, provider.Ed25519, p11.CKO_PRIVATE_KEY,
		func(d *direct, sh p11.SessionHandle, obj p11.ObjectHandle) error {
			if err := d.ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(ckmEdDSA, nil)}, obj); err != nil {
				return err
			}
			_, err := d.ctx.Sign(sh, msg)
			return err
		},
		func(ctx context.Context, p provider.Provider, ref provider.KeyRef, g provider.Generated) error {
			_, err := p.Sign(ctx, ref, g.Handle, msg)
			return err
		})
}

// BenchmarkECDSAP256Sign is BenchmarkEd25519Sign for ECDSA P-256: the
// direct calls sign a SHA-256 digest with CKM_ECDSA (SoftHSM2's r ‖ s);
// the provider signs a 64-byte message, which it hashes, and encodes the
// signature as ASN.1 DER.
func BenchmarkECDSAP256Sign(b *testing.B) {
	msg := make([]byte, 64)
	digest := sha256.Sum256(msg)
	compareDirect(b, provider.ECDSAP256, p11.CKO_PRIVATE_KEY,
		func(d *direct, sh p11.SessionHandle, obj p11.ObjectHandle) error {
			if err := d.ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, obj); err != nil {
				return err
			}
			_, err := d.ctx.Sign(sh, digest[:])
			return err
		},
		func(ctx context.Context, p provider.Provider, ref provider.KeyRef, g provider.Generated) error {
			_, err := p.Sign(ctx, ref, g.Handle, msg)
			return err
		})
}

// BenchmarkHMACSHA256 is BenchmarkEd25519Sign for the tag of a 1 KiB
// message under an HMAC-SHA-256 key (CKM_SHA256_HMAC).
func BenchmarkHMACSHA256(b *testing.B) {
	msg := make([]byte, 1024)
	compareDirect(b, provider.HMACSHA256, p11.CKO_SECRET_KEY,
		func(d *direct, sh p11.SessionHandle, obj p11.ObjectHandle) error {
			if err := d.ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_SHA256_HMAC, nil)}, obj); err != nil {
				return err
			}
			_, err := d.ctx.Sign(sh, msg)
			return err
		},
		func(ctx context.Context, p provider.Provider, ref provider.KeyRef, g provider.Generated) error {
			_, err := p.MAC(ctx, ref, g.Handle, msg)
			return err
		})
}

// compareDirect runs, for a key of algorithm a, the sub-benchmarks
// callers=N/direct (directOp on one session per goroutine with the key's
// object of class class), callers=N/in-process and callers=N/plugin (op
// on the in-process provider and through the plugin binary), for N = 1
// and 8.
func compareDirect(b *testing.B, a provider.Algorithm, class uint,
	directOp func(d *direct, sh p11.SessionHandle, obj p11.ObjectHandle) error,
	op func(ctx context.Context, p provider.Provider, ref provider.KeyRef, g provider.Generated) error,
) {
	tk := newToken(b, "bench")
	client := tk.launch(b)
	plugRef := mustRef(b, "bench-plugin", 1, a)
	plugKey := generate(b, client, plugRef)

	inproc := tk.open(b)
	directRef := mustRef(b, "bench-direct", 1, a)
	inprocKey := generate(b, inproc, directRef)
	d := tk.openDirect(b)
	objs := d.objects(b, directRef, class)
	if len(objs) != 1 {
		b.Fatalf("%d objects of class %d for %s, want 1", len(objs), class, directRef)
	}
	obj := objs[0]
	// A plugin built before the plugin protocol carried an operation
	// answers ENOTSUP for it: nothing to measure.
	pluginErr := op(b.Context(), client, plugRef, plugKey)

	for _, callers := range []int{1, 8} {
		var directOps float64
		b.Run(fmt.Sprintf("callers=%d/direct", callers), func(b *testing.B) {
			sessions := make([]p11.SessionHandle, callers)
			for i := range sessions {
				sessions[i] = d.session(b)
			}
			b.ResetTimer()
			parallel(b, callers, func(w int) error { return directOp(d, sessions[w], obj) })
			directOps = opsPerSecond(b)
			b.ReportMetric(directOps, "ops/s")
		})
		for _, via := range []struct {
			name string
			p    provider.Provider
			ref  provider.KeyRef
			g    provider.Generated
		}{{"in-process", inproc, directRef, inprocKey}, {"plugin", client, plugRef, plugKey}} {
			b.Run(fmt.Sprintf("callers=%d/%s", callers, via.name), func(b *testing.B) {
				if via.name == "plugin" && pluginErr != nil {
					b.Skipf("the plugin does not do it: %v", pluginErr)
				}
				ctx := b.Context()
				b.ResetTimer()
				parallel(b, callers, func(int) error { return op(ctx, via.p, via.ref, via.g) })
				ops := opsPerSecond(b)
				b.ReportMetric(ops, "ops/s")
				if directOps > 0 {
					b.ReportMetric(ops/directOps, "x-direct")
				}
			})
		}
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

// BenchmarkEd25519SignRatio measures, interleaved in one run on one
// SoftHSM2 token, Ed25519 signing through the plugin binary against
// SoftHSM2 called directly, at 1 and 8 callers: each b.N round runs 400
// signs of each, alternating, and the sub-benchmark reports the plugin's
// throughput over the direct one (x-direct; the target at 8 callers is
// 0.9); 400 signs with the provider in process follow in each round, to
// split the cost (in-process-x-direct). BENCH_POOL_SIZE=N passes --pool-size N to the plugin.
func BenchmarkEd25519SignRatio(b *testing.B) {
	msg := make([]byte, 64)
	tk := newToken(b, "ratio")
	var extra []string
	if n := os.Getenv("BENCH_POOL_SIZE"); n != "" {
		extra = []string{"--pool-size", n}
	}
	client := tk.launch(b, extra...)
	plugRef := mustRef(b, "ratio-plugin", 1, provider.Ed25519)
	plugKey := generate(b, client, plugRef)
	inproc := tk.open(b)
	directRef := mustRef(b, "ratio-direct", 1, provider.Ed25519)
	inprocKey := generate(b, inproc, directRef)
	d := tk.openDirect(b)
	objs := d.objects(b, directRef, p11.CKO_PRIVATE_KEY)
	if len(objs) != 1 {
		b.Fatalf("%d private key objects for %s, want 1", len(objs), directRef)
	}
	const n = 400
	for _, callers := range []int{1, 8} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			sessions := make([]p11.SessionHandle, callers)
			for i := range sessions {
				sessions[i] = d.session(b)
			}
			ctx := b.Context()
			var tDirect, tPlugin, tInproc time.Duration
			for b.Loop() {
				t0 := time.Now()
				run(b, callers, n, func(w int) error {
					if err := d.ctx.SignInit(sessions[w], []*p11.Mechanism{p11.NewMechanism(ckmEdDSA, nil)}, objs[0]); err != nil {
						return err
					}
					_, err := d.ctx.Sign(sessions[w], msg)
					return err
				})
				tDirect += time.Since(t0)
				t0 = time.Now()
				run(b, callers, n, func(int) error {
					_, err := client.Sign(ctx, plugRef, plugKey.Handle, msg)
					return err
				})
				tPlugin += time.Since(t0)
				t0 = time.Now()
				run(b, callers, n, func(int) error {
					_, err := inproc.Sign(ctx, directRef, inprocKey.Handle, msg)
					return err
				})
				tInproc += time.Since(t0)
			}
			b.ReportMetric(tDirect.Seconds()/tPlugin.Seconds(), "x-direct")
			b.ReportMetric(tDirect.Seconds()/tInproc.Seconds(), "in-process-x-direct")
		})
	}
}

// run makes n calls of op spread over callers goroutines (op gets the
// goroutine's index) and fails b on the first error.
func run(b *testing.B, callers, n int, op func(w int) error) {
	var (
		left    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	left.Store(int64(n))
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

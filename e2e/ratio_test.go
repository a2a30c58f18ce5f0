package e2e

import (
	"context"
	"crypto/ed25519"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/e2e/internal/echo"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// BenchmarkTargets measures the two targets as ratios on a machine that
// other work shares: each loop iteration runs the four workloads one after
// the other for a short slice each (Sign at 64 callers, the gRPC echo at
// 64 callers, SignBatch(64) at 4 callers, in-process ed25519.Sign on every
// core), so both sides of a ratio see the same background load. It
// reports the rates summed over all slices and the ratios:
//
//	sign64/echo64  target >= 0.90
//	batch/raw      target >= 0.80
//
// Run with: go test -run '^$' -bench Targets -benchtime 10s ./e2e/
func BenchmarkTargets(b *testing.B) {
	ctx := context.Background()
	d := daemontest.Start(b, daemontest.Options{})
	c := dial(b, d)
	if _, err := c.Create(ctx, "bench/ed", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 32)
	batch := make([]client.SignItem, 64)
	for i := range batch {
		batch[i] = client.SignItem{Key: "bench/ed", Message: msg}
	}
	cc := startEcho(b)
	req := &keystorev1.SignRequest{Key: "bench/ed", Message: msg}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	workloads := []struct {
		name    string
		callers int
		perOp   int
		op      func() error
	}{
		{"sign64", 64, 1, func() error { _, err := c.Sign(ctx, "bench/ed", msg); return err }},
		{"echo64", 64, 1, func() error { _, err := echo.Call(ctx, cc, req); return err }},
		{"batch", 4, len(batch), func() error {
			res, err := c.SignBatch(ctx, batch)
			if err == nil {
				for _, r := range res {
					if r.Err != nil {
						return r.Err
					}
				}
			}
			return err
		}},
		{"raw", runtime.GOMAXPROCS(0), 1, func() error { ed25519.Sign(priv, msg); return nil }},
	}
	const slice = 250 * time.Millisecond
	items := make([]float64, len(workloads))
	spent := make([]time.Duration, len(workloads))
	for b.Loop() {
		for i, w := range workloads {
			n, dur, err := runFor(slice, w.callers, w.op)
			if err != nil {
				b.Fatalf("%s: %v", w.name, err)
			}
			items[i] += float64(n * w.perOp)
			spent[i] += dur
		}
	}
	rate := func(i int) float64 { return items[i] / spent[i].Seconds() }
	for i, w := range workloads {
		b.ReportMetric(rate(i), w.name+"/s")
	}
	b.ReportMetric(rate(0)/rate(1), "sign64/echo64")
	b.ReportMetric(rate(2)/rate(3), "batch/raw")
}

// runFor runs op from n goroutines for about d and returns how many ops
// completed and the time they took.
func runFor(d time.Duration, n int, op func() error) (int, time.Duration, error) {
	var count atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for range n {
		wg.Go(func() {
			for !stop.Load() {
				if err := op(); err != nil {
					once.Do(func() { firstErr = err })
					stop.Store(true)
					return
				}
				count.Add(1)
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return int(count.Load()), time.Since(start), firstErr
}

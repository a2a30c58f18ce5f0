package e2e

import (
	"context"
	"crypto/ed25519"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	circled25519 "github.com/cloudflare/circl/sign/ed25519"
	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/e2e/internal/plainsign"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// BenchmarkTargets measures the daemon's targets as ratios on a machine
// that other work shares: each round runs the four workloads one after
// the other for a short slice each, so both sides of a ratio see the same
// background load:
//
//   - sign64: Sign at 64 callers through the real daemon (a separate
//     process, the software provider) and the client library;
//   - plain64: the same Ed25519 signature of the same message at 64
//     callers from a plain gRPC service in a process of its own, over a
//     Unix socket, called with a bare grpc.ClientConn.Invoke (package
//     plainsign);
//   - batch: SignBatch(64) at 4 callers through the daemon;
//   - raw: in-process ed25519.Sign on every core.
//
// It reports the rates summed over all rounds, and the ratio of every
// round's rates (min and median over the rounds, and the ratio of the
// sums); also the CPU time (this process's and the server's) per item of
// each workload and their ratios ("-cpu": what the ratio would be with
// the cores to itself), which background load hardly moves:
//
//	sign64/plain64  target >= 0.95
//	batch/raw       target >= 0.80
//
// Run with: go test ./e2e -run '^$' -bench Targets -benchtime 20x
// (20 rounds of 4 x 250 ms). KEYSTORED_BENCH_DAEMON_ENV adds
// space-separated NAME=value pairs to the daemon's environment (e.g.
// GOGC=400, to see what the garbage collector costs).
func BenchmarkTargets(b *testing.B) {
	ctx := context.Background()
	d := daemontest.Start(b, daemontest.Options{Env: strings.Fields(os.Getenv("KEYSTORED_BENCH_DAEMON_ENV"))})
	c := dial(b, d)
	if _, err := c.Create(ctx, "bench/ed", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 32)
	batch := make([]client.SignItem, 64)
	for i := range batch {
		batch[i] = client.SignItem{Key: "bench/ed", Message: msg}
	}
	cc, plainPid := startPlainPid(b)
	req := &keystorev1.SignRequest{Key: "bench/ed", Message: msg}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	workloads := []struct {
		name    string
		callers int
		perOp   int
		pid     int // the server's process, whose CPU time counts too
		op      func() error
	}{
		{"sign64", 64, 1, d.Pid(), func() error { _, err := c.Sign(ctx, "bench/ed", msg); return err }},
		{"plain64", 64, 1, plainPid, func() error { _, err := plainsign.Call(ctx, cc, req); return err }},
		{"batch", 4, len(batch), d.Pid(), func() error {
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
		{"raw", runtime.GOMAXPROCS(0), 1, 0, func() error { circled25519.Sign(circled25519.PrivateKey(priv), msg); return nil }},
	}
	const slice = 250 * time.Millisecond
	// A warm-up slice of each: connections, stacks, caches.
	for _, w := range workloads {
		if _, _, err := runFor(slice/5, w.callers, w.op); err != nil {
			b.Fatalf("%s: %v", w.name, err)
		}
	}
	items := make([]float64, len(workloads))
	spent := make([]time.Duration, len(workloads))
	cpu := make([]time.Duration, len(workloads)) // this process's and the server's
	var signRatios, batchRatios []float64
	for b.Loop() {
		round := make([]float64, len(workloads))
		for i, w := range workloads {
			cpu0 := takeCPU(b, w.pid)
			n, dur, err := runFor(slice, w.callers, w.op)
			if err != nil {
				b.Fatalf("%s: %v", w.name, err)
			}
			used := takeCPU(b, w.pid).sub(cpu0)
			cpu[i] += used.self + used.daemon
			items[i] += float64(n * w.perOp)
			spent[i] += dur
			round[i] = float64(n*w.perOp) / dur.Seconds()
		}
		signRatios = append(signRatios, round[0]/round[1])
		batchRatios = append(batchRatios, round[2]/round[3])
	}
	rate := func(i int) float64 { return items[i] / spent[i].Seconds() }
	for i, w := range workloads {
		b.ReportMetric(rate(i), w.name+"/s")
	}
	b.ReportMetric(rate(0)/rate(1), "sign64/plain64")
	b.ReportMetric(slices.Min(signRatios), "sign64/plain64-min")
	b.ReportMetric(median(signRatios), "sign64/plain64-median")
	b.ReportMetric(rate(2)/rate(3), "batch/raw")
	b.ReportMetric(slices.Min(batchRatios), "batch/raw-min")
	b.ReportMetric(median(batchRatios), "batch/raw-median")
	// CPU time (client and server) per item: what each side would cost
	// on cores of its own, hardly moved by other work on the machine.
	perItem := func(i int) float64 { return cpu[i].Seconds() * 1e6 / items[i] }
	for i, w := range workloads {
		b.ReportMetric(perItem(i), w.name+"-cpu-µs/item")
	}
	b.ReportMetric(perItem(1)/perItem(0), "sign64/plain64-cpu")
	b.ReportMetric(perItem(3)/perItem(2), "batch/raw-cpu")
}

// median returns the median of v (not empty); it sorts v.
func median(v []float64) float64 {
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
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

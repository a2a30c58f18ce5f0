package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	circled25519 "github.com/cloudflare/circl/sign/ed25519"
	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/e2e/internal/plainsign"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// BenchmarkDaemon measures keystored through the real daemon (a separate
// process, the default software provider, one client connection shared by
// all callers) and, in the same run, the two baselines of the targets:
//
//   - Sign at 64 callers >= 0.95x PlainSign at 64 callers (a plain gRPC
//     service in a process of its own doing the same Ed25519 signature,
//     over a Unix socket: package plainsign);
//   - SignBatch >= 0.8x raw in-process ed25519.Sign on every core.
//
// Run with: go test -run '^$' -bench Daemon -benchtime 3s -v ./e2e/
// The ratios are logged at the end (-v shows them). On a machine shared
// with other work, BenchmarkTargets gives steadier ratios.
func BenchmarkDaemon(b *testing.B) {
	ctx := context.Background()
	d := daemontest.Start(b, daemontest.Options{})
	c := dial(b, d)
	if _, err := c.Create(ctx, "bench/ed", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Create(ctx, "bench/box", client.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 32)
	rates := map[string]float64{}
	pid := d.Pid()

	for _, n := range []int{1, 16, 64} {
		name := fmt.Sprintf("Sign/callers=%d", n)
		b.Run(name, func(b *testing.B) {
			rates[name] = callers(b, pid, n, "ops/s", 1, func() error {
				_, err := c.Sign(ctx, "bench/ed", msg)
				return err
			})
		})
	}

	batch := make([]client.SignItem, 64)
	for i := range batch {
		batch[i] = client.SignItem{Key: "bench/ed", Message: msg}
	}
	for _, n := range []int{1, 4} {
		name := fmt.Sprintf("SignBatch64/callers=%d", n)
		b.Run(name, func(b *testing.B) {
			rates[name] = callers(b, pid, n, "signatures/s", len(batch), func() error {
				res, err := c.SignBatch(ctx, batch)
				if err != nil {
					return err
				}
				for _, r := range res {
					if r.Err != nil {
						return r.Err
					}
				}
				return nil
			})
		})
	}

	plaintext := make([]byte, 1024)
	for _, n := range []int{1, 64} {
		name := fmt.Sprintf("Seal1KiB/callers=%d", n)
		b.Run(name, func(b *testing.B) {
			rates[name] = callers(b, pid, n, "ops/s", 1, func() error {
				_, err := c.Seal(ctx, "bench/box", plaintext, nil)
				return err
			})
		})
	}

	cc, plainPid := startPlainPid(b)
	req := &keystorev1.SignRequest{Key: "bench/ed", Message: msg}
	b.Run("PlainSign/callers=64", func(b *testing.B) {
		rates["PlainSign/callers=64"] = callers(b, plainPid, 64, "ops/s", 1, func() error {
			_, err := plainsign.Call(ctx, cc, req)
			return err
		})
	})

	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("Ed25519InProcess/cores=%d", runtime.GOMAXPROCS(0))
	b.Run(name, func(b *testing.B) {
		rates["raw"] = callers(b, 0, runtime.GOMAXPROCS(0), "signatures/s", 1, func() error {
			circled25519.Sign(circled25519.PrivateKey(priv), msg)
			return nil
		})
	})

	if e, s := rates["PlainSign/callers=64"], rates["Sign/callers=64"]; e > 0 {
		b.Logf("Sign/callers=64 %.0f ops/s / PlainSign/callers=64 %.0f ops/s = %.2f (target >= 0.95)", s, e, s/e)
	}
	raw := rates["raw"]
	for _, n := range []int{1, 4} {
		if s := rates[fmt.Sprintf("SignBatch64/callers=%d", n)]; raw > 0 {
			b.Logf("SignBatch64/callers=%d %.0f signatures/s / in-process ed25519 %.0f signatures/s = %.2f (target >= 0.80)", n, s, raw, s/raw)
		}
	}
}

// callers runs op b.N times from n goroutines and reports the rate (ops
// times perOp, per second) under unit, which it also returns. It also
// reports the CPU time per item of this process (the client; for the
// in-process baseline, everything) and of the server's process pid (the
// daemon or the plainsign baseline; if not 0): unlike
// the rates, these hardly change when other work shares the machine.
func callers(b *testing.B, pid, n int, unit string, perOp int, op func() error) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	cpu0 := takeCPU(b, pid)
	w0 := writeCalls(b, pid)
	b.ResetTimer()
	for range n {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := op(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	cpu := takeCPU(b, pid).sub(cpu0)
	ops := float64(b.N * perOp)
	b.ReportMetric(float64(cpu.self.Microseconds())/ops, "bench-cpu-µs/op")
	if pid != 0 {
		b.ReportMetric(float64(cpu.daemon.Microseconds())/ops, "daemon-cpu-µs/op")
		b.ReportMetric(float64(writeCalls(b, pid)-w0)/float64(b.N), "daemon-writes/call")
	}
	rate := ops / b.Elapsed().Seconds()
	b.ReportMetric(rate, unit)
	return rate
}

// writeCalls returns the write(2)-family system calls process pid has
// made (/proc/PID/io syscw: sockets and files), 0 for pid 0.
func writeCalls(b *testing.B, pid int) int64 {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("/proc/%d/io has no syscw", pid)
	return 0
}

// startPlain starts the plainsign baseline's process and connects to it.
func startPlain(b *testing.B) *grpc.ClientConn {
	cc, _ := startPlainPid(b)
	return cc
}

// startPlainPid is startPlain, also returning the baseline's pid.
func startPlainPid(b *testing.B) (*grpc.ClientConn, int) {
	p := plainsign.Start(b)
	cc, err := plainsign.Dial(p.Socket)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := cc.Close(); err != nil {
			b.Error(err)
		}
	})
	return cc, p.Pid
}

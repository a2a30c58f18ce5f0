package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/software"
)

// benchKey generates an ed25519 key with p.
func benchKey(b *testing.B, p provider.Provider) (provider.KeyRef, provider.Handle) {
	b.Helper()
	info, err := p.Info(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	ref := signRef(b, info.Name)
	g, err := p.Generate(b.Context(), ref)
	if err != nil {
		b.Fatal(err)
	}
	return ref, g.Handle
}

// signLoad runs n signs with p from callers goroutines and returns the
// elapsed time and every call's latency.
func signLoad(b *testing.B, p provider.Provider, ref provider.KeyRef, h provider.Handle, callers, n int) (time.Duration, []time.Duration) {
	b.Helper()
	ctx := context.Background()
	msg := make([]byte, 64)
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if _, err := p.Sign(ctx, ref, h, msg); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return elapsed, lat
}

// report adds ops/s, p50 and p99 (µs) to b.
func report(b *testing.B, elapsed time.Duration, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// benchProviders returns the in-process software provider and the
// software plugin binary's client.
func benchProviders(b *testing.B) (inproc, plug provider.Provider) {
	b.Helper()
	p, err := software.New(software.Config{KEKFile: filepath.Join(b.TempDir(), "kek"), Create: true})
	if err != nil {
		b.Fatal(err)
	}
	return p, softwarePlugin(b, Config{})
}

// BenchmarkSign compares ed25519 Sign in process and through the software
// plugin (a real subprocess over gRPC with mutual TLS), sequentially and
// with 16 and 64 concurrent callers.
func BenchmarkSign(b *testing.B) {
	inproc, plug := benchProviders(b)
	for _, side := range []struct {
		name string
		p    provider.Provider
	}{{"inprocess", inproc}, {"plugin", plug}} {
		ref, h := benchKey(b, side.p)
		for _, callers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", side.name, callers), func(b *testing.B) {
				b.ReportAllocs()
				elapsed, lat := signLoad(b, side.p, ref, h, callers, b.N)
				report(b, elapsed, lat)
			})
		}
	}
}

// BenchmarkSignRatio64 runs the same number of signs at 64 callers in
// process and through the plugin, alternating, and reports the plugin's
// throughput as a fraction of the in-process one.
func BenchmarkSignRatio64(b *testing.B) {
	inproc, plug := benchProviders(b)
	refIn, hIn := benchKey(b, inproc)
	refPl, hPl := benchKey(b, plug)
	var tIn, tPl time.Duration
	for b.Loop() {
		e, _ := signLoad(b, inproc, refIn, hIn, 64, 2000)
		tIn += e
		e, _ = signLoad(b, plug, refPl, hPl, 64, 2000)
		tPl += e
	}
	b.ReportMetric(tIn.Seconds()/tPl.Seconds(), "plugin/inprocess")
}

// BenchmarkPluginStart measures Launch (copy and hash the binary, start,
// handshake with mutual TLS, Info) and Close of the software plugin.
func BenchmarkPluginStart(b *testing.B) {
	sw, _, _ := binaries(b)
	sum := sha256File(b, sw)
	kek := filepath.Join(b.TempDir(), "kek")
	priv := privDir(b)
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		c, err := Launch(b.Context(), Config{Path: sw, SHA256: sum, PrivateDir: priv, Args: []string{"--kek-file", kek}, Env: newStateEnv})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "p50-start-ms")
}

// cpuSeconds returns the user+system CPU time of process pid ("self" for
// this one) from /proc, in seconds (Linux).
func cpuSeconds(b *testing.B, pid string) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Skipf("no /proc/%s/stat (%v): this benchmark needs Linux", pid, err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		b.Fatalf("unexpected /proc/%s/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("unexpected /proc/%s/stat", pid)
	}
	return (utime + stime) / 100 // USER_HZ
}

// BenchmarkSignCPU64 measures where the CPU goes for a sign through the
// plugin at 64 callers: in this (the daemon's) process and in the plugin.
func BenchmarkSignCPU64(b *testing.B) {
	_, plug := benchProviders(b)
	ref, h := benchKey(b, plug)
	pid := strconv.Itoa(plug.(*Client).pid())
	signLoad(b, plug, ref, h, 64, 2000) // warm up
	self0, plug0 := cpuSeconds(b, "self"), cpuSeconds(b, pid)
	n := 0
	for b.Loop() {
		signLoad(b, plug, ref, h, 64, 2000)
		n += 2000
	}
	self1, plug1 := cpuSeconds(b, "self"), cpuSeconds(b, pid)
	b.ReportMetric((self1-self0)/float64(n)*1e6, "daemon-cpu-µs/op")
	b.ReportMetric((plug1-plug0)/float64(n)*1e6, "plugin-cpu-µs/op")
	if cs := plug.(*Client).cur.Load().r.calls; cs != nil {
		b.ReportMetric(float64(cs.counts.calls.Load())/float64(cs.counts.sent.Load()), "calls/msg")
		b.ReportMetric(float64(cs.counts.replies.Load())/float64(cs.counts.received.Load()), "replies/msg")
	}
}

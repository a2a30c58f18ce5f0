package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/storage"
)

// pageCacheAudit is the audit log as it was before the write-ahead
// records were made durable: AppendSync only appends (the record reaches
// the page cache; the interval fsync makes it durable up to 100 ms
// later). For the benchmark's comparison only.
type pageCacheAudit struct{ *audit.Log }

func (a pageCacheAudit) AppendSync(ctx context.Context, r audit.Record) (audit.Record, error) {
	return a.Log.Append(ctx, r)
}

// createBench is one server on a real state directory and audit log.
type createBench struct {
	keys keystorev1.KeysClient
	log  *audit.Log
	n    atomic.Int64
}

func newCreateBench(b *testing.B, pageCache bool) *createBench {
	b.Helper()
	dir := b.TempDir()
	st, err := storage.OpenDir(filepath.Join(dir, "state"))
	if err != nil {
		b.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	var al AuditLog = l
	if pageCache {
		al = pageCacheAudit{l}
	}
	srv, err := New(context.Background(), Config{Storage: st, Provider: newProvider(b, false), Clock: clock.NewFake(testTime), Audit: al, Identity: aliceIdentity(b),
		Quotas: core.Quotas{Default: core.Quota{Keys: core.MaxQuotaKeys, VersionsPerKey: core.MaxQuotaVersionsPerKey}}})
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(shortDir(b), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	gs := srv.NewGRPCServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(gs, ln) }()
	b.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil && err != grpc.ErrServerStopped {
			b.Errorf("Serve: %v", err)
		}
		if err := l.Close(); err != nil {
			b.Error(err)
		}
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	})
	return &createBench{keys: keystorev1.NewKeysClient(dial(b, sock)), log: l}
}

// rotatedKeys is how many keys each client of a rotate benchmark cycles
// through (so that no key's metadata grows much).
const rotatedKeys = 8

// prepare creates the keys a rotate benchmark's clients rotate.
func (c *createBench) prepare(b *testing.B, clients int) {
	for i := range clients * rotatedKeys {
		if _, err := c.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: fmt.Sprintf("bench/r%d", i), Algorithm: "ed25519"}); err != nil {
			b.Fatal(err)
		}
	}
}

// run makes n creates (or rotations) from clients goroutines and returns
// the time taken.
func (c *createBench) run(b *testing.B, op string, clients, n int) time.Duration {
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += clients {
				var err error
				if op == "rotate" {
					k := fmt.Sprintf("bench/r%d", w+clients*int(c.n.Add(1)%rotatedKeys))
					_, err = c.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: k})
				} else {
					k := fmt.Sprintf("bench/k%d", c.n.Add(1))
					_, err = c.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkDurableWriteAhead measures what the durable write-ahead
// record costs a create and a rotate: the server as it is (the intent
// record fsynced, group-shared, before the key's files are written)
// against the same server whose write-ahead record only reaches the page
// cache (the behaviour issue 15 found), both on a real state directory
// and audit log in the same file system, interleaved in slices of 8
// operations per client. It reports each side's time per operation, their
// ratio (page-cache time / durable time), and the audit fsyncs per
// operation. docs/performance.md gives the command.
func BenchmarkDurableWriteAhead(b *testing.B) {
	for _, op := range []string{"create", "rotate"} {
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("op=%s/clients=%d", op, clients), func(b *testing.B) {
				durable, cache := newCreateBench(b, false), newCreateBench(b, true)
				if op == "rotate" {
					durable.prepare(b, clients)
					cache.prepare(b, clients)
				}
				s0, s1 := durable.log.Stats().Syncs, cache.log.Stats().Syncs
				slice := 8 * clients
				var tDur, tCache time.Duration
				var n int
				b.ResetTimer()
				for n < b.N {
					tDur += durable.run(b, op, clients, slice)
					tCache += cache.run(b, op, clients, slice)
					n += slice
				}
				b.StopTimer()
				b.ReportMetric(float64(tDur.Nanoseconds())/float64(n), "ns/op-durable")
				b.ReportMetric(float64(tCache.Nanoseconds())/float64(n), "ns/op-pagecache")
				b.ReportMetric(float64(tCache)/float64(tDur), "speed-ratio")
				b.ReportMetric(float64(durable.log.Stats().Syncs-s0)/float64(n), "auditfsyncs/op-durable")
				b.ReportMetric(float64(cache.log.Stats().Syncs-s1)/float64(n), "auditfsyncs/op-pagecache")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

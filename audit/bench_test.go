package audit_test

import (
	"bytes"
	"context"
	"os"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/audit"
)

// BenchmarkAppend measures Append with the default SyncInterval(100ms):
// one caller, and 64 concurrent callers (group commit).
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name string
		mode audit.SyncMode
	}{
		{"interval", audit.SyncInterval(0)},
		{"every-record", audit.SyncEveryRecord},
	} {
		b.Run("sequential/"+c.name, func(b *testing.B) {
			l := openLog(b, logPath(b), audit.WithSync(c.mode))
			r := record(3)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := l.Append(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run("parallel64/"+c.name, func(b *testing.B) {
			l := openLog(b, logPath(b), audit.WithSync(c.mode))
			ctx := context.Background()
			var failed atomic.Bool
			b.ReportAllocs()
			b.SetParallelism((64 + testingProcs() - 1) / testingProcs())
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := record(3)
				for pb.Next() {
					if _, err := l.Append(ctx, r); err != nil {
						failed.Store(true)
						return
					}
				}
			})
			if failed.Load() {
				b.Fatal("Append failed")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkVerify measures verification of a 10,000-record log.
func BenchmarkVerify(b *testing.B) {
	path := logPath(b)
	writeRecords(b, path, 10000)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := audit.Verify(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*10000/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkOpen measures a start (Open and Close) on a log of 60,000
// records (about 21 MB): in one file, Open verifies all of it; in 1 MiB
// segments, only the current one and the newest sealed one's last record.
func BenchmarkOpen(b *testing.B) {
	for _, c := range []struct {
		name string
		size int64
	}{{"one-file", audit.MaxSegmentSize}, {"segments-1MiB", 1 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			path := logPath(b)
			l, err := audit.Open(path, audit.WithSegmentSize(c.size))
			if err != nil {
				b.Fatal(err)
			}
			for i := range 60000 {
				if _, err := l.Append(context.Background(), record(i)); err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				l, err := audit.Open(path, audit.WithSegmentSize(c.size))
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
)

// countingFile counts fsyncs and signals each one.
type countingFile struct {
	audit.File
	mu     sync.Mutex
	syncs  int
	synced chan struct{}
}

func (f *countingFile) Sync() error {
	f.mu.Lock()
	f.syncs++
	f.mu.Unlock()
	select {
	case f.synced <- struct{}{}:
	default:
	}
	return f.File.Sync()
}

func (f *countingFile) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

func openCounting(t *testing.T, mode audit.SyncMode) (*audit.Log, *countingFile) {
	t.Helper()
	cf := &countingFile{synced: make(chan struct{}, 1)}
	l, err := audit.Open(logPath(t), audit.WithSync(mode),
		audit.WithFileWrapper(func(f audit.File) audit.File { cf.File = f; return cf }))
	if err != nil {
		t.Fatal(err)
	}
	return l, cf
}

func TestSyncModes(t *testing.T) {
	ctx := context.Background()
	t.Run("every record", func(t *testing.T) {
		l, cf := openCounting(t, audit.SyncEveryRecord)
		for i := range 3 {
			if _, err := l.Append(ctx, record(i)); err != nil {
				t.Fatal(err)
			}
			if got := cf.count(); got != i+1 {
				t.Fatalf("after Append %d: %d fsyncs, want %d", i+1, got, i+1)
			}
		}
		mustDo(t, l.Close())
	})
	t.Run("interval not yet due", func(t *testing.T) {
		l, cf := openCounting(t, audit.SyncInterval(time.Hour))
		for i := range 3 {
			if _, err := l.Append(ctx, record(i)); err != nil {
				t.Fatal(err)
			}
		}
		if got := cf.count(); got != 0 {
			t.Fatalf("%d fsyncs before the interval, want 0", got)
		}
		mustDo(t, l.Sync())
		if got := cf.count(); got != 1 {
			t.Fatalf("%d fsyncs after Sync, want 1", got)
		}
		mustDo(t, l.Close())
		if got := cf.count(); got != 2 {
			t.Fatalf("%d fsyncs after Close, want 2", got)
		}
	})
	t.Run("interval fires", func(t *testing.T) {
		l, cf := openCounting(t, audit.SyncInterval(time.Millisecond))
		if _, err := l.Append(ctx, record(0)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cf.synced:
		case <-time.After(time.Minute):
			t.Fatal("no background fsync within a minute of a write")
		}
		mustDo(t, l.Close())
	})
}

func TestSyncModeString(t *testing.T) {
	for _, c := range []struct {
		m    audit.SyncMode
		want string
	}{
		{audit.SyncEveryRecord, "every-record"},
		{audit.SyncInterval(0), "interval(100ms)"},
		{audit.SyncInterval(-time.Second), "interval(100ms)"},
		{audit.SyncInterval(2 * time.Second), "interval(2s)"},
	} {
		if got := c.m.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// treeSize counts the files and directories under root and their bytes.
func treeSize(t *testing.T, root string) (inodes int, bytes int64) {
	t.Helper()
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			bytes += fi.Size()
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return inodes, bytes
}

// The attack of issue 9 on the real daemon at its default quota: one app
// creates ML-DSA-87 keys as fast as it can from 8 connections. Exactly
// DefaultQuotaKeys creates succeed, then every one fails with EDQUOT
// (errno 122), each refusal audited; the app's state is bounded by the
// quota, and a restarted daemon counts the keys on disk and still refuses.
func TestQuotaKeyFloodRealDaemon(t *testing.T) {
	ctx := context.Background()
	d := start(t)
	const workers = 8
	var created, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	begin := time.Now()
	for w := range workers {
		c := dial(t, d)
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := c.Create(ctx, fmt.Sprintf("flood/k%d-%d", w, i), client.CreateOptions{Algorithm: client.MLDSA87})
				switch {
				case err == nil:
					created.Add(1)
				case errors.Is(err, client.ErrQuota) && errors.Is(err, syscall.EDQUOT):
					refused.Add(1)
					return
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
	if created.Load() != core.DefaultQuotaKeys || refused.Load() != workers {
		t.Fatalf("%d keys created, %d refusals; want exactly %d, then one EDQUOT per worker", created.Load(), refused.Load(), core.DefaultQuotaKeys)
	}
	app := filepath.Join(d.State, "keystore", fmt.Sprintf("uid-%d", os.Getuid()))
	inodes, size := treeSize(t, app)
	t.Logf("%d ML-DSA-87 keys created in %v, then EDQUOT: the app's state is %d inodes, %d bytes", created.Load(), elapsed.Round(time.Millisecond), inodes, size)
	// Per key: its key file (about 3.9 KB for ML-DSA-87, the handle
	// inline); plus the app's and the purpose's directories.
	if maxInodes := core.DefaultQuotaKeys + 2; inodes > maxInodes {
		t.Errorf("%d inodes under %s, want at most %d", inodes, app, maxInodes)
	}
	if maxBytes := int64(core.DefaultQuotaKeys) * 5000; size > maxBytes {
		t.Errorf("%d bytes under %s, want at most %d", size, app, maxBytes)
	}
	r := ctlFails(t, d, nil, 122, "EDQUOT", "create", "flood/cli", "--alg", "ed25519")
	if r.stderr == "" {
		t.Error("keystorectl printed nothing for EDQUOT")
	}

	d.Stop()
	refusals := 0
	f, err := os.Open(filepath.Join(d.State, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = audit.Walk(f, func(r audit.Record) error {
		if r.Op == "keys.create" && r.Result == "EDQUOT" {
			refusals++
		}
		return nil
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if refusals != workers+1 {
		t.Errorf("%d EDQUOT create records in the audit log, want %d", refusals, workers+1)
	}

	d2 := daemontest.Start(t, daemontest.Options{Dir: d.Dir, State: d.State})
	c := dial(t, d2)
	if _, err := c.Create(ctx, "flood/after-restart", client.CreateOptions{Algorithm: client.Ed25519}); !errors.Is(err, client.ErrQuota) {
		t.Fatalf("create after a restart: %v, want EDQUOT", err)
	}
}

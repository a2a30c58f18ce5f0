package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

// Sweep rotates the due keys, in bounded calls that resume from the page
// token. An app may not sweep.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	c, srv := dial(t, clienttest.Options{App: "ops", Operator: true})
	for _, key := range []string{"a/p/due", "a/p/manual", "b/p/due"} {
		opts := client.CreateOptions{Algorithm: client.Ed25519}
		if key != "a/p/manual" {
			opts.Policy.RotationPeriod = time.Hour
		}
		if _, err := c.Create(ctx, key, opts); err != nil {
			t.Fatal(err)
		}
	}
	srv.Advance(time.Hour)
	res, err := c.Sweep(ctx, client.SweepOptions{Limit: 2})
	if err != nil || res.Examined != 2 || len(res.Rotated) != 1 || res.Rotated[0] != (client.RotatedKey{Key: "a/p/due", Version: 2}) || res.NextPageToken == "" {
		t.Fatalf("first Sweep = %+v, %v; want a/p/due rotated to v2 and a token", res, err)
	}
	res, err = c.Sweep(ctx, client.SweepOptions{Limit: 2, PageToken: res.NextPageToken})
	if err != nil || res.Examined != 1 || len(res.Rotated) != 1 || res.Rotated[0].Key != "b/p/due" || res.NextPageToken != "" || len(res.Failed) != 0 {
		t.Fatalf("second Sweep = %+v, %v; want b/p/due rotated and no token", res, err)
	}
	if _, err := c.Sweep(ctx, client.SweepOptions{Limit: 1001}); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("Sweep with limit 1001 = %v, want ErrInvalid", err)
	}

	app, _ := dial(t, clienttest.Options{App: "a"})
	if _, err := app.Sweep(ctx, client.SweepOptions{}); !errors.Is(err, client.ErrPermission) {
		t.Fatalf("Sweep by an app = %v, want ErrPermission", err)
	}
}

// KeyInfo carries the rotation due time and whether it has passed.
func TestRotationDue(t *testing.T) {
	ctx := context.Background()
	c, srv := dial(t, clienttest.Options{App: "a"})
	k, err := c.Create(ctx, "p/k", client.CreateOptions{Algorithm: client.Ed25519, Policy: client.Policy{RotationPeriod: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if !k.RotationDue.Equal(clienttest.Epoch.Add(time.Hour)) || k.RotationOverdue {
		t.Fatalf("Create: due %v overdue %v, want %v and not overdue", k.RotationDue, k.RotationOverdue, clienttest.Epoch.Add(time.Hour))
	}
	srv.Advance(2 * time.Hour)
	if k, err = c.Get(ctx, "p/k"); err != nil || !k.RotationOverdue {
		t.Fatalf("Get past the due time: overdue %v, %v", k.RotationOverdue, err)
	}
	n, err := c.Create(ctx, "p/n", client.CreateOptions{Algorithm: client.Ed25519})
	if err != nil || !n.RotationDue.IsZero() || n.RotationOverdue {
		t.Fatalf("a key without a period: due %v overdue %v, %v", n.RotationDue, n.RotationOverdue, err)
	}
}

// Usage reports the app's keys and Store values against its quotas;
// KeyVersion carries a decrypt version's seal count and budget.
func TestUsageAndSeals(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{App: "a"})
	if _, err := c.Create(ctx, "box/k", client.CreateOptions{Algorithm: client.ChaCha20Poly1305}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Seal(ctx, "box/k", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.PutValue(ctx, "v", []byte("four")); err != nil {
		t.Fatal(err)
	}
	u, err := c.Usage(ctx, "")
	want := client.Usage{App: "a", Keys: 1, KeysLimit: 1000, VersionsPerKeyLimit: 100, StoreValues: 1, StoreValuesLimit: 1024, StoreBytes: 4, StoreBytesLimit: 4 << 20}
	if err != nil || u != want {
		t.Fatalf("Usage = %+v, %v; want %+v", u, err, want)
	}
	if _, err := c.Usage(ctx, "b"); !errors.Is(err, client.ErrPermission) {
		t.Fatalf("Usage of another app = %v, want ErrPermission", err)
	}
	k, err := c.Get(ctx, "box/k")
	if err != nil {
		t.Fatal(err)
	}
	if v := k.Versions[0]; v.Seals != 1 || v.SealLimit != 1<<32 || v.SealsLeft() != 1<<32-1 {
		t.Fatalf("version 1: seals %d of %d (%d left)", v.Seals, v.SealLimit, v.SealsLeft())
	}
}

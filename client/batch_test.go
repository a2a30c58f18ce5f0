package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strconv"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

func TestSignBatch(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	for _, k := range []string{"p/a", "p/revoked"} {
		if _, err := c.Create(ctx, k, client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Revoke(ctx, "p/revoked"); err != nil {
		t.Fatal(err)
	}
	items := []client.SignItem{
		{Key: "p/a", Message: []byte("one")},
		{Key: "p/revoked", Message: []byte("two")},
		{Key: "p/missing", Message: []byte("three")},
		{Key: "p/a", Message: make([]byte, provider.MaxSignMessage+1)},
		{Key: "p/a", Message: nil},
	}
	res, err := c.SignBatch(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	pub, err := c.PublicKey(ctx, "p/a", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 4} {
		if res[i].Err != nil || res[i].Version != 1 || !ed25519.Verify(pub.Raw, items[i].Message, res[i].Signature.Signature) {
			t.Errorf("item %d = %+v, want a valid version-1 signature", i, res[i])
		}
	}
	wantErr := map[int]error{1: client.ErrKeyRevoked, 2: client.ErrNotFound, 3: client.ErrTooLarge}
	for i, want := range wantErr {
		if !errors.Is(res[i].Err, want) || res[i].Signature.Signature != nil {
			t.Errorf("item %d = %+v, want only error %v", i, res[i], want)
		}
	}
	if _, err := c.SignBatch(ctx, nil); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("SignBatch(empty) = %v, want ErrInvalid from the daemon", err)
	}
	tooMany := make([]client.SignItem, client.MaxBatch+1)
	for i := range tooMany {
		tooMany[i] = client.SignItem{Key: "p/a"}
	}
	if _, err := c.SignBatch(ctx, tooMany); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("SignBatch(%d items) = %v, want ErrInvalid", len(tooMany), err)
	}
}

func TestBatchOverMessageSize(t *testing.T) {
	c, srv := dial(t, clienttest.Options{})
	big := make([]byte, 60<<10)
	items := make([]client.SignItem, 200) // 12 MB > MaxMessageSize
	for i := range items {
		items[i] = client.SignItem{Key: "p/a", Message: big}
	}
	_, err := c.SignBatch(context.Background(), items)
	if !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("SignBatch over %d bytes = %v, want ErrTooLarge", client.MaxMessageSize, err)
	}
	if n := srv.Calls("/keystore.v1.Keys/SignBatch"); n != 0 {
		t.Errorf("the daemon saw %d calls, want the client to refuse before sending", n)
	}
}

func TestSealUnsealBatch(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	if _, err := c.Create(ctx, "p/box", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var items []client.SealItem
	for i := range 8 {
		items = append(items, client.SealItem{Key: "p/box", Plaintext: []byte("pt" + strconv.Itoa(i)), AAD: []byte{byte(i)}})
	}
	items = append(items, client.SealItem{Key: "p/box", AAD: make([]byte, provider.MaxAAD+1)})
	sealed, err := c.SealBatch(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(items) || !errors.Is(sealed[8].Err, client.ErrTooLarge) {
		t.Fatalf("SealBatch: %d results, last %v; want %d, ErrTooLarge", len(sealed), sealed[len(sealed)-1].Err, len(items))
	}
	var open []client.UnsealItem
	for i := range 8 {
		if sealed[i].Err != nil || sealed[i].Version != 1 {
			t.Fatalf("seal item %d: %+v", i, sealed[i])
		}
		open = append(open, client.UnsealItem{Key: "p/box", Sealed: sealed[i].Data, AAD: []byte{byte(i)}})
	}
	open[3].AAD = []byte("wrong")
	opened, err := c.UnsealBatch(ctx, open)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range opened {
		if i == 3 {
			if !errors.Is(r.Err, client.ErrBadMessage) || r.Plaintext != nil {
				t.Errorf("item 3 (wrong AAD) = %+v, want only ErrBadMessage", r)
			}
			continue
		}
		if r.Err != nil || !bytes.Equal(r.Plaintext, items[i].Plaintext) || r.Version != 1 {
			t.Errorf("item %d = %+v, want %q", i, r, items[i].Plaintext)
		}
	}
}

// Each item error keeps its code and the daemon's message (every code:
// TestDetailError).
func TestBatchItemErrors(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	res, err := c.SignBatch(ctx, []client.SignItem{{Key: "p/nope"}, {Key: "BAD"}, {Key: "x/p/k"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{client.ErrNotFound, client.ErrInvalid, client.ErrPermission} {
		if !errors.Is(res[i].Err, want) {
			t.Errorf("item %d = %v, want %v", i, res[i].Err, want)
		}
	}
	if msg := res[0].Err.Error(); msg != "sign app/p/nope: no such key" {
		t.Errorf("item message %q, want the daemon's", msg)
	}
}

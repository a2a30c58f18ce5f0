package main

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/server"
)

// TestClientSealBatchLargeResponse: a SealBatch the daemon accepts (under
// its 8 MiB batch bound) has a response larger than the request, since
// every item grows by the envelope's overhead. The typed client must
// receive every response the daemon may send (up to MaxResponseBytes).
func TestClientSealBatchLargeResponse(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{})
	ctx := t.Context()
	c, err := client.Dial(ctx, d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if _, err := c.Create(ctx, "enc/big", client.CreateOptions{Algorithm: client.XChaCha20Poly1305}); err != nil {
		t.Fatal(err)
	}
	items := make([]client.SealItem, client.MaxBatch)
	req := &keystorev1.SealBatchRequest{}
	for i := range items {
		items[i] = client.SealItem{Key: "enc/big", Plaintext: bytes.Repeat([]byte{byte(i)}, 8150)}
		req.Items = append(req.Items, &keystorev1.SealRequest{Key: items[i].Key, Plaintext: items[i].Plaintext})
	}
	if size := proto.Size(req); size > server.MaxBatchBytes || size > client.MaxMessageSize {
		t.Fatalf("test request of %d bytes is over a bound", size)
	}
	res, err := c.SealBatch(ctx, items)
	if err != nil {
		t.Fatalf("SealBatch of a request the daemon accepts: %v", err)
	}
	resp := &keystorev1.SealBatchResponse{}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		resp.Results = append(resp.Results, &keystorev1.SealResult{Response: &keystorev1.SealResponse{Sealed: r.Data, Version: r.Version}})
	}
	if size := proto.Size(resp); size <= 8<<20 {
		t.Fatalf("response of %d bytes does not test a response over 8 MiB", size)
	}
	u, err := c.Unseal(ctx, "enc/big", res[7].Data, nil)
	if err != nil || !bytes.Equal(u.Plaintext, items[7].Plaintext) {
		t.Fatalf("Unseal(item 7) = %v, want the plaintext back", err)
	}
}

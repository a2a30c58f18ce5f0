package server

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// Regression: a batch request of millions of empty items fits in the
// transport's byte limit (2 bytes an item), and decoding it built every
// item (hundreds of MB for one request) before the handler refused the
// count. The codec now counts the items on the wire first: such a batch
// is refused with EINVAL and no item is built.
func TestBatchCountedBeforeDecoding(t *testing.T) {
	n := (MaxRequestBytes - 16) / 2
	wire := bytes.Repeat([]byte{0x0a, 0x00}, n) // n empty items
	for _, req := range []interface {
		Reset()
		String() string
	}{&keystorev1.SignBatchRequest{}, &keystorev1.SealBatchRequest{}, &keystorev1.UnsealBatchRequest{}} {
		allocs := testing.AllocsPerRun(3, func() {
			if err := decodeRequest(mem.BufferSlice{mem.SliceBuffer(wire)}, req.(proto.Message)); !errors.Is(err, provider.EINVAL) {
				t.Fatalf("%T of %d items: %v, want EINVAL", req, n, err)
			}
		})
		if allocs > 100 {
			t.Errorf("%T of %d items: %.0f allocations to refuse it, want the items not to be built", req, n, allocs)
		}
	}
	// The bound itself decodes.
	ok := bytes.Repeat([]byte{0x0a, 0x00}, MaxBatchItems)
	var req keystorev1.SignBatchRequest
	if err := decodeRequest(mem.BufferSlice{mem.SliceBuffer(ok)}, &req); err != nil || len(req.GetItems()) != MaxBatchItems {
		t.Fatalf("batch of %d items: %v, %d items decoded", MaxBatchItems, err, len(req.GetItems()))
	}
	// Malformed wire data is still EINVAL.
	if err := decodeRequest(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05})}, &req); !errors.Is(err, provider.EINVAL) {
		t.Fatalf("malformed batch: not refused")
	}
}

func TestCountItems(t *testing.T) {
	for _, tt := range []struct {
		wire []byte
		want int
	}{
		{nil, 0},
		{[]byte{0x0a, 0x00, 0x0a, 0x01, 0x00}, 2},
		{[]byte{0x12, 0x00, 0x0a, 0x00}, 1}, // field 2 is not an item
		{[]byte{0x0a, 0x05}, -1},            // truncated
		{[]byte{0xff}, -1},                  // bad tag
		{[]byte{0x08, 0x01, 0x0a, 0x00}, 1}, // a varint field 1 is not an item
	} {
		if got := countItems(tt.wire); got != tt.want {
			t.Errorf("countItems(% x) = %d, want %d", tt.wire, got, tt.want)
		}
	}
}

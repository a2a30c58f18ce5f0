package server

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// checkBatch bounds a batch request before any work: 1 .. MaxBatchItems
// items (EINVAL otherwise) and at most MaxBatchBytes encoded (EMSGSIZE).
func checkBatch(n int, req proto.Message) error {
	if n < 1 || n > MaxBatchItems {
		return provider.Errorf(provider.EINVAL, "a batch holds 1 to "+strconv.Itoa(MaxBatchItems)+" items, not "+strconv.Itoa(n))
	}
	if size := proto.Size(req); size > MaxBatchBytes {
		return provider.Errorf(provider.EMSGSIZE, "batch of "+strconv.Itoa(size)+" bytes is over "+strconv.Itoa(MaxBatchBytes))
	}
	return nil
}

// runBatch calls f(i) for every i in [0, n) on up to GOMAXPROCS
// goroutines (the caller's among them) and returns when all are done.
func runBatch(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			f(i)
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// batchSummary records the counts of a finished batch for its audit record.
func batchSummary(ctx context.Context, items int, failed *atomic.Int64) {
	if sum := summaryFrom(ctx); sum != nil {
		sum.setBatch(items, int(failed.Load()))
	}
}

func (k *keysService) SignBatch(ctx context.Context, req *keystorev1.SignBatchRequest) (*keystorev1.SignBatchResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	items := req.GetItems()
	if err := checkBatch(len(items), req); err != nil {
		return nil, err
	}
	out := make([]*keystorev1.SignResult, len(items))
	var failed atomic.Int64
	runBatch(len(items), func(i int) {
		resp, err := k.signItem(ctx, c, items[i])
		if err != nil {
			failed.Add(1)
			out[i] = &keystorev1.SignResult{Error: errorDetail(err)}
			return
		}
		out[i] = &keystorev1.SignResult{Response: resp}
	})
	batchSummary(ctx, len(items), &failed)
	return &keystorev1.SignBatchResponse{Results: out}, nil
}

func (k *keysService) signItem(ctx context.Context, c *Caller, item *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	id, err := parseKeyName(c, item.GetKey())
	if err != nil {
		return nil, err
	}
	return k.sign(ctx, c, id, item)
}

func (k *keysService) SealBatch(ctx context.Context, req *keystorev1.SealBatchRequest) (*keystorev1.SealBatchResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	items := req.GetItems()
	if err := checkBatch(len(items), req); err != nil {
		return nil, err
	}
	out := make([]*keystorev1.SealResult, len(items))
	var failed atomic.Int64
	runBatch(len(items), func(i int) {
		resp, err := k.sealItem(ctx, c, items[i])
		if err != nil {
			failed.Add(1)
			out[i] = &keystorev1.SealResult{Error: errorDetail(err)}
			return
		}
		out[i] = &keystorev1.SealResult{Response: resp}
	})
	batchSummary(ctx, len(items), &failed)
	return &keystorev1.SealBatchResponse{Results: out}, nil
}

func (k *keysService) sealItem(ctx context.Context, c *Caller, item *keystorev1.SealRequest) (*keystorev1.SealResponse, error) {
	id, err := parseKeyName(c, item.GetKey())
	if err != nil {
		return nil, err
	}
	return k.seal(ctx, c, id, item)
}

func (k *keysService) UnsealBatch(ctx context.Context, req *keystorev1.UnsealBatchRequest) (*keystorev1.UnsealBatchResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	items := req.GetItems()
	if err := checkBatch(len(items), req); err != nil {
		return nil, err
	}
	out := make([]*keystorev1.UnsealResult, len(items))
	var failed atomic.Int64
	runBatch(len(items), func(i int) {
		resp, err := k.unsealItem(ctx, c, items[i])
		if err != nil {
			failed.Add(1)
			out[i] = &keystorev1.UnsealResult{Error: errorDetail(err)}
			return
		}
		out[i] = &keystorev1.UnsealResult{Response: resp}
	})
	batchSummary(ctx, len(items), &failed)
	return &keystorev1.UnsealBatchResponse{Results: out}, nil
}

func (k *keysService) unsealItem(ctx context.Context, c *Caller, item *keystorev1.UnsealRequest) (*keystorev1.UnsealResponse, error) {
	id, err := parseKeyName(c, item.GetKey())
	if err != nil {
		return nil, err
	}
	return k.unseal(ctx, c, id, item)
}

package server

import (
	"context"
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
		return provider.Errorf(provider.EINVAL, "a batch holds 1 to %d items, not %d", MaxBatchItems, n)
	}
	if size := proto.Size(req); size > MaxBatchBytes {
		return provider.Errorf(provider.EMSGSIZE, "batch of %d bytes is over %d", size, MaxBatchBytes)
	}
	return nil
}

// runBatch calls f(i) for every i in [0, n) on up to workers goroutines
// (the caller's among them) and returns when all are done. Each item's
// provider call still waits for its turn in the fair scheduler: the
// goroutines only let one batch use every worker when no one else
// needs them.
func runBatch(n, workers int, f func(i int)) {
	workers = min(n, workers)
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

// runItems runs one batch: it bounds the request, runs do for every item
// in parallel (parsing each item's key name), turns each outcome into a
// result with wrap, and records the counts for the audit record.
func runItems[Item interface{ GetKey() string }, Resp any, Result any](
	ctx context.Context, workers int, req proto.Message, items []Item,
	do func(ctx context.Context, c *Caller, id provider.KeyID, item Item) (Resp, error),
	wrap func(resp Resp, err *keystorev1.ErrorDetail) Result,
) ([]Result, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	if err := checkBatch(len(items), req); err != nil {
		return nil, err
	}
	sum := callFrom(ctx)
	if sum != nil {
		// A record written ahead (an item auto-rotates a key) carries the
		// item count.
		sum.setBatch(len(items), 0)
	}
	out := make([]Result, len(items))
	var failed atomic.Int64
	runBatch(len(items), workers, func(i int) {
		id, err := parseKeyName(c, items[i].GetKey())
		var resp Resp
		if err == nil {
			resp, err = do(ctx, c, id, items[i])
		}
		if err != nil {
			failed.Add(1)
			var zero Resp
			out[i] = wrap(zero, errorDetail(err))
			return
		}
		out[i] = wrap(resp, nil)
	})
	if sum != nil {
		sum.setBatch(len(items), int(failed.Load()))
	}
	return out, nil
}

func (k *keysService) SignBatch(ctx context.Context, req *keystorev1.SignBatchRequest) (*keystorev1.SignBatchResponse, error) {
	out, err := runItems(ctx, k.s.sched.Workers(), req, req.GetItems(), k.sign,
		func(r *keystorev1.SignResponse, e *keystorev1.ErrorDetail) *keystorev1.SignResult {
			return &keystorev1.SignResult{Response: r, Error: e}
		})
	if err != nil {
		return nil, err
	}
	return &keystorev1.SignBatchResponse{Results: out}, nil
}

func (k *keysService) SealBatch(ctx context.Context, req *keystorev1.SealBatchRequest) (*keystorev1.SealBatchResponse, error) {
	out, err := runItems(ctx, k.s.sched.Workers(), req, req.GetItems(), k.seal,
		func(r *keystorev1.SealResponse, e *keystorev1.ErrorDetail) *keystorev1.SealResult {
			return &keystorev1.SealResult{Response: r, Error: e}
		})
	if err != nil {
		return nil, err
	}
	return &keystorev1.SealBatchResponse{Results: out}, nil
}

func (k *keysService) UnsealBatch(ctx context.Context, req *keystorev1.UnsealBatchRequest) (*keystorev1.UnsealBatchResponse, error) {
	out, err := runItems(ctx, k.s.sched.Workers(), req, req.GetItems(), k.unseal,
		func(r *keystorev1.UnsealResponse, e *keystorev1.ErrorDetail) *keystorev1.UnsealResult {
			return &keystorev1.UnsealResult{Response: r, Error: e}
		})
	if err != nil {
		return nil, err
	}
	return &keystorev1.UnsealBatchResponse{Results: out}, nil
}

func (k *keysService) MacBatch(ctx context.Context, req *keystorev1.MacBatchRequest) (*keystorev1.MacBatchResponse, error) {
	out, err := runItems(ctx, k.s.sched.Workers(), req, req.GetItems(), k.mac,
		func(r *keystorev1.MacResponse, e *keystorev1.ErrorDetail) *keystorev1.MacResult {
			return &keystorev1.MacResult{Response: r, Error: e}
		})
	if err != nil {
		return nil, err
	}
	return &keystorev1.MacBatchResponse{Results: out}, nil
}

// VerifyMacBatch answers each item as VerifyMac does: a tag that does not
// match is a response with valid=false, not a failed item. The audit
// detail counts them ("N tags invalid").
func (k *keysService) VerifyMacBatch(ctx context.Context, req *keystorev1.VerifyMacBatchRequest) (*keystorev1.VerifyMacBatchResponse, error) {
	out, err := runItems(ctx, k.s.sched.Workers(), req, req.GetItems(), k.verifyMac,
		func(r *keystorev1.VerifyMacResponse, e *keystorev1.ErrorDetail) *keystorev1.VerifyMacResult {
			return &keystorev1.VerifyMacResult{Response: r, Error: e}
		})
	if err != nil {
		return nil, err
	}
	bad := 0
	for _, r := range out {
		if r.GetError() == nil && !r.GetResponse().GetValid() {
			bad++
		}
	}
	if sum := callFrom(ctx); sum != nil && bad > 0 {
		sum.setNote(strconv.Itoa(bad) + " tags invalid")
	}
	return &keystorev1.VerifyMacBatchResponse{Results: out}, nil
}

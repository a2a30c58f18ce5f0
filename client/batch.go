package client

import (
	"context"
	"strconv"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// MaxBatch is the most items one batch call may carry.
const MaxBatch = 1024

// SignItem is one message to sign in a batch.
type SignItem struct {
	Key     string
	Message []byte
}

// SignResult is one item's result: Err is nil and Signature set, or Err
// wraps the item's error code (ErrKeyRevoked, ErrTooLarge, ...).
type SignResult struct {
	Signature
	Err error
}

// SealItem is one plaintext to seal in a batch.
type SealItem struct {
	Key       string
	Plaintext []byte
	AAD       []byte
}

// SealResult is one item's result: Err is nil and Sealed set, or Err wraps
// the item's error code.
type SealResult struct {
	Sealed
	Err error
}

// UnsealItem is one envelope to unseal in a batch.
type UnsealItem struct {
	Key    string
	Sealed []byte
	AAD    []byte
}

// UnsealResult is one item's result: Err is nil and Unsealed set, or Err
// wraps the item's error code (ErrBadMessage for a tampered item, ...).
type UnsealResult struct {
	Unsealed
	Err error
}

// SignBatch signs many messages in one call (at most MaxBatch items, and
// at most MaxMessageSize bytes in all). It returns one result per item, in
// order; the error is for the call as a whole.
func (c *Client) SignBatch(ctx context.Context, items []SignItem) ([]SignResult, error) {
	req := &keystorev1.SignBatchRequest{Items: make([]*keystorev1.SignRequest, len(items))}
	for i, it := range items {
		req.Items[i] = &keystorev1.SignRequest{Key: it.Key, Message: it.Message}
	}
	resp, _, err := call(ctx, c, c.keys.SignBatch, req)
	if err != nil {
		return nil, err
	}
	if err := checkCount("sign-batch", len(resp.GetResults()), len(items)); err != nil {
		return nil, err
	}
	out := make([]SignResult, len(items))
	for i, r := range resp.GetResults() {
		switch {
		case r.GetError() != nil:
			out[i].Err = detailError(r.GetError())
		case r.GetResponse() != nil:
			out[i].Signature, out[i].Err = signature(r.GetResponse(), items[i].Key)
		default:
			out[i].Err = protocolError("sign-batch", items[i].Key, "item "+strconv.Itoa(i)+" has neither result nor error")
		}
	}
	return out, nil
}

// SealBatch seals many plaintexts in one call; see SignBatch.
func (c *Client) SealBatch(ctx context.Context, items []SealItem) ([]SealResult, error) {
	req := &keystorev1.SealBatchRequest{Items: make([]*keystorev1.SealRequest, len(items))}
	for i, it := range items {
		req.Items[i] = &keystorev1.SealRequest{Key: it.Key, Plaintext: it.Plaintext, Aad: it.AAD}
	}
	resp, _, err := call(ctx, c, c.keys.SealBatch, req)
	if err != nil {
		return nil, err
	}
	if err := checkCount("seal-batch", len(resp.GetResults()), len(items)); err != nil {
		return nil, err
	}
	out := make([]SealResult, len(items))
	for i, r := range resp.GetResults() {
		switch {
		case r.GetError() != nil:
			out[i].Err = detailError(r.GetError())
		case r.GetResponse() != nil:
			out[i].Sealed, out[i].Err = sealed(r.GetResponse().GetSealed(), r.GetResponse().GetVersion(), "seal-batch", items[i].Key)
		default:
			out[i].Err = protocolError("seal-batch", items[i].Key, "item "+strconv.Itoa(i)+" has neither result nor error")
		}
	}
	return out, nil
}

// UnsealBatch unseals many envelopes in one call; see SignBatch.
func (c *Client) UnsealBatch(ctx context.Context, items []UnsealItem) ([]UnsealResult, error) {
	req := &keystorev1.UnsealBatchRequest{Items: make([]*keystorev1.UnsealRequest, len(items))}
	for i, it := range items {
		req.Items[i] = &keystorev1.UnsealRequest{Key: it.Key, Sealed: it.Sealed, Aad: it.AAD}
	}
	resp, _, err := call(ctx, c, c.keys.UnsealBatch, req)
	if err != nil {
		return nil, err
	}
	if err := checkCount("unseal-batch", len(resp.GetResults()), len(items)); err != nil {
		return nil, err
	}
	out := make([]UnsealResult, len(items))
	for i, r := range resp.GetResults() {
		switch {
		case r.GetError() != nil:
			out[i].Err = detailError(r.GetError())
		case r.GetResponse() != nil && r.GetResponse().GetVersion() != 0:
			pt := r.GetResponse().GetPlaintext()
			if pt == nil {
				pt = []byte{}
			}
			out[i].Unsealed = Unsealed{Plaintext: pt, Version: r.GetResponse().GetVersion()}
		default:
			out[i].Err = protocolError("unseal-batch", items[i].Key, "item "+strconv.Itoa(i)+" has no result, no error or version 0")
		}
	}
	return out, nil
}

func checkCount(op string, got, want int) error {
	if got != want {
		return protocolError(op, "", "daemon returned "+strconv.Itoa(got)+" results for "+strconv.Itoa(want)+" items")
	}
	return nil
}

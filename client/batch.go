package client

import (
	"context"
	"crypto"
	"strconv"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// MaxBatch is the most items one batch call may carry.
const MaxBatch = 1024

// SignItem is one message, or digest, to sign in a batch: the fields of
// SignWith (Version 0 is the primary version; Hash and Digest as in
// SignInput, instead of Message).
type SignItem struct {
	Key     string
	Message []byte
	Version uint32
	Hash    crypto.Hash
	Digest  []byte
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

// SignBatch signs many messages or digests in one call (at most MaxBatch
// items, and at most MaxMessageSize bytes in all). It returns one result
// per item, in order; the error is for the call as a whole. An item whose
// digest is malformed fails alone (ErrInvalid) without being sent; when
// every item is, nothing is sent.
func (c *Client) SignBatch(ctx context.Context, items []SignItem) ([]SignResult, error) {
	out := make([]SignResult, len(items))
	req := &keystorev1.SignBatchRequest{Items: make([]*keystorev1.SignRequest, 0, len(items))}
	sent := make([]int, 0, len(items)) // the index of each item sent
	for i, it := range items {
		in := SignInput{Message: it.Message, Hash: it.Hash, Digest: it.Digest}
		if err := in.check("sign-batch", it.Key); err != nil {
			out[i].Err = err
			continue
		}
		r := &keystorev1.SignRequest{Key: it.Key, Version: int64(it.Version), Message: it.Message}
		if it.Hash != 0 {
			r.DigestHash, _ = provider.HashName(it.Hash) // checked above
			r.Message, r.Digest = nil, it.Digest
		}
		req.Items = append(req.Items, r)
		sent = append(sent, i)
	}
	if len(items) > 0 && len(sent) == 0 {
		return out, nil
	}
	resp, _, err := call(ctx, c, c.keys.SignBatch, req)
	if err != nil {
		return nil, err
	}
	if err := checkCount("sign-batch", len(resp.GetResults()), len(sent)); err != nil {
		return nil, err
	}
	for j, r := range resp.GetResults() {
		i := sent[j]
		switch {
		case r.GetError() != nil:
			out[i].Err = detailError(r.GetError())
		case r.GetResponse() != nil:
			out[i].Signature, out[i].Err = signature(r.GetResponse(), items[i].Key)
			if v := items[i].Version; out[i].Err == nil && v != 0 && out[i].Signature.Version != v {
				out[i].Signature, out[i].Err = Signature{}, versionMismatch("sign-batch", items[i].Key, v, out[i].Signature.Version)
			}
		default:
			out[i].Err = protocolError("sign-batch", items[i].Key, "item "+strconv.Itoa(i)+" has neither result nor error")
		}
	}
	return out, nil
}

// MACItem is one message to MAC in a batch.
type MACItem struct {
	Key     string
	Message []byte
}

// MACResult is one item's result: Err is nil and MACTag set, or Err wraps
// the item's error code.
type MACResult struct {
	MACTag
	Err error
}

// VerifyMACItem is one tag to check in a batch: the arguments of
// VerifyMAC.
type VerifyMACItem struct {
	Key     string
	Version uint32
	Message []byte
	Tag     []byte
}

// MACBatch computes many tags in one call; see SignBatch.
func (c *Client) MACBatch(ctx context.Context, items []MACItem) ([]MACResult, error) {
	req := &keystorev1.MacBatchRequest{Items: make([]*keystorev1.MacRequest, len(items))}
	for i, it := range items {
		req.Items[i] = &keystorev1.MacRequest{Key: it.Key, Message: it.Message}
	}
	resp, _, err := call(ctx, c, c.keys.MacBatch, req)
	if err != nil {
		return nil, err
	}
	if err := checkCount("mac-batch", len(resp.GetResults()), len(items)); err != nil {
		return nil, err
	}
	out := make([]MACResult, len(items))
	for i, r := range resp.GetResults() {
		switch {
		case r.GetError() != nil:
			out[i].Err = detailError(r.GetError())
		case r.GetResponse() != nil:
			out[i].MACTag, out[i].Err = macTag(r.GetResponse(), "mac-batch", items[i].Key)
		default:
			out[i].Err = protocolError("mac-batch", items[i].Key, "item "+strconv.Itoa(i)+" has neither result nor error")
		}
	}
	return out, nil
}

// VerifyMACBatch checks many tags in one call. It returns one error per
// item, in order: nil when the tag matches, one wrapping ErrBadMessage
// when it does not, another when the check could not be made; the error
// is for the call as a whole.
func (c *Client) VerifyMACBatch(ctx context.Context, items []VerifyMACItem) ([]error, error) {
	req := &keystorev1.VerifyMacBatchRequest{Items: make([]*keystorev1.VerifyMacRequest, len(items))}
	for i, it := range items {
		req.Items[i] = &keystorev1.VerifyMacRequest{Key: it.Key, Version: int64(it.Version), Message: it.Message, Tag: it.Tag}
	}
	resp, _, err := call(ctx, c, c.keys.VerifyMacBatch, req)
	if err != nil {
		return nil, err
	}
	if err := checkCount("verify-mac-batch", len(resp.GetResults()), len(items)); err != nil {
		return nil, err
	}
	out := make([]error, len(items))
	for i, r := range resp.GetResults() {
		switch {
		case r.GetError() != nil:
			out[i] = detailError(r.GetError())
		case r.GetResponse() != nil:
			if !r.GetResponse().GetValid() {
				out[i] = badTag(items[i].Key, items[i].Version)
			}
		default:
			out[i] = protocolError("verify-mac-batch", items[i].Key, "item "+strconv.Itoa(i)+" has neither result nor error")
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

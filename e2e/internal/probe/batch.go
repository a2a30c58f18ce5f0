package probe

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// BatchErrors returns the per-item errors of a batch response (nil for an
// item that succeeded), checking that each item has exactly one of a
// response and an error.
func BatchErrors(method string, resp []byte) ([]*keystorev1.ErrorDetail, error) {
	var out []*keystorev1.ErrorDetail
	one := func(hasResp bool, e *keystorev1.ErrorDetail) error {
		if hasResp == (e != nil) {
			return fmt.Errorf("batch item with response=%v and error=%v: want exactly one", hasResp, e)
		}
		out = append(out, e)
		return nil
	}
	switch method {
	case keystorev1.Keys_SignBatch_FullMethodName:
		var m keystorev1.SignBatchResponse
		if err := proto.Unmarshal(resp, &m); err != nil {
			return nil, err
		}
		for _, r := range m.GetResults() {
			if err := one(r.GetResponse() != nil, r.GetError()); err != nil {
				return nil, err
			}
		}
	case keystorev1.Keys_SealBatch_FullMethodName:
		var m keystorev1.SealBatchResponse
		if err := proto.Unmarshal(resp, &m); err != nil {
			return nil, err
		}
		for _, r := range m.GetResults() {
			if err := one(r.GetResponse() != nil, r.GetError()); err != nil {
				return nil, err
			}
		}
	case keystorev1.Keys_UnsealBatch_FullMethodName:
		var m keystorev1.UnsealBatchResponse
		if err := proto.Unmarshal(resp, &m); err != nil {
			return nil, err
		}
		for _, r := range m.GetResults() {
			if err := one(r.GetResponse() != nil, r.GetError()); err != nil {
				return nil, err
			}
		}
	case keystorev1.Keys_MacBatch_FullMethodName:
		var m keystorev1.MacBatchResponse
		if err := proto.Unmarshal(resp, &m); err != nil {
			return nil, err
		}
		for _, r := range m.GetResults() {
			if err := one(r.GetResponse() != nil, r.GetError()); err != nil {
				return nil, err
			}
		}
	case keystorev1.Keys_VerifyMacBatch_FullMethodName:
		var m keystorev1.VerifyMacBatchResponse
		if err := proto.Unmarshal(resp, &m); err != nil {
			return nil, err
		}
		for _, r := range m.GetResults() {
			if err := one(r.GetResponse() != nil, r.GetError()); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%s is not a batch", method)
	}
	return out, nil
}

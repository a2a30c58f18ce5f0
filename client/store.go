package client

import (
	"context"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// MaxValueSize is the largest value PutValue stores (the daemon's bound).
const MaxValueSize = 64 << 10

// PutValue stores value (at most 64 KiB) under name ([a-z0-9][a-z0-9._-]*,
// at most 64 bytes) in the caller's app's small value store, replacing any
// previous value. One app can never read another's values.
func (c *Client) PutValue(ctx context.Context, name string, value []byte) error {
	_, _, err := call(ctx, c, c.store.Put, &keystorev1.PutValueRequest{Name: name, Value: value})
	return err
}

// GetValue returns the value stored under name; ErrNotFound if there is
// none.
func (c *Client) GetValue(ctx context.Context, name string) ([]byte, error) {
	resp, _, err := call(ctx, c, c.store.Get, &keystorev1.GetValueRequest{Name: name})
	if err != nil {
		return nil, err
	}
	v := resp.GetValue()
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// DeleteValue deletes the value stored under name; ErrNotFound if there
// is none.
func (c *Client) DeleteValue(ctx context.Context, name string) error {
	_, _, err := call(ctx, c, c.store.Delete, &keystorev1.DeleteValueRequest{Name: name})
	return err
}

// ValuePage is one page of value names.
type ValuePage struct {
	Names []string
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// ListValues returns one page of the names in the caller's value store;
// pageSize 0 means the daemon's default, pageToken "" the first page.
func (c *Client) ListValues(ctx context.Context, pageSize int, pageToken string) (ValuePage, error) {
	if pageSize < 0 || pageSize > maxPageSize {
		return ValuePage{}, provider.Errorf(provider.EINVAL, "page size %d is not 0 .. %d", pageSize, maxPageSize)
	}
	resp, _, err := call(ctx, c, c.store.List, &keystorev1.ListValuesRequest{PageSize: int32(pageSize), PageToken: pageToken})
	if err != nil {
		return ValuePage{}, err
	}
	return ValuePage{Names: resp.GetNames(), NextPageToken: resp.GetNextPageToken()}, nil
}

package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"sort"
	"sync"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// Bounds of the Store service.
const (
	// MaxValueSize is the largest value Put accepts.
	MaxValueSize = 64 << 10
	// DefaultValuePageSize and MaxValuePageSize bound a List page.
	DefaultValuePageSize = 100
	MaxValuePageSize     = 1000
)

// storeRoot is the storage subtree of the Store service's values:
// store/<app>/<name>, beside the keystore's "keystore/" tree.
const storeRoot = "store"

// Value files: "KSV" 0x01 ‖ SHA-256("keystored/value/v1" ‖ 0 ‖ path ‖ 0 ‖
// value) ‖ value. Binding the path means a file copied to another app's
// or name's place fails its check; a torn or edited file is EIO.
var valueMagic = []byte{'K', 'S', 'V', 1}

const valueHeaderLen = 4 + sha256.Size

func valueDigest(path string, value []byte) []byte {
	h := sha256.New()
	h.Write([]byte("keystored/value/v1"))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(value)
	return h.Sum(nil)
}

func encodeValue(path string, value []byte) []byte {
	out := make([]byte, 0, valueHeaderLen+len(value))
	out = append(out, valueMagic...)
	out = append(out, valueDigest(path, value)...)
	return append(out, value...)
}

func decodeValue(path string, data []byte) ([]byte, error) {
	if len(data) < valueHeaderLen || !bytes.Equal(data[:4], valueMagic) {
		return nil, provider.Errorf(provider.EIO, "corrupted file %s: not a value file", path)
	}
	v := data[valueHeaderLen:]
	if len(v) > MaxValueSize {
		return nil, provider.Errorf(provider.EIO, "corrupted file %s: value too large", path)
	}
	if subtle.ConstantTimeCompare(data[4:valueHeaderLen], valueDigest(path, v)) != 1 {
		return nil, provider.Errorf(provider.EIO, "corrupted file %s: checksum mismatch (torn, edited or moved)", path)
	}
	return append([]byte(nil), v...), nil
}

// valueStore keeps the Store service's values. Every path is built from
// the caller's app (a checked segment) and a checked name segment: no
// request can name another app's value.
//
// Each app's values are held to its quota (core.Quota StoreValues and
// StoreBytes): the app's usage is counted in storage on its first Put or
// Delete, then kept in memory.
type valueStore struct {
	st    core.Storage
	quota func(app string) core.Quota
	mu    sync.Mutex             // orders Put and Delete (the per-app usage)
	usage map[string]*storeUsage // guarded by mu; an app is absent until counted
}

// storeUsage is what one app holds in the Store: values and the sum of
// their lengths.
type storeUsage struct {
	values int
	bytes  int64
}

func valueDir(app string) string { return storeRoot + "/" + app }

func valuePath(app, name string) string { return valueDir(app) + "/" + name }

// names returns the value names of app, sorted; none if the app has none.
func (v *valueStore) names(app string) ([]string, error) {
	entries, err := v.st.ReadDir(valueDir(app))
	if errors.Is(err, provider.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() && provider.CheckSegment("name", e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// put writes a value; commit is called after every check, right before
// the file changes (the audit record is written there, ahead). Over the
// app's quota of values or bytes (an overwrite counts the difference) it
// fails with EDQUOT.
func (v *valueStore) put(app, name string, value []byte, commit func() error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	u, err := v.usageLocked(app)
	if err != nil {
		return err
	}
	old, exists := v.valueSize(valuePath(app, name))
	q := v.quota(app)
	if !exists && u.values >= q.StoreValues {
		return provider.Errorf(provider.EDQUOT, "app %s holds %d values, its quota; delete one first", app, q.StoreValues)
	}
	if after := u.bytes - old + int64(len(value)); after > q.StoreBytes {
		return provider.Errorf(provider.EDQUOT, "app %s would hold %d bytes of values, over its quota of %d; delete or shorten values first", app, after, q.StoreBytes)
	}
	if err := commit(); err != nil {
		return err
	}
	path := valuePath(app, name)
	if err := v.st.WriteFile(path, encodeValue(path, value)); err != nil {
		// The file may hold the old or the new value: count again.
		delete(v.usage, app)
		return err
	}
	if !exists {
		u.values++
	}
	u.bytes = max(u.bytes+int64(len(value))-old, 0)
	return nil
}

// usageLocked returns app's usage, counting it in storage the first time.
// Called with v.mu held.
func (v *valueStore) usageLocked(app string) (*storeUsage, error) {
	if u := v.usage[app]; u != nil {
		return u, nil
	}
	names, err := v.names(app)
	if err != nil {
		return nil, err
	}
	u := &storeUsage{}
	for _, name := range names {
		if n, exists := v.valueSize(valuePath(app, name)); exists {
			u.values++
			u.bytes += n
		}
	}
	if v.usage == nil {
		v.usage = map[string]*storeUsage{}
	}
	v.usage[app] = u
	return u, nil
}

// valueSize returns the length of the value stored at path, and whether
// there is one. A damaged file counts with the length it claims (its
// bytes past the header), and one that cannot be read at all (a planted
// link, an I/O error) as a value of MaxValueSize: either takes that space
// until it is replaced or deleted, and neither stops the app's other
// values from working.
func (v *valueStore) valueSize(path string) (int64, bool) {
	data, err := v.st.ReadFile(path)
	switch {
	case errors.Is(err, provider.ErrNotFound):
		return 0, false
	case err != nil:
		return MaxValueSize, true
	}
	return int64(max(len(data)-valueHeaderLen, 0)), true
}

// usageOf returns app's Store usage (counted in storage the first time).
func (v *valueStore) usageOf(app string) (storeUsage, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	u, err := v.usageLocked(app)
	if err != nil {
		return storeUsage{}, err
	}
	return *u, nil
}

func (v *valueStore) get(app, name string) ([]byte, error) {
	path := valuePath(app, name)
	data, err := v.st.ReadFile(path)
	if errors.Is(err, provider.ErrNotFound) {
		return nil, provider.Errorf(provider.ENOENT, "value %s not found", name)
	}
	if err != nil {
		return nil, err
	}
	return decodeValue(path, data)
}

// remove deletes a value; commit is called once the value is known to
// exist, right before the file is removed.
func (v *valueStore) remove(app, name string, commit func() error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	u, err := v.usageLocked(app)
	if err != nil {
		return err
	}
	old, exists := v.valueSize(valuePath(app, name))
	if !exists {
		return provider.Errorf(provider.ENOENT, "value %s not found", name)
	}
	if err := commit(); err != nil {
		return err
	}
	if err := v.st.Remove(valuePath(app, name)); err != nil {
		delete(v.usage, app) // count again: the file may be gone
		return err
	}
	u.values--
	u.bytes = max(u.bytes-old, 0)
	return nil
}

// storeService implements keystorev1.StoreServer: small values scoped by
// the caller's app. Operators too use their own app's namespace only.
type storeService struct {
	keystorev1.UnimplementedStoreServer
	s *Server
}

// valueTarget resolves the caller and checks a value name, recording it
// for the audit record.
func valueTarget(ctx context.Context, name string) (*Caller, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	if len(name) > provider.MaxSegment {
		return nil, provider.Errorf(provider.EINVAL, "value name longer than %d bytes", provider.MaxSegment)
	}
	if err := provider.CheckSegment("value name", name); err != nil {
		return nil, err
	}
	if sum := callFrom(ctx); sum != nil {
		sum.setKey(name)
	}
	return c, nil
}

func (st *storeService) Put(ctx context.Context, req *keystorev1.PutValueRequest) (*keystorev1.PutValueResponse, error) {
	c, err := valueTarget(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if len(req.GetValue()) > MaxValueSize {
		return nil, provider.Errorf(provider.EMSGSIZE, "value over %d bytes", MaxValueSize)
	}
	commit := func() error { return st.s.commit(ctx) }
	if err := st.s.store.put(c.App, req.GetName(), req.GetValue(), commit); err != nil {
		return nil, err
	}
	return &keystorev1.PutValueResponse{}, nil
}

func (st *storeService) Get(ctx context.Context, req *keystorev1.GetValueRequest) (*keystorev1.GetValueResponse, error) {
	c, err := valueTarget(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	v, err := st.s.store.get(c.App, req.GetName())
	if err != nil {
		return nil, err
	}
	return &keystorev1.GetValueResponse{Value: v}, nil
}

func (st *storeService) Delete(ctx context.Context, req *keystorev1.DeleteValueRequest) (*keystorev1.DeleteValueResponse, error) {
	c, err := valueTarget(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	commit := func() error { return st.s.commit(ctx) }
	if err := st.s.store.remove(c.App, req.GetName(), commit); err != nil {
		return nil, err
	}
	return &keystorev1.DeleteValueResponse{}, nil
}

func (st *storeService) List(ctx context.Context, req *keystorev1.ListValuesRequest) (*keystorev1.ListValuesResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultValuePageSize
	case size < 0 || size > MaxValuePageSize:
		return nil, provider.Errorf(provider.EINVAL, "page size must be 0 (default) to %d", MaxValuePageSize)
	}
	after := req.GetPageToken()
	if after != "" && provider.CheckSegment("page token", after) != nil {
		return nil, provider.Errorf(provider.EINVAL, "malformed page token")
	}
	names, err := st.s.store.names(c.App)
	if err != nil {
		return nil, err
	}
	start := 0
	if after != "" {
		start = sort.Search(len(names), func(i int) bool { return names[i] > after })
	}
	out := &keystorev1.ListValuesResponse{}
	end := min(start+size, len(names))
	out.Names = append([]string{}, names[start:end]...)
	if end < len(names) {
		out.NextPageToken = names[end-1]
	}
	return out, nil
}

// commit is called by a Store request right before it changes a value
// file: the request's audit record is written ahead (see call.commit).
func (s *Server) commit(ctx context.Context) error {
	var err error
	if sum := callFrom(ctx); sum != nil {
		err = sum.commit(ctx)
	} else {
		err = s.audit.Ready(ctx)
	}
	if err != nil {
		return provider.Errorf(provider.EIO, "audit log unavailable; refusing to change state: %w", err)
	}
	return nil
}

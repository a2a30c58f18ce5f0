package server

import (
	"bytes"
	"fmt"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

func TestStoreHappyPath(t *testing.T) {
	e := newEnv(t, envOpts{})
	s := e.store
	for _, n := range []string{"b", "a", "c.d", "e_f-g"} {
		_, err := s.Put(bg, &keystorev1.PutValueRequest{Name: n, Value: []byte("value of " + n)})
		mustOK(t, "Put "+n, err)
	}
	g, err := s.Get(bg, &keystorev1.GetValueRequest{Name: "c.d"})
	mustOK(t, "Get", err)
	if string(g.GetValue()) != "value of c.d" {
		t.Fatalf("Get = %q", g.GetValue())
	}
	// Overwrite, empty value, maximum value.
	_, err = s.Put(bg, &keystorev1.PutValueRequest{Name: "a", Value: nil})
	mustOK(t, "Put empty", err)
	g, err = s.Get(bg, &keystorev1.GetValueRequest{Name: "a"})
	mustOK(t, "Get empty", err)
	if len(g.GetValue()) != 0 {
		t.Fatalf("Get empty = %q", g.GetValue())
	}
	big := bytes.Repeat([]byte{0xa5}, MaxValueSize)
	_, err = s.Put(bg, &keystorev1.PutValueRequest{Name: "big", Value: big})
	mustOK(t, "Put max", err)
	g, err = s.Get(bg, &keystorev1.GetValueRequest{Name: "big"})
	mustOK(t, "Get max", err)
	if !bytes.Equal(g.GetValue(), big) {
		t.Fatal("max value changed")
	}
	_, err = s.Put(bg, &keystorev1.PutValueRequest{Name: "big", Value: append(big, 0)})
	wantCode(t, "Put over the bound", err, provider.EMSGSIZE)

	var names []string
	token := ""
	for {
		l, err := s.List(bg, &keystorev1.ListValuesRequest{PageSize: 2, PageToken: token})
		mustOK(t, "List", err)
		names = append(names, l.GetNames()...)
		if token = l.GetNextPageToken(); token == "" {
			break
		}
	}
	if fmt.Sprint(names) != "[a b big c.d e_f-g]" {
		t.Fatalf("List = %v", names)
	}
	_, err = s.Delete(bg, &keystorev1.DeleteValueRequest{Name: "b"})
	mustOK(t, "Delete", err)
	_, err = s.Get(bg, &keystorev1.GetValueRequest{Name: "b"})
	wantCode(t, "Get deleted", err, provider.ENOENT)
	_, err = s.Delete(bg, &keystorev1.DeleteValueRequest{Name: "b"})
	wantCode(t, "Delete twice", err, provider.ENOENT)

	for _, bad := range []string{"", "A", "../x", "a/b", ".hidden", "x y", string(bytes.Repeat([]byte("a"), 65))} {
		_, err := s.Put(bg, &keystorev1.PutValueRequest{Name: bad, Value: []byte("v")})
		wantCode(t, "Put "+bad, err, provider.EINVAL)
		_, err = s.Get(bg, &keystorev1.GetValueRequest{Name: bad})
		wantCode(t, "Get "+bad, err, provider.EINVAL)
	}
	for _, size := range []int32{-1, MaxValuePageSize + 1} {
		_, err := s.List(bg, &keystorev1.ListValuesRequest{PageSize: size})
		wantCode(t, "List page size", err, provider.EINVAL)
	}
	_, err = s.List(bg, &keystorev1.ListValuesRequest{PageToken: "../x"})
	wantCode(t, "List bad token", err, provider.EINVAL)
}

// TestStoreScopedByApp: two apps over one storage never see each other's
// values, even with the same names.
func TestStoreScopedByApp(t *testing.T) {
	shared := storage.NewMemory()
	idA, err := NewIdentity(map[uint32]string{myUID(): "app-a"}, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	idB, err := NewIdentity(map[uint32]string{myUID(): "app-b"}, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	a := newEnv(t, envOpts{identity: &idA, storage: shared})
	b := newEnv(t, envOpts{identity: &idB, storage: shared})
	_, err = a.store.Put(bg, &keystorev1.PutValueRequest{Name: "token", Value: []byte("a's secret")})
	mustOK(t, "a Put", err)
	_, err = b.store.Get(bg, &keystorev1.GetValueRequest{Name: "token"})
	wantCode(t, "b Get of a's name", err, provider.ENOENT)
	l, err := b.store.List(bg, &keystorev1.ListValuesRequest{})
	mustOK(t, "b List", err)
	if len(l.GetNames()) != 0 {
		t.Fatalf("b lists %v", l.GetNames())
	}
	_, err = b.store.Put(bg, &keystorev1.PutValueRequest{Name: "token", Value: []byte("b's")})
	mustOK(t, "b Put", err)
	g, err := a.store.Get(bg, &keystorev1.GetValueRequest{Name: "token"})
	mustOK(t, "a Get", err)
	if string(g.GetValue()) != "a's secret" {
		t.Fatalf("a's value = %q", g.GetValue())
	}
	if _, ok := shared.Snapshot()["store/app-a/token"]; !ok {
		t.Fatal("value not under store/app-a/token")
	}
}

func TestStoreCorruptionIsEIO(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v", Value: []byte("hello")})
	mustOK(t, "Put", err)
	good := e.mem.Snapshot()["store/alice/v"]
	corruptions := map[string][]byte{
		"empty":     {},
		"truncated": good[:len(good)-1],
		"bit flip":  append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1),
		"magic":     append([]byte("XXXX"), good[4:]...),
		"header":    good[:10],
	}
	for name, data := range corruptions {
		if err := e.mem.WriteFile("store/alice/v", data); err != nil {
			t.Fatal(err)
		}
		_, err := e.store.Get(bg, &keystorev1.GetValueRequest{Name: "v"})
		wantCode(t, "Get of "+name, err, provider.EIO)
	}
	// A value file moved to another name fails its check.
	if err := e.mem.WriteFile("store/alice/w", good); err != nil {
		t.Fatal(err)
	}
	_, err = e.store.Get(bg, &keystorev1.GetValueRequest{Name: "w"})
	wantCode(t, "Get of a moved file", err, provider.EIO)
	// A corrupted value can be deleted and replaced.
	_, err = e.store.Delete(bg, &keystorev1.DeleteValueRequest{Name: "v"})
	mustOK(t, "Delete corrupted", err)
}

func TestStoreQuota(t *testing.T) {
	e := newEnv(t, envOpts{})
	for i := range core.DefaultQuotaStoreValues {
		if err := e.srv.store.put("alice", fmt.Sprintf("v%04d", i), []byte("x"), func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "one-more", Value: []byte("x")})
	wantCode(t, "Put over the quota", err, provider.EDQUOT)
	if r := e.audit.last(t); r.Op != "store.put" || r.Result != "EDQUOT" || r.Key != "one-more" {
		t.Fatalf("refusal audited as %+v", r)
	}
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v0000", Value: []byte("replaced")})
	mustOK(t, "overwrite at the quota", err)
	_, err = e.store.Delete(bg, &keystorev1.DeleteValueRequest{Name: "v0001"})
	mustOK(t, "Delete", err)
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "one-more", Value: []byte("x")})
	mustOK(t, "Put after a delete", err)
	l, err := e.store.List(bg, &keystorev1.ListValuesRequest{PageSize: MaxValuePageSize})
	mustOK(t, "List", err)
	if len(l.GetNames()) != MaxValuePageSize || l.GetNextPageToken() != l.GetNames()[MaxValuePageSize-1] {
		t.Fatalf("List: %d names, token %q", len(l.GetNames()), l.GetNextPageToken())
	}
}

// The Store's bytes quota: the sum of an app's value lengths. An overwrite
// counts the difference; a delete gives the space back; the usage counted
// by a new server over the same storage is the same; another app has its
// own quota.
func TestStoreBytesQuota(t *testing.T) {
	const quota = 3 * MaxValueSize
	mem := storage.NewMemory()
	q := core.Quotas{Default: core.Quota{StoreBytes: quota}}
	e := newEnv(t, envOpts{storage: mem, quotas: q})
	big := bytes.Repeat([]byte{7}, MaxValueSize)
	for _, n := range []string{"a", "b"} {
		_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: n, Value: big})
		mustOK(t, "Put "+n, err)
	}
	_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "c", Value: big[:MaxValueSize-10]})
	mustOK(t, "Put c", err)
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "d", Value: big[:11]})
	wantCode(t, "Put 11 bytes with 10 left", err, provider.EDQUOT)
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "d", Value: big[:10]})
	mustOK(t, "Put the last 10 bytes", err)
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "c", Value: big[:MaxValueSize-9]})
	wantCode(t, "grow c by one byte at the quota", err, provider.EDQUOT)
	_, err = e.store.Put(bg, &keystorev1.PutValueRequest{Name: "c", Value: big[:100]})
	mustOK(t, "shrink c", err)
	u, err := e.srv.Usage(bg, core.Caller{App: "alice"}, "alice")
	if want := int64(2*MaxValueSize + 100 + 10); err != nil || u.StoreValues != 4 || u.StoreBytes != want || u.Quota.StoreBytes != quota {
		t.Fatalf("Usage = %+v, %v; want 4 values, %d bytes", u, err, want)
	}
	_, err = e.store.Delete(bg, &keystorev1.DeleteValueRequest{Name: "a"})
	mustOK(t, "Delete a", err)

	// A new server counts what is in storage.
	e2 := newEnv(t, envOpts{storage: mem, quotas: q})
	u2, err := e2.srv.Usage(bg, core.Caller{App: "ops", Operator: true}, "alice")
	if want := int64(MaxValueSize + 100 + 10); err != nil || u2.StoreValues != 3 || u2.StoreBytes != want {
		t.Fatalf("Usage after a restart = %+v, %v; want 3 values, %d bytes", u2, err, want)
	}
	_, err = e2.store.Put(bg, &keystorev1.PutValueRequest{Name: "e", Value: big})
	mustOK(t, "Put into the space a delete freed", err)
	_, err = e2.store.Put(bg, &keystorev1.PutValueRequest{Name: "f", Value: big[:MaxValueSize-100]})
	wantCode(t, "Put over the quota after a restart", err, provider.EDQUOT)
	if err := e2.srv.store.put("bob", "x", big, func() error { return nil }); err != nil {
		t.Fatalf("another app's Put: %v", err)
	}
	if _, err := e2.srv.Usage(bg, core.Caller{App: "alice"}, "bob"); codeOf(err) != provider.EPERM {
		t.Fatalf("Usage of another app: %v, want EPERM", err)
	}
}

// The keys and versions quotas reach a client as EDQUOT, each refusal
// audited with that result.
func TestKeysQuotaOverRPC(t *testing.T) {
	e := newEnv(t, envOpts{quotas: core.Quotas{Default: core.Quota{Keys: 2, VersionsPerKey: 2}}})
	for _, k := range []string{"sig/a", "sig/b"} {
		_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
		mustOK(t, "Create "+k, err)
	}
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/c", Algorithm: "ed25519"})
	wantCode(t, "Create over the keys quota", err, provider.EDQUOT)
	if r := e.audit.last(t); r.Op != "keys.create" || r.Result != "EDQUOT" || r.Key != "alice/sig/c" {
		t.Fatalf("refusal audited as %+v", r)
	}
	_, err = e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "sig/a"})
	mustOK(t, "Rotate to v2", err)
	_, err = e.keys.Rotate(bg, &keystorev1.RotateKeyRequest{Key: "sig/a"})
	wantCode(t, "Rotate over the versions quota", err, provider.EDQUOT)
	if r := e.audit.last(t); r.Op != "keys.rotate" || r.Result != "EDQUOT" {
		t.Fatalf("refusal audited as %+v", r)
	}
}

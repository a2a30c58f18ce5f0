package server

import (
	"bytes"
	"fmt"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
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
	for i := range MaxValuesPerApp {
		if err := e.srv.store.put("alice", fmt.Sprintf("v%04d", i), []byte("x"), func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "one-more", Value: []byte("x")})
	wantCode(t, "Put over the quota", err, provider.EMSGSIZE)
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

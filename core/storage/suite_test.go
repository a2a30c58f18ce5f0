package storage_test

import (
	"bytes"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// store is core.Storage, restated here because this package cannot import
// core (core imports storage).
type store interface {
	ReadFile(name string) ([]byte, error)
	WriteFile(name string, data []byte) error
	Remove(name string) error
	ReadDir(name string) ([]fs.DirEntry, error)
	PrepareWrite(name string, data []byte) (commit func() error, abort func() error, err error)
}

// listing is what a ReadDir returned, a name per entry, directories with
// a trailing slash.
func listing(entries []fs.DirEntry) []string {
	out := []string{}
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name()+"/")
		} else {
			out = append(out, e.Name())
		}
	}
	return out
}

var (
	_ store = (*storage.Dir)(nil)
	_ store = (*storage.Memory)(nil)
)

// adapter makes a fresh, empty store for one test and registers its
// cleanup.
type adapter struct {
	name string
	open func(t *testing.T) store
}

func newMemory(t *testing.T) store {
	t.Helper()
	return storage.NewMemory()
}

// wantCode fails unless err carries code as its (outermost) Code.
func wantCode(t *testing.T, err error, code provider.Code) {
	t.Helper()
	got, ok := provider.CodeOf(err)
	if !ok || got != code {
		t.Fatalf("error = %v (code %v), want code %v", err, got, code)
	}
}

// longPath returns a valid path of exactly n bytes (n ≥ 1) made of k
// segments of at most storage.MaxNameLen bytes, spread evenly.
func longPath(n int) string {
	k := (n + 1 + storage.MaxNameLen) / (storage.MaxNameLen + 1) // ceil((n+1)/256)
	chars := n - (k - 1)
	segs := make([]string, k)
	for i := range segs {
		l := chars / k
		if i < chars%k {
			l++
		}
		segs[i] = strings.Repeat("a", l)
	}
	return strings.Join(segs, "/")
}

// invalidPaths are refused by every operation with EINVAL.
var invalidPaths = []string{
	"",
	"/",
	"/keystore/MANIFEST",
	"keystore/",
	"keystore//MANIFEST",
	".",
	"..",
	"./keystore",
	"keystore/./MANIFEST",
	"keystore/../MANIFEST",
	"keystore/..",
	"keystore\\MANIFEST",
	"keystore/a\x00b",
	"\x00",
	".lock",
	"keystore/.tmp-0123",
	".hidden/file",
	strings.Repeat("a", storage.MaxNameLen+1),
	"keystore/" + strings.Repeat("b", storage.MaxNameLen+1),
	longPath(storage.MaxPathLen + 1),
}

// validPaths are accepted; each is written and read in a fresh store.
var validPaths = []string{
	"MANIFEST",
	"keystore/MANIFEST",
	"keystore/app/purpose/name/meta.json",
	"keystore/app/purpose/name/v3.handle",
	"a..b/c.",
	"keystore/a b/ünïcode",
	strings.Repeat("a", storage.MaxNameLen),
	longPath(storage.MaxPathLen),
}

func TestAdapters(t *testing.T) {
	for _, a := range allAdapters() {
		t.Run(a.name, func(t *testing.T) {
			t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, a) })
			t.Run("ValidPaths", func(t *testing.T) { testValidPaths(t, a) })
			t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, a) })
			t.Run("NoAliasing", func(t *testing.T) { testNoAliasing(t, a) })
			t.Run("Remove", func(t *testing.T) { testRemove(t, a) })
			t.Run("ReadDir", func(t *testing.T) { testReadDir(t, a) })
			t.Run("NotFound", func(t *testing.T) { testNotFound(t, a) })
			t.Run("TypeConflicts", func(t *testing.T) { testTypeConflicts(t, a) })
			t.Run("InvalidPaths", func(t *testing.T) { testInvalidPaths(t, a) })
			t.Run("SizeBound", func(t *testing.T) { testSizeBound(t, a) })
		})
	}
}

func testRoundTrip(t *testing.T, a adapter) {
	s := a.open(t)
	tests := []struct {
		name string
		data []byte
	}{
		{"keystore/MANIFEST", []byte("format 1\n")},
		{"keystore/app/purpose/name/meta.json", []byte(`{"v":1}`)},
		{"keystore/app/purpose/name/v1.handle", []byte{0, 1, 2, 0xff}},
		{"keystore/app/purpose/name/v2.handle", []byte{}},
		{"keystore/app/purpose/name/v3.handle", []byte{7}},
		{"keystore/app/purpose/other/big", bytes.Repeat([]byte{0xa5}, storage.MaxFileSize)},
	}
	for _, tt := range tests {
		if err := s.WriteFile(tt.name, tt.data); err != nil {
			t.Fatalf("WriteFile(%q): %v", tt.name, err)
		}
	}
	for _, tt := range tests {
		got, err := s.ReadFile(tt.name)
		if err != nil {
			t.Fatalf("ReadFile(%q): %v", tt.name, err)
		}
		if !bytes.Equal(got, tt.data) {
			t.Errorf("ReadFile(%q) = %d bytes, want %d bytes %.16x", tt.name, len(got), len(tt.data), tt.data)
		}
	}
}

func testValidPaths(t *testing.T, a adapter) {
	for _, name := range validPaths {
		s := a.open(t)
		if err := storage.CheckPath(name); err != nil {
			t.Errorf("CheckPath(%.40q): %v, want nil", name, err)
		}
		want := []byte("content of " + name)
		if err := s.WriteFile(name, want); err != nil {
			t.Fatalf("WriteFile(%.40q): %v", name, err)
		}
		got, err := s.ReadFile(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadFile(%.40q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func testOverwrite(t *testing.T, a adapter) {
	s := a.open(t)
	const name = "keystore/app/p/n/meta.json"
	for _, data := range []string{"first version, long", "second", "", "third and last"} {
		if err := s.WriteFile(name, []byte(data)); err != nil {
			t.Fatalf("WriteFile(%q): %v", data, err)
		}
		got, err := s.ReadFile(name)
		if err != nil || string(got) != data {
			t.Fatalf("ReadFile after writing %q = %q, %v", data, got, err)
		}
	}
}

func testNoAliasing(t *testing.T, a adapter) {
	s := a.open(t)
	const name = "keystore/x"
	in := []byte("original")
	if err := s.WriteFile(name, in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	out, err := s.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "original" {
		t.Fatalf("after changing the written slice, ReadFile = %q, want %q", out, "original")
	}
	out[0] = 'Y'
	again, err := s.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != "original" {
		t.Fatalf("after changing a read slice, ReadFile = %q, want %q", again, "original")
	}
}

func testRemove(t *testing.T, a adapter) {
	s := a.open(t)
	const name = "keystore/app/p/n/v1.handle"
	if err := s.WriteFile(name, []byte("h")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(name); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	_, err := s.ReadFile(name)
	wantCode(t, err, provider.ENOENT)
	if err := s.Remove(name); err != nil {
		t.Errorf("second Remove: %v, want nil", err)
	}
	if err := s.Remove("keystore/missing/dir/file"); err != nil {
		t.Errorf("Remove in a missing directory: %v, want nil", err)
	}
	// The directory stays, empty.
	got, err := s.ReadDir("keystore/app/p/n")
	if err != nil || len(got) != 0 {
		t.Errorf("ReadDir of the emptied directory = %v, %v; want [], nil", got, err)
	}
}

func testReadDir(t *testing.T, a adapter) {
	s := a.open(t)
	for _, name := range []string{"keystore/c", "keystore/b/z", "keystore/a/y", "keystore/a/x", "keystore/a/sub/f", "top"} {
		if err := s.WriteFile(name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dir  string
		want []string
	}{
		{"keystore", []string{"a/", "b/", "c"}},
		{"keystore/a", []string{"sub/", "x", "y"}},
		{"keystore/a/sub", []string{"f"}},
	}
	for _, tt := range tests {
		got, err := s.ReadDir(tt.dir)
		if err != nil {
			t.Fatalf("ReadDir(%q): %v", tt.dir, err)
		}
		if !reflect.DeepEqual(listing(got), tt.want) {
			t.Errorf("ReadDir(%q) = %v, want %v", tt.dir, listing(got), tt.want)
		}
		for _, e := range got {
			fi, err := e.Info()
			switch {
			case err != nil:
				t.Errorf("%s/%s: Info: %v", tt.dir, e.Name(), err)
			case fi.Name() != e.Name() || fi.IsDir() != e.IsDir() || e.Type() != fi.Mode().Type():
				t.Errorf("%s/%s: Info %v disagrees with the entry", tt.dir, e.Name(), fi.Mode())
			case !e.IsDir() && (fi.Size() != int64(len(tt.dir+"/"+e.Name())) || fi.Mode() != 0o600):
				t.Errorf("%s/%s: size %d mode %v, want %d 0600", tt.dir, e.Name(), fi.Size(), fi.Mode(), len(tt.dir+"/"+e.Name()))
			case e.IsDir() && fi.Mode() != fs.ModeDir|0o700:
				t.Errorf("%s/%s: mode %v, want drwx------", tt.dir, e.Name(), fi.Mode())
			}
		}
	}
	_, err := s.ReadDir("keystore/none")
	wantCode(t, err, provider.ENOENT)
	_, err = s.ReadDir("keystore/c")
	wantCode(t, err, provider.EIO)
}

func testNotFound(t *testing.T, a adapter) {
	s := a.open(t)
	if err := s.WriteFile("keystore/app/p/n/meta.json", []byte("m")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"keystore/app/p/n/v9.handle", // missing file
		"keystore/app/p/other/meta.json",
		"keystore/zzz/p/n/meta.json", // missing directories
		"nothing",
	} {
		_, err := s.ReadFile(name)
		wantCode(t, err, provider.ENOENT)
		if !errors.Is(err, provider.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(%q) = %v, want errors.Is ErrNotFound and fs.ErrNotExist", name, err)
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("ReadFile(%q) error %q does not name the path", name, err)
		}
	}
}

func testTypeConflicts(t *testing.T, a adapter) {
	s := a.open(t)
	if err := s.WriteFile("keystore/file", []byte("f")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile("keystore/dir/inner", []byte("i")); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what string
		err  error
	}{
		{"write under a file", s.WriteFile("keystore/file/x", []byte("x"))},
		{"write over a directory", s.WriteFile("keystore/dir", []byte("x"))},
		{"read a directory", second(s.ReadFile("keystore/dir"))},
		{"read under a file", second(s.ReadFile("keystore/file/x"))},
		{"remove a directory", s.Remove("keystore/dir")},
		{"remove under a file", s.Remove("keystore/file/x")},
	}
	for _, st := range steps {
		got, ok := provider.CodeOf(st.err)
		if !ok || got != provider.EIO {
			t.Errorf("%s: error = %v, want code EIO", st.what, st.err)
		}
	}
	if got, err := s.ReadFile("keystore/file"); err != nil || string(got) != "f" {
		t.Errorf("keystore/file = %q, %v after the refused operations; want %q", got, err, "f")
	}
	if got, err := s.ReadFile("keystore/dir/inner"); err != nil || string(got) != "i" {
		t.Errorf("keystore/dir/inner = %q, %v after the refused operations; want %q", got, err, "i")
	}
}

func second[T any](_ T, err error) error { return err }

func testInvalidPaths(t *testing.T, a adapter) {
	s := a.open(t)
	for _, name := range invalidPaths {
		if err := storage.CheckPath(name); err == nil {
			t.Errorf("CheckPath(%.40q) = nil, want EINVAL", name)
		}
		errs := map[string]error{
			"ReadFile":  second(s.ReadFile(name)),
			"WriteFile": s.WriteFile(name, []byte("x")),
			"Remove":    s.Remove(name),
			"ReadDir":   second(s.ReadDir(name)),
		}
		for op, err := range errs {
			got, ok := provider.CodeOf(err)
			if !ok || got != provider.EINVAL {
				t.Errorf("%s(%.40q) = %v, want code EINVAL", op, name, err)
			}
		}
	}
	// Nothing was created by the refused writes.
	for _, name := range []string{"keystore", "a"} {
		if _, err := s.ReadDir(name); !isCode(err, provider.ENOENT) {
			t.Errorf("ReadDir(%q) after refused writes = %v, want ENOENT", name, err)
		}
	}
}

func isCode(err error, code provider.Code) bool {
	got, ok := provider.CodeOf(err)
	return ok && got == code
}

func testSizeBound(t *testing.T, a adapter) {
	s := a.open(t)
	const name = "keystore/big"
	full := bytes.Repeat([]byte{1}, storage.MaxFileSize)
	if err := s.WriteFile(name, full); err != nil {
		t.Fatalf("WriteFile of MaxFileSize bytes: %v", err)
	}
	err := s.WriteFile(name, append(full, 2))
	wantCode(t, err, provider.EMSGSIZE)
	got, err := s.ReadFile(name)
	if err != nil || !bytes.Equal(got, full) {
		t.Fatalf("after a refused oversize write, ReadFile = %d bytes, %v; want the %d old bytes", len(got), err, len(full))
	}
	// An invalid path is reported before the size.
	wantCode(t, s.WriteFile("/abs", append(full, 2)), provider.EINVAL)
}

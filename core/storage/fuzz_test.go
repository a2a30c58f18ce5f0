//go:build linux

package storage_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// validByOracle is CheckPath's rule written a second way.
func validByOracle(p string) bool {
	if p == "" || len(p) > storage.MaxPathLen {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || len(seg) > storage.MaxNameLen || seg[0] == '.' || strings.ContainsAny(seg, "\x00\\") {
			return false
		}
	}
	return true
}

//ci:fuzzexecs=3000 (every input fsyncs: about 1,000 executions a second)
func FuzzPath(f *testing.F) {
	seeds := append(append([]string{}, validPaths...), invalidPaths...)
	seeds = append(seeds, "../outside/x", "keystore/../../outside/x", "a/b/../../../outside", "outside",
		"..\\outside", "keystore/app/../../..", "\xff\xfe", "a/\n/b", " ", "keystore/.", "./", "//")
	if len(seeds) == 0 {
		f.Fatal("empty seed corpus")
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		valid := storage.CheckPath(name) == nil
		if valid != validByOracle(name) {
			t.Fatalf("CheckPath(%q) valid = %v, oracle says %v", name, valid, !valid)
		}
		parent := t.TempDir()
		root := filepath.Join(parent, "state")
		outside := filepath.Join(parent, "outside")
		if err := os.MkdirAll(filepath.Join(outside, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(outside, "x", "f"), []byte("outside"), 0o600); err != nil {
			t.Fatal(err)
		}
		d := openDir(t, root)
		outsideBefore := treeState(t, outside)
		rootBefore := treeState(t, root)

		for _, s := range []store{d, storage.NewMemory()} {
			data := []byte("fuzz data")
			if !valid {
				errs := []error{s.WriteFile(name, data), s.Remove(name), second(s.ReadFile(name)), second(s.ReadDir(name))}
				for i, err := range errs {
					if !isCode(err, provider.EINVAL) {
						t.Errorf("operation %d on invalid path %q: %v, want EINVAL", i, name, err)
					}
				}
				continue
			}
			if err := s.WriteFile(name, data); err != nil {
				t.Fatalf("WriteFile(%q) on %T: %v", name, s, err)
			}
			if full := filepath.Join(root, filepath.FromSlash(name)); s == store(d) && len(full) < 4000 { // PATH_MAX
				if fi, err := os.Lstat(full); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("WriteFile(%q) did not create root/%s: %v", name, name, err)
				}
			}
			if got, err := s.ReadFile(name); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadFile(%q) on %T = %q, %v", name, s, got, err)
			}
			if dir, base, ok := strings.Cut(reverse(name), "/"); ok {
				entries, err := s.ReadDir(reverse(base))
				want := []string{reverse(dir)}
				if err != nil || !reflect.DeepEqual(listing(entries), want) {
					t.Fatalf("ReadDir of the parent of %q on %T = %v, %v; want %v", name, s, listing(entries), err, want)
				}
			}
			if err := s.Remove(name); err != nil {
				t.Fatalf("Remove(%q) on %T: %v", name, s, err)
			}
			if _, err := s.ReadFile(name); !isCode(err, provider.ENOENT) {
				t.Fatalf("ReadFile(%q) after Remove on %T = %v, want ENOENT", name, s, err)
			}
		}
		// Nothing outside the root changed; an invalid path changed
		// nothing at all.
		if after := treeState(t, outside); !reflect.DeepEqual(after, outsideBefore) {
			t.Errorf("outside the root changed:\nbefore %v\nafter  %v", outsideBefore, after)
		}
		if names := dirNames(t, parent); !reflect.DeepEqual(names, []string{"outside", "state"}) {
			t.Errorf("the root's parent holds %v, want [outside state]", names)
		}
		if !valid {
			if after := treeState(t, root); !reflect.DeepEqual(after, rootBefore) {
				t.Errorf("an invalid path changed the root:\nbefore %v\nafter  %v", rootBefore, after)
			}
		}
	})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// reverse reverses a string byte by byte (to split at the last slash
// with strings.Cut).
func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

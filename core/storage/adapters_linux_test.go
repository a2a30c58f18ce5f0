//go:build linux

package storage_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/storage"
)

func allAdapters() []adapter {
	return []adapter{
		{"Dir", func(t *testing.T) store { return openDir(t, filepath.Join(t.TempDir(), "state")) }},
		{"Memory", newMemory},
	}
}

// openDir opens a Dir at root and closes it at the end of the test.
func openDir(t *testing.T, root string, opts ...storage.Option) *storage.Dir {
	t.Helper()
	d, err := storage.OpenDir(root, opts...)
	if err != nil {
		t.Fatalf("OpenDir(%q): %v", root, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// treeState describes everything under dir without following symlinks:
// path → "dir <mode>", "link -> <target>" or "file <mode> <content>".
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		case info.IsDir():
			out[rel] = "dir " + info.Mode().Perm().String()
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file " + info.Mode().String() + " " + string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return out
}

// tempFiles lists the temporary files under dir (not following symlinks).
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for p := range treeState(t, dir) {
		if strings.HasPrefix(filepath.Base(p), ".tmp-") {
			out = append(out, p)
		}
	}
	return out
}

func hookedAdapters() []hookedAdapter {
	return []hookedAdapter{
		{"Dir", true, func(t *testing.T, h storage.Hook) *hookedStore {
			root := filepath.Join(t.TempDir(), "state")
			d, err := storage.OpenDir(root, storage.WithHook(h))
			if err != nil {
				t.Fatal(err)
			}
			hs := &hookedStore{store: d}
			cur := d
			t.Cleanup(func() {
				if err := cur.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			hs.restart = func() store {
				if err := cur.Close(); err != nil {
					t.Fatalf("Close before restart: %v", err)
				}
				next, err := storage.OpenDir(root)
				if err != nil {
					t.Fatalf("OpenDir after the simulated crash: %v", err)
				}
				cur = next
				return next
			}
			hs.temps = func() []string { return tempFiles(t, root) }
			return hs
		}},
		{"Memory", false, openHookedMemory},
	}
}

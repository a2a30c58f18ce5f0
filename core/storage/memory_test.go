package storage_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

func TestMemorySnapshotIsACopy(t *testing.T) {
	m := storage.NewMemory()
	for _, name := range []string{"keystore/a/meta.json", "keystore/b/v1.handle"} {
		if err := m.WriteFile(name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	snap := m.Snapshot()
	want := map[string][]byte{
		"keystore/a/meta.json": []byte("keystore/a/meta.json"),
		"keystore/b/v1.handle": []byte("keystore/b/v1.handle"),
	}
	if !reflect.DeepEqual(snap, want) {
		t.Fatalf("Snapshot = %q, want %q", snap, want)
	}
	snap["keystore/a/meta.json"][0] = 'X'
	delete(snap, "keystore/b/v1.handle")
	if got := m.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Errorf("changing a snapshot changed the store: %q", got)
	}
}

func TestMemoryCorrupt(t *testing.T) {
	m := storage.NewMemory()
	const name = "keystore/a/v1.handle"
	if err := m.WriteFile(name, []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	var seen []byte
	flip := func(b []byte) []byte {
		seen = b
		b[1] ^= 0xff
		return b[:3]
	}
	if err := m.Corrupt(name, flip); err != nil {
		t.Fatal(err)
	}
	got, err := m.ReadFile(name)
	if want := []byte{1, 0xfd, 3}; err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after Corrupt, ReadFile = %x, %v; want %x", got, err, want)
	}
	seen[0] = 9 // the function's slice is not the store's
	if got, _ := m.ReadFile(name); got[0] != 1 {
		t.Errorf("Corrupt kept the function's buffer: %x", got)
	}

	// Oversize content is refused on read, like a file on disk.
	if err := m.Corrupt(name, func(b []byte) []byte { return make([]byte, storage.MaxFileSize+1) }); err != nil {
		t.Fatal(err)
	}
	_, err = m.ReadFile(name)
	wantCode(t, err, provider.EIO)

	wantCode(t, m.Corrupt("keystore/missing", flip), provider.ENOENT)
	wantCode(t, m.Corrupt("../x", flip), provider.EINVAL)
	wantCode(t, m.Corrupt(name, nil), provider.EINVAL)
}

// A hook may look at the store mid-write: the content changes at the
// rename.
func TestMemoryHookSeesStateBetweenSteps(t *testing.T) {
	m := storage.NewMemory()
	const name = "keystore/k"
	if err := m.WriteFile(name, []byte("old")); err != nil {
		t.Fatal(err)
	}
	var seen []string
	m.SetHook(func(s storage.Step, p string) error {
		seen = append(seen, fmt.Sprintf("%v:%s", s, m.Snapshot()[name]))
		return nil
	})
	if err := m.WriteFile(name, []byte("new")); err != nil {
		t.Fatal(err)
	}
	want := []string{"create-temp:old", "write:old", "fsync:old", "rename:old", "dir-fsync:new"}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("states seen by the hook = %v, want %v", seen, want)
	}
}

func TestMemoryHookFailsWrite(t *testing.T) {
	m := storage.NewMemory()
	const name = "keystore/k"
	if err := m.WriteFile(name, []byte("old")); err != nil {
		t.Fatal(err)
	}
	m.SetHook(func(s storage.Step, p string) error {
		if s == storage.StepWrite {
			return errInjected
		}
		return nil
	})
	err := m.WriteFile(name, []byte("new"))
	if !errors.Is(err, provider.ErrIO) || !errors.Is(err, errInjected) {
		t.Fatalf("WriteFile = %v, want ErrIO wrapping the injected fault", err)
	}
	got, err := m.ReadFile(name)
	if err != nil || string(got) != "old" {
		t.Errorf("ReadFile = %q, %v; want %q", got, err, "old")
	}
}

func TestAdaptersConcurrent(t *testing.T) {
	for _, a := range allAdapters() {
		t.Run(a.name, func(t *testing.T) {
			s := a.open(t)
			const workers, rounds = 4, 20
			var wg sync.WaitGroup
			errs := make(chan error, workers*rounds*4)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					own := fmt.Sprintf("keystore/app%d/p/n/meta.json", w)
					for r := range rounds {
						want := []byte(fmt.Sprintf("worker %d round %d", w, r))
						if err := s.WriteFile(own, want); err != nil {
							errs <- err
							continue
						}
						if got, err := s.ReadFile(own); err != nil || !bytes.Equal(got, want) {
							errs <- fmt.Errorf("ReadFile(%s) = %q, %v; want %q", own, got, err, want)
						}
						// All workers also race on one shared file.
						if err := s.WriteFile("keystore/shared", want); err != nil {
							errs <- err
						}
						if _, err := s.ReadFile("keystore/shared"); err != nil {
							errs <- err
						}
						if _, err := s.ReadDir("keystore"); err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			got, err := s.ReadDir("keystore")
			if err != nil || len(got) != workers+1 {
				t.Errorf("ReadDir(keystore) = %v, %v; want %d entries", got, err, workers+1)
			}
		})
	}
}

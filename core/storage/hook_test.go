package storage_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// hookedStore is a store with a fault hook installed.
type hookedStore struct {
	store
	// restart simulates a process restart: Dir closes and reopens the
	// directory (sweeping temporary files) without the hook; Memory just
	// drops the hook.
	restart func() store
	// temps lists the temporary files present now (none for Memory).
	temps func() []string
}

type hookedAdapter struct {
	name string
	// leavesTemps: a simulated crash leaves a temporary file behind.
	leavesTemps bool
	open        func(t *testing.T, h storage.Hook) *hookedStore
}

func openHookedMemory(t *testing.T, h storage.Hook) *hookedStore {
	t.Helper()
	m := storage.NewMemory()
	m.SetHook(h)
	return &hookedStore{
		store:   m,
		restart: func() store { m.SetHook(nil); return m },
		temps:   func() []string { return nil },
	}
}

var errInjected = errors.New("injected fault")

type call struct {
	Step storage.Step
	Path string
}

func (c call) String() string { return fmt.Sprintf("%v %s", c.Step, c.Path) }

// faults records the hook's calls and fails the armed one (and, in crash
// mode, every later one).
type faults struct {
	mu     sync.Mutex
	calls  []call
	failAt int // -1: fail nothing
	crash  bool
}

func newFaults() *faults { return &faults{failAt: -1} }

func (f *faults) hook(s storage.Step, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := len(f.calls)
	f.calls = append(f.calls, call{s, p})
	if f.failAt >= 0 && (i == f.failAt || f.crash && i > f.failAt) {
		return errInjected
	}
	return nil
}

// arm clears the record and fails call k (and, with crash, all after it);
// k < 0 disarms.
func (f *faults) arm(k int, crash bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.failAt, f.crash = nil, k, crash
}

func (f *faults) recorded() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// A scenario is one operation and the exact hook calls it makes.
type scenario struct {
	name  string
	setup func(t *testing.T, s store) // runs with the hook disarmed
	op    func(s store) error
	steps []call
	// check verifies the state after a failure at step k (k ==
	// len(steps): no failure).
	check func(t *testing.T, s store, k int)
}

const (
	oldContent = "old content"
	newContent = "new content, longer than the old"
)

// content returns the file's content, "<missing>" or "<error>".
func content(t *testing.T, s store, name string) string {
	t.Helper()
	got, err := s.ReadFile(name)
	switch {
	case isCode(err, provider.ENOENT):
		return "<missing>"
	case err != nil:
		t.Errorf("ReadFile(%q): %v", name, err)
		return "<error>"
	}
	return string(got)
}

func scenarios() []scenario {
	const (
		file  = "keystore/app/p/n/meta.json"
		fresh = "keystore/x/y/z.json"
	)
	writeSteps := func(name, dir string) []call {
		return []call{
			{storage.StepCreateTemp, name},
			{storage.StepWrite, name},
			{storage.StepFsync, name},
			{storage.StepRename, name},
			{storage.StepDirFsync, dir},
		}
	}
	const renameIdx = 3 // in writeSteps
	return []scenario{
		{
			name: "overwrite",
			setup: func(t *testing.T, s store) {
				if err := s.WriteFile(file, []byte(oldContent)); err != nil {
					t.Fatal(err)
				}
			},
			op:    func(s store) error { return s.WriteFile(file, []byte(newContent)) },
			steps: writeSteps(file, "keystore/app/p/n"),
			check: func(t *testing.T, s store, k int) {
				want := oldContent
				if k > renameIdx {
					want = newContent
				}
				if got := content(t, s, file); got != want {
					t.Errorf("after a fault at step %d: content = %q, want %q", k, got, want)
				}
			},
		},
		{
			name: "create with parents",
			setup: func(t *testing.T, s store) {
				if err := s.WriteFile("keystore/MANIFEST", []byte("m")); err != nil {
					t.Fatal(err)
				}
			},
			op: func(s store) error { return s.WriteFile(fresh, []byte(newContent)) },
			steps: append([]call{
				{storage.StepMkdir, "keystore/x"},
				{storage.StepDirFsync, "keystore"},
				{storage.StepMkdir, "keystore/x/y"},
				{storage.StepDirFsync, "keystore/x"},
			}, writeSteps(fresh, "keystore/x/y")...),
			check: func(t *testing.T, s store, k int) {
				want := "<missing>"
				if k > 4+renameIdx {
					want = newContent
				}
				if got := content(t, s, fresh); got != want {
					t.Errorf("after a fault at step %d: content = %q, want %q", k, got, want)
				}
				// Parents made before the fault are there, and usable.
				if k > 0 {
					if _, err := s.ReadDir("keystore/x"); err != nil {
						t.Errorf("after a fault at step %d: ReadDir(keystore/x): %v", k, err)
					}
				}
				if err := s.WriteFile(fresh, []byte("again")); err != nil {
					t.Errorf("after a fault at step %d: a new write failed: %v", k, err)
				}
			},
		},
		{
			name:  "create at the top",
			setup: func(t *testing.T, s store) {},
			op:    func(s store) error { return s.WriteFile("MANIFEST", []byte(newContent)) },
			steps: writeSteps("MANIFEST", "."),
			check: func(t *testing.T, s store, k int) {
				want := "<missing>"
				if k > renameIdx {
					want = newContent
				}
				if got := content(t, s, "MANIFEST"); got != want {
					t.Errorf("after a fault at step %d: content = %q, want %q", k, got, want)
				}
			},
		},
		{
			// A prepared write takes a write's steps; until its commit
			// the target keeps its old content.
			name: "prepared write",
			setup: func(t *testing.T, s store) {
				if err := s.WriteFile(file, []byte(oldContent)); err != nil {
					t.Fatal(err)
				}
			},
			op: func(s store) error {
				commit, _, err := s.PrepareWrite(file, []byte(newContent))
				if err != nil {
					return err
				}
				if got, err := s.ReadFile(file); err != nil || string(got) != oldContent {
					return fmt.Errorf("prepared write visible before its commit: %q, %v", got, err)
				}
				return commit()
			},
			steps: writeSteps(file, "keystore/app/p/n"),
			check: func(t *testing.T, s store, k int) {
				want := oldContent
				if k > renameIdx {
					want = newContent
				}
				if got := content(t, s, file); got != want {
					t.Errorf("after a fault at step %d: content = %q, want %q", k, got, want)
				}
			},
		},
		{
			name: "remove",
			setup: func(t *testing.T, s store) {
				if err := s.WriteFile(file, []byte(oldContent)); err != nil {
					t.Fatal(err)
				}
			},
			op: func(s store) error { return s.Remove(file) },
			steps: []call{
				{storage.StepRemove, file},
				{storage.StepDirFsync, "keystore/app/p/n"},
			},
			check: func(t *testing.T, s store, k int) {
				want := oldContent
				if k > 0 {
					want = "<missing>"
				}
				if got := content(t, s, file); got != want {
					t.Errorf("after a fault at step %d: content = %q, want %q", k, got, want)
				}
			},
		},
	}
}

func TestHookSteps(t *testing.T) {
	for _, a := range hookedAdapters() {
		for _, sc := range scenarios() {
			t.Run(a.name+"/"+sc.name, func(t *testing.T) {
				f := newFaults()
				s := a.open(t, f.hook)
				sc.setup(t, s)
				f.arm(-1, false)
				if err := sc.op(s); err != nil {
					t.Fatal(err)
				}
				if got := f.recorded(); !reflect.DeepEqual(got, sc.steps) {
					t.Errorf("hook calls:\ngot  %v\nwant %v", got, sc.steps)
				}
				sc.check(t, s, len(sc.steps))
			})
		}
	}
}

// TestHookFailEachStep fails one step at a time: the operation reports
// EIO wrapping the hook's error, cleans up its temporary file and leaves
// the old content unless the failed step came after the rename.
func TestHookFailEachStep(t *testing.T) {
	for _, a := range hookedAdapters() {
		for _, sc := range scenarios() {
			for k := range sc.steps {
				t.Run(fmt.Sprintf("%s/%s/%d-%v", a.name, sc.name, k, sc.steps[k].Step), func(t *testing.T) {
					f := newFaults()
					s := a.open(t, f.hook)
					sc.setup(t, s)
					f.arm(k, false)
					err := sc.op(s)
					if !isCode(err, provider.EIO) || !errors.Is(err, errInjected) {
						t.Fatalf("error = %v, want EIO wrapping the injected fault", err)
					}
					if got := f.recorded(); len(got) <= k || got[k] != sc.steps[k] {
						t.Fatalf("hook calls %v, want call %d to be %v", got, k, sc.steps[k])
					}
					if tmp := s.temps(); len(tmp) != 0 {
						t.Errorf("temporary files left after a failed step: %v", tmp)
					}
					f.arm(-1, false)
					sc.check(t, s, k)
				})
			}
		}
	}
}

// TestHookCrashAtEachStep simulates a crash before step k: the hook fails
// step k and every later call (the cleanup too), then the store restarts.
// The file holds the old or the new content, as the step dictates, and
// the restart sweeps what the crash left.
func TestHookCrashAtEachStep(t *testing.T) {
	for _, a := range hookedAdapters() {
		for _, sc := range scenarios() {
			for k := 0; k <= len(sc.steps); k++ {
				t.Run(fmt.Sprintf("%s/%s/%d", a.name, sc.name, k), func(t *testing.T) {
					f := newFaults()
					hs := a.open(t, f.hook)
					sc.setup(t, hs)
					f.arm(k, true)
					err := sc.op(hs)
					if k == len(sc.steps) {
						if err != nil {
							t.Fatalf("no fault, error %v", err)
						}
					} else if !isCode(err, provider.EIO) || !errors.Is(err, errInjected) {
						t.Fatalf("error = %v, want EIO wrapping the injected fault", err)
					}
					// Between create-temp and rename a crash leaves the
					// temporary file behind.
					step := storage.Step(0)
					if k < len(sc.steps) {
						step = sc.steps[k].Step
					}
					midWrite := step == storage.StepWrite || step == storage.StepFsync || step == storage.StepRename
					if got := len(hs.temps()) > 0; a.leavesTemps && got != midWrite {
						t.Errorf("temporary file left = %v, want %v (crash before %v)", got, midWrite, step)
					}
					s := hs.restart()
					if tmp := hs.temps(); len(tmp) != 0 {
						t.Errorf("temporary files left after the restart: %v", tmp)
					}
					sc.check(t, s, k)
				})
			}
		}
	}
}

// TestPrepareWriteAbort: an aborted prepared write leaves the old content
// and no temporary file; commit and abort after the first do nothing.
func TestPrepareWriteAbort(t *testing.T) {
	const file = "keystore/app/p/n/meta.json"
	for _, a := range hookedAdapters() {
		t.Run(a.name, func(t *testing.T) {
			f := newFaults()
			s := a.open(t, f.hook)
			if err := s.WriteFile(file, []byte(oldContent)); err != nil {
				t.Fatal(err)
			}
			commit, abort, err := s.PrepareWrite(file, []byte(newContent))
			if err != nil {
				t.Fatal(err)
			}
			if a.leavesTemps && len(s.temps()) != 1 {
				t.Errorf("temporary files of a prepared write: %v, want one", s.temps())
			}
			if err := abort(); err != nil {
				t.Fatal(err)
			}
			if err := commit(); err != nil {
				t.Errorf("commit after abort: %v", err)
			}
			if got := content(t, s, file); got != oldContent {
				t.Errorf("after abort: content = %q, want %q", got, oldContent)
			}
			if tmp := s.temps(); len(tmp) != 0 {
				t.Errorf("temporary files left after abort: %v", tmp)
			}
			commit, abort, err = s.PrepareWrite(file, []byte(newContent))
			if err != nil {
				t.Fatal(err)
			}
			if err := commit(); err != nil {
				t.Fatal(err)
			}
			if err := abort(); err != nil {
				t.Errorf("abort after commit: %v", err)
			}
			if got := content(t, s, file); got != newContent {
				t.Errorf("after commit: content = %q, want %q", got, newContent)
			}
		})
	}
}

// A write through a directory that a concurrent write has just made, and
// whose entry that write has not yet made durable (its parent's fsync not
// yet done), fsyncs the parent itself: it is not acknowledged while the
// directory holding its file could vanish in a power cut.
func TestWriteThroughFreshDirectory(t *testing.T) {
	for _, a := range hookedAdapters() {
		t.Run(a.name, func(t *testing.T) {
			var (
				mu        sync.Mutex
				blocked   bool
				recording bool
				steps     []call
			)
			reached, release := make(chan struct{}), make(chan struct{})
			hook := func(step storage.Step, p string) error {
				mu.Lock()
				if recording {
					steps = append(steps, call{step, p})
				}
				block := step == storage.StepDirFsync && p == "x" && !blocked
				if block {
					blocked = true
				}
				mu.Unlock()
				if block {
					close(reached)
					<-release
				}
				return nil
			}
			s := a.open(t, hook)
			first := make(chan error, 1)
			go func() { first <- s.WriteFile("x/y/k1", []byte("1")) }()
			<-reached // x/y made, x not yet fsynced
			mu.Lock()
			recording = true
			mu.Unlock()
			err := s.WriteFile("x/y/k2", []byte("2"))
			mu.Lock()
			got := slices.Clone(steps)
			mu.Unlock()
			close(release)
			if ferr := <-first; ferr != nil {
				t.Fatal(ferr)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(got, call{storage.StepDirFsync, "x"}) {
				t.Errorf("the write through x/y, made but not yet durable, took %v: no fsync of x", got)
			}
			// Once the maker's fsync is done, later writes take no extra fsync.
			mu.Lock()
			steps = nil
			mu.Unlock()
			if err := s.WriteFile("x/y/k3", []byte("3")); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if slices.Contains(steps, call{storage.StepDirFsync, "x"}) {
				t.Errorf("a write after x/y was durable fsynced x again: %v", steps)
			}
		})
	}
}

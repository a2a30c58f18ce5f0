package core_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

var errInjected = errors.New("injected fault")

// faults is a storage hook that fails one step (fail mode) or every step
// from one on (crash mode: the process "dies" and abandons all later
// writes, including the cleanup of its temporary files).
type faults struct {
	mu    sync.Mutex
	at    int  // index of the first failing step; -1: count only
	crash bool // fail every step from at on
	n     int  // steps seen
	steps []string
}

func (f *faults) hook(step storage.Step, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.n
	f.n++
	f.steps = append(f.steps, step.String()+" "+path)
	if f.at >= 0 && (i == f.at || f.crash && i > f.at) {
		return errInjected
	}
	return nil
}

// crashOp is one operation under test: setup brings the store to the "old"
// state, run performs the operation, check reports whether a reopened
// store is wholly at the old or wholly at the new state.
type crashOp struct {
	name  string
	setup func(t *testing.T, e *env) (sealed []byte)
	run   func(e *env) error
	// state returns "old", "new" or a description of a mixed state.
	state func(t *testing.T, e *env, sealed []byte) string
}

const crashID = "app-a/d/k"

var crashKeyID, _ = provider.ParseKeyID(crashID)

func crashOps() []crashOp {
	return []crashOp{
		{
			name:  "create",
			setup: func(t *testing.T, e *env) []byte { return nil },
			run: func(e *env) error {
				_, err := e.ks.Create(ctx, appA, crashKeyID, core.CreateOptions{Algorithm: provider.XChaCha20Poly1305})
				return err
			},
			state: func(t *testing.T, e *env, _ []byte) string {
				m, err := e.ks.Get(ctx, appA, mustID(t, crashID))
				if codeOf(err) == provider.ENOENT {
					return "old"
				}
				if err != nil {
					return "unreadable: " + err.Error()
				}
				if m.Current != 1 || m.State != core.StateActive {
					return fmt.Sprintf("mixed: %+v", m)
				}
				b, err := e.ks.Seal(ctx, appA, m.ID, []byte("x"), nil)
				if err != nil {
					return "created but unusable: " + err.Error()
				}
				if _, err := e.ks.Unseal(ctx, appA, m.ID, b.Data, nil); err != nil {
					return "created but unusable: " + err.Error()
				}
				return "new"
			},
		},
		{
			name: "rotate",
			setup: func(t *testing.T, e *env) []byte {
				id := e.create(t, appA, crashID, provider.XChaCha20Poly1305)
				b, err := e.ks.Seal(ctx, appA, id, []byte("before"), []byte("aad"))
				if err != nil {
					t.Fatal(err)
				}
				return b.Data
			},
			run: func(e *env) error {
				_, err := e.ks.Rotate(ctx, appA, crashKeyID)
				return err
			},
			state: func(t *testing.T, e *env, sealed []byte) string {
				id := mustID(t, crashID)
				m, err := e.ks.Get(ctx, appA, id)
				if err != nil {
					return "unreadable: " + err.Error()
				}
				pt, err := e.ks.Unseal(ctx, appA, id, sealed, []byte("aad"))
				if err != nil || string(pt.Plaintext) != "before" {
					return fmt.Sprintf("data sealed before the rotation lost: %v", err)
				}
				primaries := 0
				for _, v := range m.Versions {
					if v.State == core.VersionPrimary {
						primaries++
					}
				}
				if primaries != 1 {
					return fmt.Sprintf("%d primary versions", primaries)
				}
				s, err := e.ks.Seal(ctx, appA, id, []byte("x"), nil)
				if err != nil {
					return "unusable: " + err.Error()
				}
				v := s.Version
				switch {
				case m.Current == 1 && v == 1:
					return "old"
				case m.Current == 2 && v == 2 && m.Versions[0].State == core.VersionRetired:
					return "new"
				}
				return fmt.Sprintf("mixed: current %d, sealed with v%d", m.Current, v)
			},
		},
	}
}

// TestCrashAtEveryStorageStep fails, and separately crashes at, every
// single mkdir / create-temp / write / fsync / rename / dir-fsync / remove
// step of create and rotate, then reopens the directory and checks that
// the key is wholly at its old state or wholly at its new one, that an
// acknowledged operation is never lost, and that nothing is left unreadable.
func TestCrashAtEveryStorageStep(t *testing.T) {
	for _, op := range crashOps() {
		// Count the steps of the operation.
		count := &faults{at: -1}
		{
			dir := t.TempDir()
			e := openDirEnv(t, dir, nil)
			op.setup(t, e)
			closeDirEnv(t, e)
			e = openDirEnv(t, dir, count.hook)
			if err := op.run(e); err != nil {
				t.Fatalf("%s without faults: %v", op.name, err)
			}
			closeDirEnv(t, e)
		}
		if count.n < 5 { // at least one file write: five steps

			t.Fatalf("%s took only %d storage steps: %v", op.name, count.n, count.steps)
		}
		for _, crash := range []bool{false, true} {
			mode := "fail"
			if crash {
				mode = "crash"
			}
			for k := 0; k < count.n; k++ {
				t.Run(fmt.Sprintf("%s/%s/%d-%s", op.name, mode, k, count.steps[k]), func(t *testing.T) {
					dir := t.TempDir()
					e := openDirEnv(t, dir, nil)
					sealed := op.setup(t, e)
					closeDirEnv(t, e)
					f := &faults{at: k, crash: crash}
					e = openDirEnv(t, dir, f.hook)
					err := op.run(e)
					if err != nil && !errors.Is(err, provider.ErrIO) {
						t.Fatalf("failed %s: %v, want EIO", op.name, err)
					}
					closeDirEnv(t, e)
					// Reopen as after a restart.
					e = openDirEnv(t, dir, nil)
					defer closeDirEnv(t, e)
					got := op.state(t, e, sealed)
					if got != "old" && got != "new" {
						t.Fatalf("after a %s at step %d (%s): %s", mode, k, count.steps[k], got)
					}
					if err == nil && got != "new" {
						t.Fatalf("acknowledged %s lost after a %s at step %d", op.name, mode, k)
					}
					p, lerr := e.ks.List(ctx, operator, core.ListOptions{})
					if lerr != nil || len(p.Unreadable) != 0 {
						t.Fatalf("unreadable files after the %s: %v %v", mode, p.Unreadable, lerr)
					}
				})
			}
		}
	}
}

func openDirEnv(t *testing.T, dir string, hook storage.Hook) *env {
	t.Helper()
	var opts []storage.Option
	if hook != nil {
		opts = append(opts, storage.WithHook(hook))
	}
	st, err := storage.OpenDir(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, st, newEnv(t).p)
}

func closeDirEnv(t *testing.T, e *env) {
	t.Helper()
	if c, ok := e.st.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

package faults

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/server"
)

// inproc is a keystored server in this process, laid out as the daemon
// lays out its state directory (storage.Dir at the root, the audit log
// in audit/audit.jsonl), serving a real Unix socket.
type inproc struct {
	st     *storage.Dir
	alog   *audit.Log
	gs     *grpc.Server
	served chan error
	c      *client.Client
}

// testKEK is the software provider's KEK in the in-process servers.
var testKEK = func() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(0xa0 + i)
	}
	return k
}()

// startInproc serves the state directory state (created 0700 if missing)
// with hook installed in its storage.
func startInproc(t *testing.T, state string, hook storage.Hook) *inproc {
	t.Helper()
	var opts []storage.Option
	if hook != nil {
		opts = append(opts, storage.WithHook(hook))
	}
	st, err := storage.OpenDir(state, opts...)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.Open(filepath.Join(state, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := software.New(software.Config{KEK: secret.New(append([]byte(nil), testKEK...))})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), server.Config{Storage: st, Provider: p, Clock: clock.System{}, Audit: alog})
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "ksf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(sockDir); err != nil {
			t.Error(err)
		}
	})
	sock := filepath.Join(sockDir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &inproc{st: st, alog: alog, gs: srv.NewGRPCServer(), served: make(chan error, 1)}
	go func() { s.served <- srv.Serve(s.gs, l) }()
	if s.c, err = client.Dial(context.Background(), sock); err != nil {
		t.Fatal(err)
	}
	return s
}

// stop closes the client, the server, the audit log and the storage.
func (s *inproc) stop(t *testing.T) {
	t.Helper()
	if err := s.c.Close(); err != nil {
		t.Error(err)
	}
	s.gs.Stop()
	if err := <-s.served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		t.Errorf("Serve: %v", err)
	}
	if err := s.alog.Close(); err != nil {
		t.Error(err)
	}
	if err := s.st.Close(); err != nil {
		t.Error(err)
	}
}

// A full disk: every write step of one kind fails with ENOSPC, as a full
// filesystem makes write(2), fsync(2) (delayed allocation) or the
// creation of a file or directory fail. State-changing requests fail with
// EIO saying "no space left on device"; nothing in the state directory
// changes; every read is still served; once space is back, writes work
// again without a restart, and a reopened state directory is whole.
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []storage.Step
	}{
		{"write", []storage.Step{storage.StepWrite}},
		{"fsync", []storage.Step{storage.StepFsync}},
		{"create", []storage.Step{storage.StepMkdir, storage.StepCreateTemp}},
		{"rename", []storage.Step{storage.StepRename}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			state := filepath.Join(t.TempDir(), "state")
			var full atomic.Bool
			var refused atomic.Int64
			hook := func(step storage.Step, _ string) error {
				if full.Load() && slices.Contains(tc.steps, step) {
					refused.Add(1)
					return syscall.ENOSPC
				}
				return nil
			}
			s := startInproc(t, state, hook)
			fx := setUp(t, s.c)
			before := snapshot(t, state)

			full.Store(true)
			writesFail(t, s.c, writes(false), "no space left on device")
			if refused.Load() == 0 {
				t.Fatalf("no %v step was refused: the hook is not reached", tc.steps)
			}
			readsWork(t, s.c, fx)
			sameFiles(t, "after the failed writes", before, snapshot(t, state))
			noTempFiles(t, state)

			// Destroy removes the handle files (an unlink needs no
			// space), then fails on the metadata: the key stays revoked,
			// and the destroy can be repeated.
			writesFail(t, s.c, []request{destroyRequest}, "no space left on device")
			if info, err := s.c.Get(ctx, keyGone); err != nil || info.State != client.KeyRevoked {
				t.Errorf("after a failed destroy: %v, %v; want a revoked key", info.State, err)
			}

			full.Store(false)
			for _, w := range append(writes(true), destroyRequest) {
				if err := w.call(ctx, s.c); err != nil {
					t.Errorf("%s with space back: %v", w.name, err)
				}
			}
			s.stop(t)

			// Reopened (which sweeps temporary files): every key loads.
			s = startInproc(t, state, nil)
			defer s.stop(t)
			noTempFiles(t, state)
			page, err := s.c.List(ctx, client.ListOptions{})
			if err != nil || len(page.Unreadable) != 0 || len(page.Keys) != fixtureKeys+writtenKeys {
				t.Fatalf("list after reopening: %d keys, unreadable %v, %v; want %d keys", len(page.Keys), page.Unreadable, err, fixtureKeys+writtenKeys)
			}
			if err := s.c.Verify(ctx, keySig, fx.sig.Version, fx.msg, fx.sig.Signature); err != nil {
				t.Errorf("verify after reopening: %v", err)
			}
			if _, err := s.c.Unseal(ctx, keyBox, fx.sealed.Data, fx.aad); !errors.Is(err, client.ErrKeyRevoked) {
				t.Errorf("unseal with %s revoked: %v, want EKEYREVOKED", keyBox, err)
			}
			if _, err := audit.VerifyFile(filepath.Join(state, "audit", "audit.jsonl")); err != nil {
				t.Errorf("audit log: %v", err)
			}
		})
	}
}

// mountTmpfs mounts a tmpfs of size bytes (mode 0700) on dir, unmounted
// when the test ends (after the daemons it started, which are stopped
// first). It skips the test when mounting is not permitted.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size="+strconv.Itoa(size)); err != nil {
		t.Skipf("mount tmpfs on %s: %v (needs root with CAP_SYS_ADMIN); TestDiskFull injects ENOSPC instead", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("lazy unmount %s: %v", dir, err)
			}
		}
	})
}

// fill writes dir/.fill until the filesystem is full (names starting with
// a dot are never keys or values) and returns a function that frees it.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, ".fill")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{64 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", dir, err)
				}
				break
			}
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// A really full filesystem under the real daemon: the keystore and the
// value store on small tmpfs mounts (the audit log beside them on the
// ordinary disk), filled up. State-changing requests fail with EIO saying
// "no space left on device", nothing changes, reads are served, and once
// space is freed writes work again without a restart.
func TestDiskFullRealDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; TestDiskFull injects ENOSPC instead")
	}
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, filepath.Join(state, "keystore"), 1<<20)
	mountTmpfs(t, filepath.Join(state, "store"), 256<<10)
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	c, err := client.Dial(ctx, d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}()
	fx := setUp(t, c)
	freeKeystore := fill(t, filepath.Join(state, "keystore"))
	freeStore := fill(t, filepath.Join(state, "store"))
	before := snapshot(t, state)

	// Unlinks free space, so deletes and destroy are left out.
	writesFail(t, c, writes(false), "no space left on device")
	readsWork(t, c, fx)
	sameFiles(t, "after the failed writes", before, snapshot(t, state))
	noTempFiles(t, state)

	freeKeystore()
	freeStore()
	for _, w := range append(writes(true), destroyRequest) {
		if err := w.call(ctx, c); err != nil {
			t.Errorf("%s with space back: %v", w.name, err)
		}
	}
	d.Stop()
	d = daemontest.Start(t, daemontest.Options{Dir: dir, State: state})
	c2, err := client.Dial(ctx, d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	page, err := c2.List(ctx, client.ListOptions{})
	if err != nil || len(page.Unreadable) != 0 || len(page.Keys) != fixtureKeys+writtenKeys {
		t.Errorf("list after restart: %d keys, unreadable %v, %v; want %d keys", len(page.Keys), page.Unreadable, err, fixtureKeys+writtenKeys)
	}
	if err := c2.Close(); err != nil {
		t.Error(err)
	}
	d.Stop()
	if _, err := audit.VerifyFile(filepath.Join(state, "audit", "audit.jsonl")); err != nil {
		t.Errorf("audit log: %v", err)
	}
}

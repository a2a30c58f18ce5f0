package faults

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// unprivilegedID is the uid and gid the daemon runs as when the tests run
// as root (root ignores directory permissions). No account is needed.
const unprivilegedID = 61_873

// daemonUser returns the credential to run the daemon with (nil: as this
// process) and the uid and gid that must own its directories.
func daemonUser() (*syscall.Credential, int, int) {
	if os.Geteuid() != 0 {
		return nil, os.Geteuid(), os.Getegid()
	}
	return &syscall.Credential{Uid: unprivilegedID, Gid: unprivilegedID}, unprivilegedID, unprivilegedID
}

// setWritable adds (on) or removes (off) the owner's write permission on
// every directory under <state>/keystore and <state>/store.
func setWritable(t *testing.T, state string, on bool) {
	t.Helper()
	for _, top := range []string{"keystore", "store"} {
		err := filepath.WalkDir(filepath.Join(state, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			mode := os.FileMode(0o500)
			if on {
				mode = 0o700
			}
			return os.Chmod(path, mode)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A state directory made read-only (chmod a-w on every directory of the
// keystore and the value store) under a running daemon that is not root:
// state-changing requests fail with EIO saying "permission denied",
// nothing changes, every read is still served, and writes work again once
// the permissions are back, without a restart.
func TestReadOnlyStateDir(t *testing.T) {
	ctx := context.Background()
	cred, uid, gid := daemonUser()
	if cred != nil {
		t.Logf("running as root: the daemon runs as uid %d, which the permissions bind", uid)
	}
	base, err := os.MkdirTemp("", "ksro")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(base, uid, gid); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(base, "state")
	t.Cleanup(func() {
		if _, err := os.Stat(state); err == nil {
			setWritable(t, state, true)
		}
		if err := os.RemoveAll(base); err != nil {
			t.Error(err)
		}
	})
	opts := daemontest.Options{Dir: base, State: state, Socket: filepath.Join(base, "run", "s.sock"), Credential: cred}
	d := daemontest.Start(t, opts)
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
	before := snapshot(t, state)

	setWritable(t, state, false)
	writesFail(t, c, append(writes(true), destroyRequest), "permission denied")
	readsWork(t, c, fx)
	sameFiles(t, "after the failed writes", before, snapshot(t, state))
	noTempFiles(t, state)

	setWritable(t, state, true)
	for _, w := range append(writes(true), destroyRequest) {
		if err := w.call(ctx, c); err != nil {
			t.Errorf("%s with the permissions back: %v", w.name, err)
		}
	}
	d.Stop()

	// Restarted: every key loads, nothing is left over.
	d = daemontest.Start(t, opts)
	c2, err := client.Dial(ctx, d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c2.Close(); err != nil {
			t.Error(err)
		}
	}()
	noTempFiles(t, state)
	page, err := c2.List(ctx, client.ListOptions{})
	if err != nil || len(page.Unreadable) != 0 || len(page.Keys) != fixtureKeys+writtenKeys {
		t.Fatalf("list after restart: %d keys, unreadable %v, %v; want %d keys", len(page.Keys), page.Unreadable, err, fixtureKeys+writtenKeys)
	}
	if err := c2.Verify(ctx, keySig, fx.sig.Version, fx.msg, fx.sig.Signature); err != nil {
		t.Errorf("verify after restart: %v", err)
	}
	d.Stop()
}

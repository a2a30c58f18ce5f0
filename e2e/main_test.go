package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/e2e/internal/probe"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// TestMain also makes the test binary a probe (package probe): the import
// and HPKE tests run a copy of it under another uid, as another app.
func TestMain(m *testing.M) {
	if probe.Enabled() {
		os.Exit(probe.Main(os.Stdin, os.Stdout))
	}
	code := daemontest.Main(m)
	if ctlDir != "" {
		if err := os.RemoveAll(ctlDir); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: removing %s: %v\n", ctlDir, err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	ctlOnce sync.Once
	ctlDir  string
	ctlBin  string
	ctlErr  error
)

// keystorectl returns the path of a keystorectl binary built from this
// module, in a directory every user may read (identity tests run it under
// other uids).
func keystorectl(t testing.TB) string {
	t.Helper()
	ctlOnce.Do(func() {
		ctlDir, ctlErr = os.MkdirTemp("", "keystorectl-")
		if ctlErr != nil {
			return
		}
		if ctlErr = os.Chmod(ctlDir, 0o755); ctlErr != nil {
			return
		}
		bin := filepath.Join(ctlDir, "keystorectl")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/nexus-os/keystored/cmd/keystorectl").CombinedOutput()
		if err != nil {
			ctlErr = fmt.Errorf("go build keystorectl: %v\n%s", err, out)
			return
		}
		ctlBin = bin
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return ctlBin
}

// start starts a daemon with the default software provider and extra
// flags.
func start(t *testing.T, args ...string) *daemontest.Daemon {
	t.Helper()
	return daemontest.Start(t, daemontest.Options{Args: args})
}

// dial connects the typed client to d.
func dial(t testing.TB, d *daemontest.Daemon) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), d.Socket)
	if err != nil {
		t.Fatalf("client.Dial(%s): %v\n%s", d.Socket, err, d.Logs())
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// result is one keystorectl process run.
type result struct {
	code   int
	stdout []byte
	stderr string
}

// ctl runs the keystorectl binary against d's socket (via
// $KEYSTORE_SOCKET) with stdin.
func ctl(t *testing.T, d *daemontest.Daemon, stdin []byte, args ...string) result {
	t.Helper()
	return ctlAs(t, d, nil, stdin, args...)
}

// ctlAs is ctl with a command hook (credentials).
func ctlAs(t *testing.T, d *daemontest.Daemon, setup func(*exec.Cmd), stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(keystorectl(t), args...)
	cmd.Env = append(os.Environ(), "KEYSTORE_SOCKET="+d.Socket)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if setup != nil {
		setup(cmd)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("keystorectl %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{code: code, stdout: out.Bytes(), stderr: errOut.String()}
}

// ctlOK runs keystorectl and fails the test unless it exits 0.
func ctlOK(t *testing.T, d *daemontest.Daemon, stdin []byte, args ...string) result {
	t.Helper()
	r := ctl(t, d, stdin, args...)
	if r.code != 0 {
		t.Fatalf("keystorectl %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// ctlFails runs keystorectl and checks its exit status and error line.
func ctlFails(t *testing.T, d *daemontest.Daemon, stdin []byte, want int, reason string, args ...string) result {
	t.Helper()
	r := ctl(t, d, stdin, args...)
	if r.code != want {
		t.Fatalf("keystorectl %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, want, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "keystorectl: error: ") || !strings.Contains(r.stderr, "("+reason+")\n") {
		t.Errorf("keystorectl %s: stderr %q, want 'keystorectl: error: ... (%s)'", strings.Join(args, " "), r.stderr, reason)
	}
	return r
}

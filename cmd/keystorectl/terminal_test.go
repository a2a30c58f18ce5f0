package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/client/clienttest"
)

// openPTY returns the terminal side of a new pseudo-terminal (its
// controller is closed at cleanup).
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test with: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}

// ctlTTY runs keystorectl with stdout on the terminal tty.
func ctlTTY(sock string, tty *os.File, stdin []byte, args ...string) (int, string) {
	var errOut bytes.Buffer
	code := runEnv(args, bytes.NewReader(stdin), tty, &errOut, func(k string) string {
		if k == SocketEnv {
			return sock
		}
		return ""
	})
	return code, errOut.String()
}

// Binary output (a signature, sealed data, binary plaintext) to a
// terminal is refused with a usage error and a hint, before the daemon is
// asked; --out, --json and text plaintext are not refused.
func TestBinaryToTerminalRefused(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	ok(t, s, nil, "create", "p/sig", "--alg", "ed25519")
	ok(t, s, nil, "create", "p/box", "--alg", "xchacha20-poly1305")
	tty := openPTY(t)
	dir := t.TempDir()
	for _, args := range [][]string{{"sign", "p/sig"}, {"seal", "p/box"}} {
		code, stderr := ctlTTY(s, tty, []byte("hello"), args...)
		if code != exitUsage || !strings.Contains(stderr, "refusing to write") || !strings.Contains(stderr, "hint: write it to a file with --out FILE") {
			t.Errorf("keystorectl %s to a terminal: exit %d, stderr %q", args, code, stderr)
		}
		if code, stderr := ctlTTY(s, tty, []byte("hello"), append(args, "--out", dir+"/"+args[0])...); code != 0 {
			t.Errorf("keystorectl %s --out FILE with a terminal: exit %d, stderr %q", args, code, stderr)
		}
		if code, stderr := ctlTTY(s, tty, []byte("hello"), append([]string{"--json"}, args...)...); code != 0 {
			t.Errorf("keystorectl --json %s to a terminal: exit %d, stderr %q", args, code, stderr)
		}
	}
	if n := srv.Calls("/keystore.v1.Keys/Sign"); n != 2 {
		t.Errorf("the daemon saw %d signs, want 2 (a refused one never reaches it)", n)
	}
	text := ok(t, s, []byte("hello, world\n"), "seal", "p/box").stdout
	if code, stderr := ctlTTY(s, tty, text, "unseal", "p/box"); code != 0 {
		t.Errorf("unseal of text to a terminal: exit %d, stderr %q", code, stderr)
	}
	bin := ok(t, s, []byte{0, 1, 2, 0xff}, "seal", "p/box").stdout
	if code, stderr := ctlTTY(s, tty, bin, "unseal", "p/box"); code != exitUsage || !strings.Contains(stderr, "it is binary") {
		t.Errorf("unseal of binary to a terminal: exit %d, stderr %q", code, stderr)
	}
}

package main

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/sha256"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
)

// releaseSize is the size of the release.tar the documented example signs.
const releaseSize = 200 << 20

// docBlock returns the lines of the first ```sh block after the heading
// in docs/cli.md.
func docBlock(t *testing.T, heading string) []string {
	t.Helper()
	data, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, found := strings.Cut(string(data), "\n"+heading+"\n")
	if !found {
		t.Fatalf("docs/cli.md has no heading %q", heading)
	}
	_, block, found := strings.Cut(after, "```sh\n")
	if !found {
		t.Fatalf("docs/cli.md: no sh block after %q", heading)
	}
	block, _, _ = strings.Cut(block, "```")
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// writeRelease writes a deterministic, mostly sparse file of size bytes:
// a distinct 4 KiB block every MiB, holes in between.
func writeRelease(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for off := int64(0); off < size; off += 1 << 20 {
		for i := range block {
			block[i] = byte(off>>20) ^ byte(i*7)
		}
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDocReleaseExample runs the command lines of docs/cli.md's "sign,
// verify" example as written, in a directory holding a 200 MB
// release.tar, against a daemon: create, sign --digest, verify --digest,
// pubkey, and openssl's verify when openssl is installed. keystorectl
// streams the file: the bytes it allocates stay far below the file's
// size.
func TestDocReleaseExample(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "web"})
	lines := docBlock(t, "### sign, verify")
	t.Chdir(t.TempDir())
	writeRelease(t, "release.tar", releaseSize)

	ran := map[string]bool{}
	for _, line := range lines {
		name, args, _ := strings.Cut(line, " ")
		switch name {
		case "keystorectl":
			args, redirect, _ := strings.Cut(args, " > ")
			argv := strings.Fields(args)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			r := ctl(t, srv.Socket, nil, argv...)
			runtime.ReadMemStats(&after)
			if r.code != 0 {
				t.Fatalf("docs/cli.md: %s: exit %d\n%s", line, r.code, r.stderr)
			}
			// The whole process's allocations: the client, the in-process
			// daemon, gRPC. Reading the file would be 200 MB.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Errorf("docs/cli.md: %s: allocated %d bytes for a %d-byte file; want it streamed", line, alloc, releaseSize)
			}
			if redirect != "" {
				if err := os.WriteFile(strings.TrimSpace(redirect), r.stdout, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ran[argv[0]] = true
			if argv[0] == "sign" && !strings.Contains(line, "--digest") {
				t.Errorf("docs/cli.md: %s: the large-file example signs without --digest", line)
			}
		case "openssl":
			openssl, err := exec.LookPath("openssl")
			if err != nil {
				t.Logf("skipping %q: openssl is not installed (apt-get install openssl)", line)
				continue
			}
			out, err := exec.Command(openssl, strings.Fields(args)...).CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("Verified OK")) {
				t.Fatalf("docs/cli.md: %s: %v\n%s", line, err, out)
			}
			ran["openssl"] = true
		default:
			t.Fatalf("docs/cli.md: %s: the test runs keystorectl and openssl lines only", line)
		}
	}
	for _, cmd := range []string{"create", "sign", "verify", "pubkey"} {
		if !ran[cmd] {
			t.Errorf("docs/cli.md's sign, verify example has no %s line (ran %v)", cmd, ran)
		}
	}
	st, err := os.Stat("release.sig")
	if err != nil || st.Size() == 0 {
		t.Fatalf("the example wrote no release.sig: %v", err)
	}

	// Without --digest the file is refused after bound + 1 bytes, with
	// the hint to use --digest, and nothing reaches the daemon.
	calls := srv.Calls("/keystore.v1.Keys/Sign")
	r := fails(t, srv.Socket, nil, 90, "sign", "signing/release", "--in", "release.tar", "--out", "plain.sig")
	if !strings.Contains(r.stderr, "--digest sha256") || srv.Calls("/keystore.v1.Keys/Sign") != calls {
		t.Errorf("sign of release.tar without --digest: stderr %q, %d new calls", r.stderr, srv.Calls("/keystore.v1.Keys/Sign")-calls)
	}
	// A changed byte fails the documented verify.
	f, err := os.OpenFile("release.tar", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1}, releaseSize/2+12345); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fails(t, srv.Socket, nil, 74, "verify", "signing/release@1", "--digest", "sha256", "--sig", "release.sig", "--in", "release.tar")
}

// hashInput's digest of a file is its SHA-256, whatever its size relative
// to the read buffer.
func TestHashInputSizes(t *testing.T) {
	a := &app{stdin: bytes.NewReader(nil), stderr: &bytes.Buffer{}}
	for _, n := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 3<<20 + 17} {
		b := bytes.Repeat([]byte{0xa5, 0x00, 0x3c}, n/3+1)[:n]
		got, err := a.hashInput(writeTemp(t, b), crypto.SHA256, "message")
		want := sha256.Sum256(b)
		if err != nil || !bytes.Equal(got, want[:]) {
			t.Errorf("hashInput(%d bytes) = %x, %v; want %x", n, got, err, want)
		}
	}
}

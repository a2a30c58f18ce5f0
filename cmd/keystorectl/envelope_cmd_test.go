package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/client/clienttest"
)

// ctlReader runs keystorectl with stdin read from in.
func ctlReader(t *testing.T, sock string, in io.Reader, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runEnv(args, in, &out, &errOut, func(k string) string {
		if k == SocketEnv {
			return sock
		}
		return ""
	})
	return result{code: code, stdout: out.Bytes(), stderr: errOut.String()}
}

// pattern is a deterministic stream of n bytes (generated, never stored).
type pattern struct{ n, off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		x := uint64(p.off + int64(i))
		b[i] = byte(x ^ x>>8 ^ x>>16 ^ x>>24 ^ 0xa5)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// dirNames lists a directory's entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestDatakeyCommand(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "web"}).Socket
	ok(t, s, nil, "create", "db/files")
	r := ctl(t, s, nil, "datakey", "db/files", "--aad", "invoice-7")
	if r.code != 0 {
		t.Fatalf("datakey: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.stdout), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "key web/db/files@1" || !strings.HasPrefix(lines[1], "plaintext ") || !strings.HasPrefix(lines[2], "sealed ") {
		t.Fatalf("datakey output:\n%s", r.stdout)
	}
	plain, err1 := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[1], "plaintext "))
	sealed, err2 := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[2], "sealed "))
	if err1 != nil || err2 != nil || len(plain) != 32 {
		t.Fatalf("datakey output: %v %v, %d-byte key", err1, err2, len(plain))
	}
	// unseal with the same --aad gives the data key back.
	sealedFile := writeTemp(t, sealed)
	if got := ok(t, s, nil, "unseal", "db/files", "--aad", "invoice-7", "--in", sealedFile).stdout; !bytes.Equal(got, plain) {
		t.Error("unseal of the sealed data key is not the data key")
	}
	fails(t, s, nil, 74, "unseal", "db/files", "--aad", "other", "--in", sealedFile)

	m := decode(t, ok(t, s, nil, "--json", "datakey", "db/files", "--spec", "aes-128-gcm"))
	if p, _ := base64.StdEncoding.DecodeString(m["plaintext"].(string)); len(p) != 16 || m["key"] != "web/db/files" || m["version"] != 1.0 || m["sealed"] == "" {
		t.Errorf("datakey --json --spec aes-128-gcm = %v", m)
	}
	m = decode(t, ok(t, s, nil, "--json", "datakey", "db/files", "--bytes", "48"))
	if p, _ := base64.StdEncoding.DecodeString(m["plaintext"].(string)); len(p) != 48 {
		t.Errorf("datakey --bytes 48: %d bytes", len(p))
	}
	m = decode(t, ok(t, s, nil, "--json", "datakey", "db/files", "--no-plaintext"))
	if _, has := m["plaintext"]; has || m["sealed"] == "" {
		t.Errorf("datakey --no-plaintext --json = %v", m)
	}
	if out := string(ok(t, s, nil, "datakey", "db/files", "--no-plaintext").stdout); strings.Contains(out, "plaintext") {
		t.Errorf("datakey --no-plaintext prints %q", out)
	}
	fails(t, s, nil, exitUsage, "datakey", "db/files", "--spec", "aes-256-gcm", "--bytes", "32")
	fails(t, s, nil, 22, "datakey", "db/files", "--bytes", "8")
	fails(t, s, nil, 22, "datakey", "db/files", "--spec", "rot13")
	ok(t, s, nil, "create", "sig/k", "--alg", "ed25519")
	fails(t, s, nil, 1, "datakey", "sig/k")
}

// encrypt and decrypt round-trip files and pipes; what fails leaves no
// output file and no temporary file behind.
func TestEncryptDecryptCommands(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{App: "web"})
	s := srv.Socket
	ok(t, s, nil, "create", "backups/db")
	ok(t, s, nil, "create", "backups/other")
	dir := t.TempDir()
	in := filepath.Join(dir, "dump.sql")
	pt := bytes.Repeat([]byte("INSERT INTO t VALUES (1);\n"), 100000) // 2.6 MB: three segments
	if err := os.WriteFile(in, pt, 0o600); err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "dump.sql.ksenv")
	r := ctl(t, s, nil, "encrypt", "backups/db", "--in", in, "--out", enc, "--aad", "host-1")
	if r.code != 0 {
		t.Fatalf("encrypt: exit %d: %s", r.code, r.stderr)
	}
	if r.stderr != "keystorectl: encrypted with web/backups/db@1 (2.5 MiB of plaintext)\n" || len(r.stdout) != 0 {
		t.Errorf("encrypt: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if st, err := os.Stat(enc); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the envelope file: %v, %v", st, err)
	}
	file, err := os.ReadFile(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(file, []byte("KSENV\x01")) {
		t.Errorf("the envelope starts %q", file[:8])
	}
	out := filepath.Join(dir, "dump.out")
	r = ok(t, s, nil, "decrypt", "--in", enc, "--out", out, "--aad", "host-1", "--key", "backups/db")
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt: %v, %d bytes", err, len(got))
	}
	if r.stderr != "keystorectl: decrypted; encrypted with web/backups/db@1 (2.5 MiB of plaintext)\n" {
		t.Errorf("decrypt stderr %q", r.stderr)
	}
	// Pipes: stdin to stdout both ways.
	piped := ok(t, s, pt, "encrypt", "backups/db").stdout
	if got := ok(t, s, piped, "decrypt").stdout; !bytes.Equal(got, pt) {
		t.Error("encrypt | decrypt through pipes does not round-trip")
	}
	// --json needs --out.
	m := decode(t, ok(t, s, nil, "--json", "encrypt", "backups/db", "--in", in, "--out", enc))
	if m["key"] != "web/backups/db" || m["version"] != 1.0 || m["bytes"] != float64(len(pt)) || m["out"] != enc {
		t.Errorf("encrypt --json = %v", m)
	}
	m = decode(t, ok(t, s, nil, "--json", "decrypt", "--in", enc, "--out", out))
	if m["key"] != "web/backups/db" || m["bytes"] != float64(len(pt)) {
		t.Errorf("decrypt --json = %v", m)
	}
	fails(t, s, nil, exitUsage, "--json", "encrypt", "backups/db", "--in", in)
	fails(t, s, nil, exitUsage, "--json", "decrypt", "--in", enc)
	fails(t, s, nil, exitUsage, "decrypt", "extra")

	// Every failure: exit 74, no output file, nothing left in the directory.
	file, err = os.ReadFile(enc) // the --json run rewrote it
	if err != nil {
		t.Fatal(err)
	}
	bad := func(name string, data []byte, args ...string) {
		t.Helper()
		badIn := filepath.Join(dir, "bad.ksenv")
		if err := os.WriteFile(badIn, data, 0o600); err != nil {
			t.Fatal(err)
		}
		before := dirNames(t, dir)
		target := filepath.Join(dir, "never.out")
		r := fails(t, s, nil, 74, append([]string{"decrypt", "--in", badIn, "--out", target}, args...)...)
		if !strings.Contains(r.stderr, "hint: ") {
			t.Errorf("%s: no hint: %q", name, r.stderr)
		}
		if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the output file exists after a failed decrypt (%v)", name, err)
		}
		if after := dirNames(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("%s: the directory changed from %v to %v (a temporary file left?)", name, before, after)
		}
	}
	flipped := bytes.Clone(file)
	flipped[len(flipped)/2] ^= 1
	bad("a flipped bit", flipped, "--aad", "host-1")
	bad("a truncated file", file[:len(file)-1], "--aad", "host-1")
	bad("a file cut at a segment end", file[:len(file)-(len(file)%(1<<20))], "--aad", "host-1")
	bad("another aad", file, "--aad", "host-2")
	bad("another --key", file, "--aad", "host-1", "--key", "backups/other")
	bad("not an envelope", pt[:1000])
	// An existing output file is left as it was by a failed decrypt.
	if err := os.WriteFile(out, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, s, nil, 74, "decrypt", "--in", enc, "--out", out, "--aad", "wrong")
	if got, _ := os.ReadFile(out); string(got) != "keep me" {
		t.Errorf("a failed decrypt changed the existing output file to %q", got)
	}
	ok(t, s, nil, "create", "sig/k", "--alg", "ed25519")
	r = fails(t, s, pt, 1, "encrypt", "sig/k")
	if !strings.Contains(r.stderr, "hint: encrypt needs a decrypt key") {
		t.Errorf("encrypt with a signing key: %q", r.stderr)
	}
	fails(t, s, pt, 90, "encrypt", "backups/db", "--aad", strings.Repeat("a", 60<<10+1))
}

// decrypt and encrypt refuse to write to a terminal; on a terminal stderr
// they show progress, which a pipe never gets.
func TestStreamTerminal(t *testing.T) {
	s := startDaemon(t, clienttest.Options{App: "web"}).Socket
	ok(t, s, nil, "create", "backups/db")
	tty := openPTY(t)
	if code, stderr := ctlTTY(s, tty, []byte("x"), "decrypt"); code != exitUsage || !strings.Contains(stderr, "refusing to write the plaintext to the terminal") {
		t.Errorf("decrypt to a terminal: exit %d, %q", code, stderr)
	}
	if code, stderr := ctlTTY(s, tty, []byte("x"), "encrypt", "backups/db"); code != exitUsage || !strings.Contains(stderr, "refusing to write") {
		t.Errorf("encrypt to a terminal: exit %d, %q", code, stderr)
	}

	dir := t.TempDir()
	in, enc, out := filepath.Join(dir, "in"), filepath.Join(dir, "in.ksenv"), filepath.Join(dir, "out")
	if err := os.WriteFile(in, bytes.Repeat([]byte{7}, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r := ctl(t, s, nil, "encrypt", "backups/db", "--in", in, "--out", enc)
	if r.code != 0 || strings.Contains(r.stderr, "\r") || strings.Contains(r.stderr, "encrypting") {
		t.Fatalf("encrypt with stderr on a pipe: exit %d, stderr %q: want no progress", r.code, r.stderr)
	}
	progressOf := func(args ...string) string {
		t.Helper()
		ctlr, term := openPTYPair(t)
		got := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(ctlr) // ends with EIO once the terminal closes: not an error here
			got <- string(b)
		}()
		var stdout bytes.Buffer
		code := runEnv(args, bytes.NewReader(nil), &stdout, term, func(k string) string {
			if k == SocketEnv {
				return s
			}
			return ""
		})
		if err := term.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case text := <-got:
			if code != 0 {
				t.Fatalf("keystorectl %v: exit %d: %s", args, code, text)
			}
			return text
		case <-time.After(30 * time.Second): // a bound on a hang, not a timing assertion
			t.Fatal("the terminal's output never ended")
		}
		return ""
	}
	text := progressOf("encrypt", "backups/db", "--in", in, "--out", enc)
	for _, want := range []string{"\rkeystorectl: encrypting 1.0 MiB of 3.0 MiB (33%)", "\rkeystorectl: encrypting 3.0 MiB of 3.0 MiB (100%)", "keystorectl: encrypted with web/backups/db@1"} {
		if !strings.Contains(text, want) {
			t.Errorf("encrypt's terminal output %q lacks %q", text, want)
		}
	}
	text = progressOf("decrypt", "--in", enc, "--out", out)
	if !strings.Contains(text, "\rkeystorectl: decrypting 1.0 MiB of 3.0 MiB (33%)") || !strings.Contains(text, "(100%)") {
		t.Errorf("decrypt's terminal output %q lacks its progress", text)
	}
}

// openPTYPair returns both sides of a new pseudo-terminal: the
// controller (to read what is written to the terminal) and the terminal.
func openPTYPair(t *testing.T) (ctlr, term *os.File) {
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
	return ptmx, tty
}

// The documented bounded-memory claim: encrypt and decrypt of a 64 MiB
// stream (generated on the fly, never stored as plaintext) allocate a
// small fraction of it, in the whole process (client, in-process daemon,
// gRPC); the output matches; a tampered or truncated envelope of it
// fails with no output file.
func TestEncryptLargeFileBoundedMemory(t *testing.T) {
	const size = 64 << 20
	srv := startDaemon(t, clienttest.Options{App: "web"})
	s := srv.Socket
	ok(t, s, nil, "create", "backups/big")
	dir := t.TempDir()
	enc, out := filepath.Join(dir, "big.ksenv"), filepath.Join(dir, "big.out")
	want := sha256.New()
	if _, err := io.Copy(want, &pattern{n: size}); err != nil {
		t.Fatal(err)
	}
	measure := func(name string, run func() result) result {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		r := run()
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", name, r.code, r.stderr)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		// Informational (the machine is shared): not asserted.
		t.Logf("%s of %d MiB: %.1f MiB allocated, heap in use %.1f MiB after, %.0f MiB/s", name, size>>20,
			float64(alloc)/(1<<20), float64(after.HeapInuse)/(1<<20), float64(size)/(1<<20)/elapsed.Seconds())
		if alloc > 16<<20 {
			t.Errorf("%s: allocated %d bytes for a %d-byte stream; want it streamed in bounded memory", name, alloc, size)
		}
		if after.HeapInuse > before.HeapInuse+32<<20 {
			t.Errorf("%s: heap in use grew from %d to %d bytes", name, before.HeapInuse, after.HeapInuse)
		}
		return r
	}
	measure("encrypt", func() result { return ctlReader(t, s, &pattern{n: size}, "encrypt", "backups/big", "--out", enc) })
	measure("decrypt", func() result { return ok(t, s, nil, "decrypt", "--in", enc, "--out", out) })
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, f)
	f.Close()
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("decrypted %d bytes, %v; want the %d generated bytes", n, err, size)
	}
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	// A flipped byte deep in the file, then a cut: exit 74, no output file.
	st, err := os.Stat(enc)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(enc, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	if _, err := fh.ReadAt(b, st.Size()/2+12345); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x80
	if _, err := fh.WriteAt(b, st.Size()/2+12345); err != nil {
		t.Fatal(err)
	}
	fails(t, s, nil, 74, "decrypt", "--in", enc, "--out", out)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a tampered 64 MiB envelope left an output file (%v)", err)
	}
	b[0] ^= 0x80
	if _, err := fh.WriteAt(b, st.Size()/2+12345); err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(st.Size() - 100); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	fails(t, s, nil, 74, "decrypt", "--in", enc, "--out", out)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a truncated 64 MiB envelope left an output file (%v)", err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("the directory holds %v, want the envelope only", names)
	}
}

package main

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strconv"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// readInput reads the input named by path ("" or "-" is stdin), at most
// bound bytes: it reads bound+1 and fails with EMSGSIZE if it got them.
// what names the input in messages ("message", "plaintext", ...).
func (a *app) readInput(path string, bound int, what string) ([]byte, error) {
	var r io.Reader = a.stdin
	name := "stdin"
	if path != "" && path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fileError("open", path, err)
		}
		defer f.Close()
		r, name = f, path
	} else if isTerminal(a.stdin) {
		fmt.Fprintf(a.stderr, "keystorectl: reading the %s from the terminal; end it with Ctrl-D\n", what)
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(bound)+1))
	if err != nil {
		return nil, fileError("read", name, err)
	}
	if len(data) > bound {
		return nil, withHint(
			provider.Errorf(provider.EMSGSIZE, "%s from %s is larger than %d bytes", what, name, bound),
			"a "+what+" may be at most "+sizeString(bound)+"; split the data or seal a key to it instead")
	}
	return data, nil
}

// hashInput hashes the input named by path ("" or "-" is stdin) with
// hashFn, streaming it: any size, in constant memory. what names the input
// in messages.
func (a *app) hashInput(path string, hashFn crypto.Hash, what string) ([]byte, error) {
	var r io.Reader = a.stdin
	name := "stdin"
	if path != "" && path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fileError("open", path, err)
		}
		defer f.Close()
		r, name = f, path
	} else if isTerminal(a.stdin) {
		fmt.Fprintf(a.stderr, "keystorectl: reading the %s from the terminal; end it with Ctrl-D\n", what)
	}
	var h hash.Hash
	switch hashFn {
	case crypto.SHA256:
		h = sha256.New()
	case crypto.SHA384:
		h = sha512.New384()
	case crypto.SHA512:
		h = sha512.New()
	default:
		return nil, provider.Errorf(provider.EINVAL, "digest hash %v is not sha256, sha384 or sha512", hashFn)
	}
	buf := make([]byte, 64<<10)
	if _, err := io.CopyBuffer(h, onlyReader{r}, buf); err != nil {
		return nil, fileError("read", name, err)
	}
	return h.Sum(nil), nil
}

// onlyReader hides a reader's WriterTo (an *os.File's would copy through
// its own path), so that CopyBuffer uses the given buffer.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// writeOutput writes data to path ("" or "-" is stdout), byte for byte. A
// file is created 0600 (it may hold plaintext) or truncated.
func (a *app) writeOutput(path string, data []byte) error {
	if path == "" || path == "-" {
		if _, err := a.stdout.Write(data); err != nil {
			return fileError("write", "stdout", err)
		}
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fileError("create", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close() // the write error is the one to report
		return fileError("write", path, err)
	}
	if err := f.Close(); err != nil {
		return fileError("close", path, err)
	}
	return nil
}

// refuseBinaryToTerminal refuses, before any work, to write binary
// output (a signature, sealed data) to a terminal, as age does: it would
// garble the terminal and is never what the user wanted. --out, a pipe or
// --json (base64 in the object) are the ways out.
func (a *app) refuseBinaryToTerminal(out, what, cmd string) error {
	if a.json || out != "" && out != "-" || !isTerminal(a.stdout) {
		return nil
	}
	return withHint(usageError{fmt.Errorf("refusing to write the %s (binary) to the terminal", what), cmd},
		"write it to a file with --out FILE, pipe it (e.g. | base64), or use --json")
}

// refuseBinaryText refuses to print data (a plaintext, a stored value)
// that is not text (valid UTF-8 without control characters besides tab,
// newline and carriage return) to a terminal.
func (a *app) refuseBinaryText(out string, data []byte, what, cmd string) error {
	if a.json || out != "" && out != "-" || !isTerminal(a.stdout) || isText(data) {
		return nil
	}
	return withHint(usageError{fmt.Errorf("refusing to write the %s to the terminal: it is binary", what), cmd},
		"write it to a file with --out FILE, pipe it, or use --json")
}

// isText reports whether b is valid UTF-8 with no control characters
// other than tab, newline and carriage return.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

// fileError gives a local file error a code: ENOENT, EPERM or EIO.
func fileError(op, path string, err error) error {
	code := provider.EIO
	switch {
	case errors.Is(err, fs.ErrNotExist):
		code = provider.ENOENT
	case errors.Is(err, fs.ErrPermission):
		code = provider.EPERM
	}
	wrapped := provider.Errorf(code, "%s %s: %w", op, path, err)
	if path == "stdin" || path == "stdout" {
		return wrapped
	}
	return withHint(wrapped, "check the file "+path+" (it must exist for --in and --sig; --out creates it)")
}

// isTerminal reports whether s (stdin or stdout) is a terminal (not
// merely a character device such as /dev/null).
func isTerminal(s any) bool {
	f, ok := s.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// sizeString prints a bound: "65536 bytes (64 KiB)".
func sizeString(n int) string {
	s := strconv.Itoa(n) + " bytes"
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		s += " (" + strconv.Itoa(n>>20) + " MiB)"
	case n >= 1<<10 && n%(1<<10) == 0:
		s += " (" + strconv.Itoa(n>>10) + " KiB)"
	}
	return s
}

package tpmcounter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

func TestOptionsBounds(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want error
	}{
		{"no path", Options{}, provider.ErrInvalid},
		{"path too long", Options{Path: "/" + strings.Repeat("a", maxPath)}, provider.ErrInvalid},
		{"index below the NV range", Options{Path: regular, Index: minIndex - 1}, provider.ErrInvalid},
		{"index above the NV range", Options{Path: regular, Index: maxIndex + 1}, provider.ErrInvalid},
		{"a persistent handle", Options{Path: regular, Index: 0x81000001}, provider.ErrInvalid},
		{"owner auth too long", Options{Path: regular, OwnerAuth: secret.New(make([]byte, MaxOwnerAuth+1))}, provider.ErrInvalid},
		{"negative timeout", Options{Path: regular, Timeout: -time.Second}, provider.ErrInvalid},
		{"a regular file", Options{Path: regular}, provider.ErrInvalid},
		{"a directory", Options{Path: dir}, provider.ErrInvalid},
		{"missing", Options{Path: filepath.Join(dir, "none")}, provider.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(context.Background(), tc.o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want %v", c, err, tc.want)
			}
		})
	}
}

// fakeTPM listens on a Unix socket and answers each connection with
// answer (nil: read the command and never answer).
func fakeTPM(t *testing.T, answer []byte) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tpmf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	path := filepath.Join(dir, "tpm.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		if err := ln.Close(); err != nil {
			t.Error(err)
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at the test's end
			}
			go func() {
				defer c.Close()
				buf := make([]byte, maxCommand)
				if _, err := c.Read(buf); err != nil {
					return
				}
				if answer == nil {
					<-done
					return
				}
				// The client may have gone: nothing to do about it.
				_, _ = c.Write(answer)
			}()
		}
	}()
	return path
}

func header(size uint32) []byte {
	h := make([]byte, headerSize)
	binary.BigEndian.PutUint16(h, 0x8001)
	binary.BigEndian.PutUint32(h[2:], size)
	return h
}

func TestTimeout(t *testing.T) {
	path := fakeTPM(t, nil)
	_, err := Open(context.Background(), Options{Path: path, Timeout: 50 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Open on a TPM that never answers = %v, want EUNAVAILABLE wrapping DeadlineExceeded", err)
	}
}

func TestCancel(t *testing.T) {
	path := fakeTPM(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(testContext(t), cancel) // never outlives the test
	defer stop()
	errc := make(chan error, 1)
	go func() {
		_, err := Open(ctx, Options{Path: path, Timeout: time.Hour})
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Open cancelled = %v, want EUNAVAILABLE wrapping Canceled", err)
	}
}

func TestBadResponses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer []byte
		msg    string
	}{
		{"too large", header(maxResponse + 1), "announces"},
		{"smaller than a header", header(headerSize - 1), "announces"},
		{"cut short", header(64)[:headerSize], "unexpected EOF"},
		{"half a header", header(headerSize)[:4], "unexpected EOF"},
		{"empty", []byte{}, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := fakeTPM(t, tc.answer)
			_, err := Open(testContext(t), Options{Path: path})
			if !errors.Is(err, provider.ErrIO) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Open = %v, want EIO saying %q", err, tc.msg)
			}
		})
	}
}

// chunked is a link's far end: it takes a command and returns rsp in
// pieces of at most n bytes, then io.EOF.
type chunked struct {
	rsp []byte
	n   int
}

func (c *chunked) Write(p []byte) (int, error) { return len(p), nil }
func (c *chunked) Close() error                { return nil }
func (c *chunked) Read(p []byte) (int, error) {
	if len(c.rsp) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.rsp)
	c.rsp = c.rsp[n:]
	return n, nil
}

// FuzzRoundTrip: whatever a TPM answers, in whatever pieces, roundTrip
// returns exactly the response its header announces, or an error.
func FuzzRoundTrip(f *testing.F) {
	f.Add(append(header(12), 0, 0), uint16(1))
	f.Add(append(header(12), 0, 0, 0), uint16(100))
	f.Add(header(headerSize), uint16(3))
	f.Add(header(maxResponse+1), uint16(4096))
	f.Add([]byte{0x80}, uint16(1))
	f.Fuzz(func(t *testing.T, rsp []byte, n uint16) {
		if n == 0 {
			n = 1
		}
		l := &link{rw: &chunked{rsp: bytes.Clone(rsp), n: int(n)}}
		got, err := l.roundTrip(context.Background(), header(headerSize))
		if err != nil {
			return
		}
		if len(rsp) < headerSize {
			t.Fatalf("accepted %d bytes, shorter than a header", len(rsp))
		}
		size := int(binary.BigEndian.Uint32(rsp[2:6]))
		if !bytes.Equal(got, rsp[:size]) {
			t.Fatalf("returned %d bytes, want the %d announced", len(got), size)
		}
	})
}

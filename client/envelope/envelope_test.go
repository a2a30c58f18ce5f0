package envelope_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/envelope"
)

// Plaintext segment sizes of the format: the first segment is shorter by
// Tink's 40-byte header; each segment carries a 16-byte tag.
const (
	tinkHeader = 40
	tag        = 16
	firstPT    = envelope.SegmentSize - tinkHeader - tag
	segmentPT  = envelope.SegmentSize - tag
)

func encrypt(t testing.TB, f *fakeKeys, pt []byte, opts envelope.EncryptOptions) []byte {
	t.Helper()
	var out bytes.Buffer
	res, err := envelope.Encrypt(context.Background(), f, "box/k", &out, bytes.NewReader(pt), opts)
	if err != nil {
		t.Fatalf("Encrypt(%d bytes): %v", len(pt), err)
	}
	if res.Key != "app/box/k" || res.Version != 1 || res.Plaintext != int64(len(pt)) {
		t.Errorf("Encrypt result %+v", res)
	}
	return out.Bytes()
}

func decrypt(f *fakeKeys, file []byte, opts envelope.DecryptOptions) ([]byte, envelope.Result, error) {
	var out bytes.Buffer
	res, err := envelope.Decrypt(context.Background(), f, &out, bytes.NewReader(file), opts)
	return out.Bytes(), res, err
}

// segments is how many segments a plaintext of n bytes makes.
func segments(n int) int {
	if n <= firstPT {
		return 1
	}
	return 1 + (n-firstPT+segmentPT-1)/segmentPT
}

// Every size round-trips, across the segment boundaries; the file is the
// documented header, Tink's header and the segments with their tags; the
// data keys are wiped.
func TestRoundTripSizes(t *testing.T) {
	f := newFake()
	for _, n := range []int{0, 1, 100, firstPT - 1, firstPT, firstPT + 1, firstPT + segmentPT, firstPT + segmentPT + 1, 3*segmentPT + 12345} {
		pt := patternBytes(n)
		file := encrypt(t, f, pt, envelope.EncryptOptions{AAD: []byte("aad")})
		h, err := envelope.ReadHeader(bytes.NewReader(file))
		if err != nil {
			t.Fatalf("%d bytes: ReadHeader: %v", n, err)
		}
		hb, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if want := len(hb) + tinkHeader + n + tag*segments(n); len(file) != want {
			t.Errorf("%d bytes: file of %d bytes, want %d", n, len(file), want)
		}
		if file[len(hb)] != tinkHeader {
			t.Errorf("%d bytes: Tink's header length byte is %d", n, file[len(hb)])
		}
		got, res, err := decrypt(f, file, envelope.DecryptOptions{AAD: []byte("aad"), ExpectKey: "box/k"})
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%d bytes: Decrypt: %d bytes, %v", n, len(got), err)
		}
		if res.Key != "app/box/k" || res.Version != 1 || res.Plaintext != int64(n) {
			t.Errorf("%d bytes: Decrypt result %+v", n, res)
		}
	}
	if !f.allWiped() {
		t.Error("a data key (generated or unsealed) was not wiped")
	}
}

// The header is laid out as docs/envelope.md says, and the stream is
// Tink's AES-GCM-HKDF (HKDF-SHA256, 32-byte keys, 1 MiB segments) under
// the data key with the header and the caller's AAD as its AAD: Tink's
// own reader, given the data key, decrypts it, with this test's own
// reading of the header.
func TestFormatIsTinkUnderTheHeader(t *testing.T) {
	f := newFake()
	pt := patternBytes(firstPT + 10)
	aad := []byte("customer 42")
	file := encrypt(t, f, pt, envelope.EncryptOptions{AAD: aad})

	if string(file[:5]) != "KSENV" || file[5] != 1 {
		t.Fatalf("file starts %q", file[:6])
	}
	n := int(file[6])
	key := string(file[7 : 7+n])
	version := binary.BigEndian.Uint32(file[7+n:])
	m := int(binary.BigEndian.Uint16(file[11+n:]))
	sealed := file[13+n : 13+n+m]
	header := file[:13+n+m]
	if key != "app/box/k" || version != 1 {
		t.Fatalf("header key %q version %d", key, version)
	}
	// The data key is sealed with the format's label, the key ID and the
	// caller's AAD.
	dataKeyAAD := append(append([]byte("keystored envelope v1\x00"), key+"\x00"...), aad...)
	u, err := f.Unseal(context.Background(), key, sealed, dataKeyAAD)
	if err != nil {
		t.Fatalf("the data key does not unseal with the documented AAD: %v", err)
	}
	c, err := subtle.NewAESGCMHKDF(u.Plaintext, "SHA256", 32, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.NewDecryptingReader(bytes.NewReader(file[len(header):]), append(bytes.Clone(header), aad...))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Tink's reader: %d bytes, %v", len(got), err)
	}
	// And Tink's writer makes files Decrypt reads.
	var tinkFile bytes.Buffer
	tinkFile.Write(header)
	w, err := c.NewEncryptingWriter(&tinkFile, append(bytes.Clone(header), aad...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("written by tink")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _, err := decrypt(f, tinkFile.Bytes(), envelope.DecryptOptions{AAD: aad}); err != nil || string(got) != "written by tink" {
		t.Errorf("Decrypt of Tink's own file: %q, %v", got, err)
	}
}

// A file changed anywhere, cut anywhere, extended, with its segments
// swapped, or read with another AAD fails with ErrBadMessage (a header of
// another format version with ErrNotSupported).
func TestTamperedAndTruncatedFail(t *testing.T) {
	f := newFake()
	pt := patternBytes(firstPT + segmentPT + 5000) // three segments
	file := encrypt(t, f, pt, envelope.EncryptOptions{})
	h, err := envelope.ReadHeader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := h.MarshalBinary() // it was just read
	hl := len(hb)
	n := 7 + len(h.Key)
	check := func(name string, bad []byte, opts envelope.DecryptOptions, want error) {
		t.Helper()
		if _, _, err := decrypt(f, bad, opts); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	flip := func(i int) []byte { b := bytes.Clone(file); b[i] ^= 0x01; return b }
	for name, i := range map[string]int{
		"magic": 0, "key ID length": 6, "key ID": 8, "key version": n + 3, "sealed key length": n + 5, "sealed key": n + 10,
		"Tink header length": hl, "Tink salt": hl + 5, "Tink nonce prefix": hl + 36, "first segment": hl + 100,
		"first tag": hl + envelope.SegmentSize - 1, "second segment": hl + envelope.SegmentSize + 7, "last byte": len(file) - 1,
	} {
		check("a flipped bit in the "+name, flip(i), envelope.DecryptOptions{}, client.ErrBadMessage)
	}
	check("format version 0", flip(5), envelope.DecryptOptions{}, client.ErrNotSupported)
	for name, cut := range map[string]int{
		"empty": 0, "in the magic": 3, "in the header": hl - 1, "after the header": hl, "in Tink's header": hl + 20,
		"after Tink's header": hl + tinkHeader, "in the first segment": hl + 1000,
		"at the first segment's end": hl + envelope.SegmentSize, "one byte into the second": hl + envelope.SegmentSize + 1,
		"at the second segment's end": hl + 2*envelope.SegmentSize, "one byte short": len(file) - 1,
	} {
		check("cut "+name, file[:cut], envelope.DecryptOptions{}, client.ErrBadMessage)
	}
	check("one byte appended", append(bytes.Clone(file), 0), envelope.DecryptOptions{}, client.ErrBadMessage)
	check("a whole segment appended", append(bytes.Clone(file), file[hl+envelope.SegmentSize:hl+2*envelope.SegmentSize]...), envelope.DecryptOptions{}, client.ErrBadMessage)
	swapped := bytes.Clone(file)
	s2, s3 := hl+envelope.SegmentSize, hl+2*envelope.SegmentSize
	copy(swapped[s2:], file[s3:])
	copy(swapped[s2+len(file)-s3:], file[s2:s3])
	check("the last two segments swapped", swapped, envelope.DecryptOptions{}, client.ErrBadMessage)
	check("another AAD", file, envelope.DecryptOptions{AAD: []byte("x")}, client.ErrBadMessage)

	// A header naming another key (which the caller also holds) fails:
	// the data key's AAD binds the key ID.
	other := append([]byte(nil), file[:7]...)
	other[6] = byte(len("app/box/other"))
	other = append(append(other, "app/box/other"...), file[n:]...)
	check("the header naming another key", other, envelope.DecryptOptions{}, client.ErrBadMessage)

	// ExpectKey refuses a file of another key before anything is unsealed.
	unseals := f.unseals
	check("ExpectKey of another key", file, envelope.DecryptOptions{ExpectKey: "box/other"}, client.ErrBadMessage)
	if f.unseals != unseals {
		t.Error("a file of another key than ExpectKey was unsealed")
	}
	check("ExpectKey of a missing key", file, envelope.DecryptOptions{ExpectKey: "box/missing"}, client.ErrNotFound)
}

// What Decrypt writes before it fails is authenticated segments only:
// never a byte of a segment that does not authenticate.
func TestPartialOutputIsWholeSegments(t *testing.T) {
	f := newFake()
	pt := patternBytes(firstPT + segmentPT + 5000)
	file := encrypt(t, f, pt, envelope.EncryptOptions{})
	hl := len(file) - (tinkHeader + len(pt) + 3*tag)
	bad := bytes.Clone(file)
	bad[hl+envelope.SegmentSize+10] ^= 1 // in the second segment
	got, res, err := decrypt(f, bad, envelope.DecryptOptions{})
	if !errors.Is(err, client.ErrBadMessage) {
		t.Fatalf("Decrypt: %v", err)
	}
	if len(got) != firstPT || !bytes.Equal(got, pt[:firstPT]) || res.Plaintext != int64(firstPT) {
		t.Errorf("wrote %d bytes before failing, want exactly the first segment's %d", len(got), firstPT)
	}
}

type failingReader struct{ after int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), r.after)
	clear(p[:n])
	r.after -= n
	return n, nil
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		return 0, errors.New("disk full")
	}
	w.after -= len(p)
	return len(p), nil
}

// Failures of the source, the destination or the context keep their own
// codes, not the stream's.
func TestIOErrorsAndCancel(t *testing.T) {
	f := newFake()
	ctx := context.Background()
	if _, err := envelope.Encrypt(ctx, f, "box/k", io.Discard, &failingReader{after: 3 << 20}, envelope.EncryptOptions{}); !errors.Is(err, client.ErrIO) || !bytes.Contains([]byte(err.Error()), []byte("disk on fire")) {
		t.Errorf("Encrypt from a failing source: %v, want ErrIO with its message", err)
	}
	if _, err := envelope.Encrypt(ctx, f, "box/k", &failingWriter{after: 2 << 20}, &pattern{n: 5 << 20}, envelope.EncryptOptions{}); !errors.Is(err, client.ErrIO) || !bytes.Contains([]byte(err.Error()), []byte("disk full")) {
		t.Errorf("Encrypt to a failing destination: %v, want ErrIO", err)
	}
	file := encrypt(t, f, patternBytes(3<<20), envelope.EncryptOptions{})
	src := io.MultiReader(bytes.NewReader(file[:2<<20]), &failingReader{})
	if _, err := envelope.Decrypt(ctx, f, io.Discard, src, envelope.DecryptOptions{}); !errors.Is(err, client.ErrIO) {
		t.Errorf("Decrypt from a failing source: %v, want ErrIO", err)
	}
	if _, err := envelope.Decrypt(ctx, f, &failingWriter{after: 1 << 20}, bytes.NewReader(file), envelope.DecryptOptions{}); !errors.Is(err, client.ErrIO) {
		t.Errorf("Decrypt to a failing destination: %v, want ErrIO", err)
	}
	// The fake answers whatever the context: the stream's own checks of
	// the context are what is tested.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := envelope.Encrypt(cancelled, f, "box/k", io.Discard, &pattern{n: 1 << 20}, envelope.EncryptOptions{}); !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Encrypt with a cancelled context: %v, want ErrUnavailable and context.Canceled", err)
	}
	if _, err := envelope.Decrypt(cancelled, f, io.Discard, bytes.NewReader(file), envelope.DecryptOptions{}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Decrypt with a cancelled context: %v, want ErrUnavailable", err)
	}
}

func TestRefusals(t *testing.T) {
	f := newFake()
	ctx := context.Background()
	if _, err := envelope.Encrypt(ctx, f, "sig/k", io.Discard, bytes.NewReader(nil), envelope.EncryptOptions{}); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Encrypt with a signing key: %v, want ErrPermission", err)
	}
	big := make([]byte, envelope.MaxAAD+1)
	if _, err := envelope.Encrypt(ctx, f, "box/k", io.Discard, bytes.NewReader(nil), envelope.EncryptOptions{AAD: big}); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("Encrypt with an AAD over the bound: %v, want ErrTooLarge", err)
	}
	if _, _, err := decrypt(f, []byte("KSENV"), envelope.DecryptOptions{AAD: big}); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("Decrypt with an AAD over the bound: %v, want ErrTooLarge", err)
	}
	file := encrypt(t, f, []byte("x"), envelope.EncryptOptions{AAD: big[:envelope.MaxAAD]})
	if got, _, err := decrypt(f, file, envelope.DecryptOptions{AAD: big[:envelope.MaxAAD]}); err != nil || string(got) != "x" {
		t.Errorf("an AAD at the bound: %q, %v", got, err)
	}
	for _, h := range []envelope.Header{
		{Key: "box/k", Version: 1, SealedKey: []byte{1}},
		{Key: "app/box/k", Version: 0, SealedKey: []byte{1}},
		{Key: "app/box/k", Version: 1},
		{Key: "app/box/k", Version: 1, SealedKey: make([]byte, envelope.MaxSealedKey+1)},
	} {
		if _, err := h.MarshalBinary(); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("MarshalBinary(%+v): %v, want ErrInvalid", h, err)
		}
	}
}

// Encrypting and decrypting 64 MiB, streamed through a pipe from a
// generator to a hash, allocates a small fraction of the stream: memory
// is bounded by a few segments, not by the size.
func TestBoundedMemory(t *testing.T) {
	const size = 64 << 20
	f := newFake()
	ctx := context.Background()
	want := sha256.New()
	if _, err := io.Copy(want, &pattern{n: size}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := envelope.Encrypt(ctx, f, "box/k", pw, &pattern{n: size}, envelope.EncryptOptions{})
		pw.CloseWithError(err) // a nil err closes with io.EOF
		done <- err
	}()
	got := sha256.New()
	res, err := envelope.Decrypt(ctx, f, got, pr, envelope.DecryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if res.Plaintext != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("round trip of %d bytes: %d bytes back, digest differs", size, res.Plaintext)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("encrypt+decrypt of %d MiB: %.1f MiB allocated", size>>20, float64(alloc)/(1<<20))
	if alloc > 12<<20 {
		t.Errorf("allocated %d bytes for a %d-byte stream; want it bounded by a few segments", alloc, size)
	}
}

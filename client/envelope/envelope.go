// Package envelope encrypts streams of any size locally with a data key
// from keystored (envelope encryption): the daemon makes a fresh 32-byte
// data key and seals it under a decrypt key (Client.GenerateDataKey); the
// stream is encrypted here with Tink's streaming AEAD AES-GCM-HKDF under
// that data key, and the sealed data key goes into the file's header. To
// decrypt, the daemon unseals the data key (Client.Unseal) and the stream
// is decrypted here. Only 32 bytes and a sealed envelope cross the
// socket, whatever the stream's size, and memory stays bounded (a few
// 1 MiB segments). keystorectl encrypt and decrypt use it; docs/envelope.md
// has the file format byte by byte.
//
// Why Tink's streaming AEAD: it is a published, analysed construction
// (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption
// and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015: the STREAM
// construction) with interoperable implementations in Tink for Go, Java,
// C++ and Python, so a file can be decrypted without this package given
// the data key. Each 1 MiB segment is authenticated on its own, with its
// index and a last-segment flag in its nonce, so a reordered, truncated or
// extended file fails; a per-file key derived by HKDF-SHA256 from the data
// key and a random salt keeps the nonces apart.
//
// # What a failed decryption leaves
//
// Decrypt writes a segment's plaintext to dst only once the segment has
// authenticated, but a file that is cut short or tampered with after its
// first segments fails only when the reader reaches the bad segment or the
// end: dst has then received the authentic segments before it. Treat
// everything written to dst as unusable unless Decrypt returns nil: write
// to a temporary file and rename it on success (keystorectl decrypt does),
// or discard the output otherwise.
//
// # Data key hygiene
//
// The data key is wiped from this package's buffers as soon as the cipher
// is built. Tink keeps its own copy (and the derived per-file key) inside
// the cipher, which is unreachable after the call returns but is only
// overwritten when the garbage collector reuses the memory: Go gives no
// stronger guarantee.
package envelope

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"

	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// The format's constants (docs/envelope.md).
const (
	// Magic opens every envelope file.
	Magic = "KSENV"
	// FormatVersion is the format this package writes and reads: Tink's
	// AES-GCM-HKDF streaming AEAD with HKDF-SHA256, 32-byte derived keys
	// and 1 MiB ciphertext segments, under a 32-byte data key.
	FormatVersion = 1
	// SegmentSize is the size of a ciphertext segment (the last one may be
	// shorter; the first one is shorter by Tink's 40-byte header).
	SegmentSize = 1 << 20
	// MaxAAD is the largest caller AAD: with the format's label and the
	// key ID it must fit the daemon's 64 KiB AAD bound.
	MaxAAD = 60 << 10
	// MaxSealedKey bounds the sealed data key in a header.
	MaxSealedKey = 1024
	// MaxHeaderSize bounds a whole header.
	MaxHeaderSize = len(Magic) + 1 + 1 + provider.MaxKeyIDLen + 4 + 2 + MaxSealedKey
)

// Format parameters of version 1.
const (
	dataKeySpec    = "aes-256-gcm" // a 32-byte data key
	dataKeySize    = 32
	hkdfHash       = "SHA256"
	derivedKeySize = 32
	// dataKeyLabel starts the AAD the data key is sealed with.
	dataKeyLabel = "keystored envelope v1"
	// copyBuffer is the size of the buffer streams are copied through.
	copyBuffer = 64 << 10
)

// Keys is what Encrypt and Decrypt need of a keystored client;
// *client.Client has these methods.
type Keys interface {
	Get(ctx context.Context, key string) (client.KeyInfo, error)
	GenerateDataKey(ctx context.Context, key string, spec client.DataKeySpec, aad []byte) (client.DataKey, error)
	Unseal(ctx context.Context, key string, sealed, aad []byte) (client.Unsealed, error)
}

// EncryptOptions are the options of Encrypt.
type EncryptOptions struct {
	// AAD (at most MaxAAD bytes) is authenticated with the stream, not
	// stored: Decrypt needs it again.
	AAD []byte
}

// DecryptOptions are the options of Decrypt.
type DecryptOptions struct {
	// ExpectKey, when set, is the key the file must be encrypted with
	// ("<purpose>/<name>" or a full key ID): a file of another key is
	// refused (ErrBadMessage) before the daemon unseals anything.
	ExpectKey string
	// AAD is the AAD given to Encrypt.
	AAD []byte
}

// Result describes an encrypted or decrypted stream.
type Result struct {
	// Key is the full key ID whose version sealed the data key.
	Key     string
	Version uint32
	// Plaintext is the number of plaintext bytes read (Encrypt) or
	// written (Decrypt).
	Plaintext int64
}

// Header is an envelope file's header: which key version sealed the data
// key, and the sealed data key.
type Header struct {
	// Key is the full key ID, "<app>/<purpose>/<name>".
	Key       string
	Version   uint32
	SealedKey []byte
}

// MarshalBinary returns the header's bytes (docs/envelope.md); a header
// with a field out of its bound gives ErrInvalid.
func (h Header) MarshalBinary() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, provider.Errorf(provider.EINVAL, "envelope header: %v", err)
	}
	b := make([]byte, 0, len(Magic)+8+len(h.Key)+len(h.SealedKey))
	b = append(b, Magic...)
	b = append(b, FormatVersion, byte(len(h.Key)))
	b = append(b, h.Key...)
	b = binary.BigEndian.AppendUint32(b, h.Version)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.SealedKey)))
	return append(b, h.SealedKey...), nil
}

// check checks the header's fields against the format's bounds.
func (h Header) check() error {
	if _, err := provider.ParseKeyID(h.Key); err != nil {
		return errors.New("the key ID is not a full key ID")
	}
	switch {
	case h.Version == 0:
		return errors.New("key version 0")
	case len(h.SealedKey) == 0 || len(h.SealedKey) > MaxSealedKey:
		return errors.New("a sealed data key of 0 or over 1024 bytes")
	}
	return nil
}

// ReadHeader reads an envelope file's header from r and nothing more:
// the encrypted stream follows it in r. A file that is not an envelope, or
// whose header is truncated or out of bounds, gives an error wrapping
// ErrBadMessage; a newer format version ErrNotSupported; a failing r
// ErrIO.
func ReadHeader(r io.Reader) (Header, error) {
	h, _, err := readHeader(&sourceReader{r: r})
	return h, err
}

// readHeader reads the header and returns it with its bytes.
func readHeader(r *sourceReader) (Header, []byte, error) {
	fixed := make([]byte, len(Magic)+2)
	if err := r.readFull(fixed, "envelope header"); err != nil {
		return Header{}, nil, err
	}
	if string(fixed[:len(Magic)]) != Magic {
		return Header{}, nil, provider.Errorf(provider.EBADMSG, "not a keystored envelope file (no %s magic)", Magic)
	}
	if v := fixed[len(Magic)]; v != FormatVersion {
		return Header{}, nil, provider.Errorf(provider.ENOTSUP, "envelope format version %d; this client reads version %d", v, FormatVersion)
	}
	n := int(fixed[len(Magic)+1])
	if n == 0 || n > provider.MaxKeyIDLen {
		return Header{}, nil, provider.Errorf(provider.EBADMSG, "envelope header: a key ID of %d bytes", n)
	}
	rest := make([]byte, n+4+2)
	if err := r.readFull(rest, "envelope header"); err != nil {
		return Header{}, nil, err
	}
	h := Header{Key: string(rest[:n]), Version: binary.BigEndian.Uint32(rest[n:])}
	m := int(binary.BigEndian.Uint16(rest[n+4:]))
	if m == 0 || m > MaxSealedKey {
		return Header{}, nil, provider.Errorf(provider.EBADMSG, "envelope header: a sealed data key of %d bytes", m)
	}
	h.SealedKey = make([]byte, m)
	if err := r.readFull(h.SealedKey, "envelope header"); err != nil {
		return Header{}, nil, err
	}
	if err := h.check(); err != nil {
		return Header{}, nil, provider.Errorf(provider.EBADMSG, "envelope header: %v", err)
	}
	b, err := h.MarshalBinary()
	if err != nil {
		return Header{}, nil, err
	}
	return h, b, nil
}

// dataKeyAAD is the AAD the data key is sealed with: the format's label,
// a zero byte, the key ID, a zero byte and the caller's AAD. A key ID
// holds no zero byte, so the parts cannot run into each other.
func dataKeyAAD(key string, aad []byte) []byte {
	b := make([]byte, 0, len(dataKeyLabel)+2+len(key)+len(aad))
	b = append(b, dataKeyLabel...)
	b = append(b, 0)
	b = append(b, key...)
	b = append(b, 0)
	return append(b, aad...)
}

// streamAAD is the AAD of the Tink stream: the whole header, then the
// caller's AAD (the header's length is fixed by its own fields).
func streamAAD(header, aad []byte) []byte {
	return append(slices.Clip(header), aad...)
}

// newCipher builds version 1's streaming AEAD from a data key.
func newCipher(dataKey []byte) (*subtle.AESGCMHKDF, error) {
	if len(dataKey) != dataKeySize {
		return nil, provider.Errorf(provider.EBADMSG, "a data key of %d bytes, not %d", len(dataKey), dataKeySize)
	}
	c, err := subtle.NewAESGCMHKDF(dataKey, hkdfHash, derivedKeySize, SegmentSize, 0)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "streaming AEAD: %v", err)
	}
	return c, nil
}

func checkAAD(aad []byte) error {
	if len(aad) > MaxAAD {
		return provider.Errorf(provider.EMSGSIZE, "envelope AAD over %d bytes", MaxAAD)
	}
	return nil
}

// Encrypt encrypts src to dst as an envelope file under a new data key
// sealed by the primary version of key, a decrypt key: the header, then
// the stream. It returns when src is at its end (or fails) and the last
// segment is written; it does not close dst. The data key is wiped once
// the cipher is built. Errors: a key of another use ErrPermission, an AAD
// over MaxAAD ErrTooLarge, src or dst failing ErrIO, ctx ending
// ErrUnavailable; the daemon's errors as they come. On error, what was
// written to dst is not a valid envelope.
func Encrypt(ctx context.Context, keys Keys, key string, dst io.Writer, src io.Reader, opts EncryptOptions) (Result, error) {
	if err := checkAAD(opts.AAD); err != nil {
		return Result{}, err
	}
	info, err := keys.Get(ctx, key)
	if err != nil {
		return Result{}, err
	}
	if !slices.Contains(info.Uses, client.UseDecrypt.String()) {
		return Result{}, &provider.Error{Code: provider.EPERM, Op: "encrypt", Key: info.ID,
			Msg: "envelope encryption needs a decrypt key (aes-256-gcm, xchacha20-poly1305, chacha20-poly1305); this is a " + string(info.Algorithm) + " key"}
	}
	dk, err := keys.GenerateDataKey(ctx, info.ID, client.DataKeySpec{Spec: dataKeySpec}, dataKeyAAD(info.ID, opts.AAD))
	if err != nil {
		return Result{}, err
	}
	defer dk.Wipe()
	if dk.Key != info.ID {
		return Result{}, &provider.Error{Code: provider.EIO, Op: "encrypt", Key: info.ID, Msg: "keystored protocol error: a data key of another key, " + dk.Key}
	}
	header, err := Header{Key: dk.Key, Version: dk.Version, SealedKey: dk.Sealed}.MarshalBinary()
	if err != nil {
		return Result{}, &provider.Error{Code: provider.EIO, Op: "encrypt", Key: info.ID, Msg: "keystored protocol error: the sealed data key does not fit a header", Err: err}
	}
	c, err := newCipher(dk.Plaintext)
	dk.Wipe()
	if err != nil {
		return Result{}, err
	}
	res := Result{Key: dk.Key, Version: dk.Version}
	out := &sinkWriter{w: dst}
	if _, err := out.Write(header); err != nil {
		return res, out.err
	}
	w, err := c.NewEncryptingWriter(out, streamAAD(header, opts.AAD))
	if err != nil {
		return res, failure(out.err, nil, provider.Errorf(provider.EIO, "starting the stream: %v", err))
	}
	in := &sourceReader{r: src, ctx: ctx}
	n, err := io.CopyBuffer(w, in, make([]byte, copyBuffer))
	res.Plaintext = n
	if err != nil {
		return res, failure(out.err, in.err, provider.Errorf(provider.EIO, "encrypting: %v", err))
	}
	if err := w.Close(); err != nil {
		return res, failure(out.err, nil, provider.Errorf(provider.EIO, "encrypting the last segment: %v", err))
	}
	return res, nil
}

// Decrypt decrypts the envelope file in src to dst: it reads the header,
// has the daemon unseal the data key, and streams the plaintext out one
// authenticated segment at a time. It does not close dst. A file that is
// not an envelope, truncated, extended, reordered or modified anywhere, a
// wrong AAD, or a file of another key than opts.ExpectKey give an error
// wrapping ErrBadMessage; see the package doc for what dst holds then.
// Other errors: src or dst failing ErrIO, ctx ending ErrUnavailable, the
// daemon's errors (ErrKeyRevoked for a revoked version, ...).
func Decrypt(ctx context.Context, keys Keys, dst io.Writer, src io.Reader, opts DecryptOptions) (Result, error) {
	if err := checkAAD(opts.AAD); err != nil {
		return Result{}, err
	}
	in := &sourceReader{r: src, ctx: ctx}
	h, header, err := readHeader(in)
	if err != nil {
		return Result{}, err
	}
	res := Result{Key: h.Key, Version: h.Version}
	if opts.ExpectKey != "" {
		want, err := keys.Get(ctx, opts.ExpectKey)
		if err != nil {
			return res, err
		}
		if want.ID != h.Key {
			return res, provider.Errorf(provider.EBADMSG, "the envelope is encrypted with %s@%d, not with %s", h.Key, h.Version, want.ID)
		}
	}
	u, err := keys.Unseal(ctx, h.Key, h.SealedKey, dataKeyAAD(h.Key, opts.AAD))
	if err != nil {
		return res, err
	}
	defer clear(u.Plaintext)
	if u.Version != h.Version {
		return res, provider.Errorf(provider.EBADMSG, "the envelope header names version %d, its data key was sealed by version %d", h.Version, u.Version)
	}
	c, err := newCipher(u.Plaintext)
	clear(u.Plaintext)
	if err != nil {
		return res, err
	}
	r, err := c.NewDecryptingReader(in, streamAAD(header, opts.AAD))
	if err != nil {
		return res, failure(nil, in.err, badStream())
	}
	out := &sinkWriter{w: dst}
	sr := &streamReader{r: r, ctx: ctx}
	n, err := io.CopyBuffer(out, sr, make([]byte, copyBuffer))
	res.Plaintext = n
	if err != nil {
		return res, failure(out.err, cmp.Or(in.err, sr.err), badStream())
	}
	return res, nil
}

// badStream is the one error of a stream that does not authenticate.
func badStream() error {
	return provider.Errorf(provider.EBADMSG, "envelope authentication failed: the file is truncated, modified, or not for this AAD")
}

// failure picks the error to report: the destination's or the source's
// own failure (or the context's end), with its code, else the stream's.
func failure(sink, source, stream error) error {
	switch {
	case sink != nil:
		return sink
	case source != nil:
		return source
	}
	return stream
}

// sourceReader reads the caller's source: it records the source's first
// failure as an ErrIO, or ctx's end as ErrUnavailable, and hides the
// source's WriterTo, so that copies go through their buffer. readFull
// reads a header part.
type sourceReader struct {
	r   io.Reader
	ctx context.Context
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if s.ctx != nil {
		if err := provider.CheckContext(s.ctx); err != nil {
			s.err = err
			return 0, err
		}
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = provider.Errorf(provider.EIO, "reading the input: %w", err)
	}
	return n, err
}

func (s *sourceReader) readFull(p []byte, what string) error {
	_, err := io.ReadFull(s, p)
	switch {
	case err == nil:
		return nil
	case s.err != nil:
		return s.err
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return provider.Errorf(provider.EBADMSG, "truncated %s: not a whole keystored envelope", what)
	}
	return provider.Errorf(provider.EIO, "reading the %s: %w", what, err)
}

// streamReader reads the decrypting stream, whose errors are its verdicts,
// and stops at ctx's end (recorded as ErrUnavailable).
type streamReader struct {
	r   io.Reader
	ctx context.Context
	err error
}

func (s *streamReader) Read(p []byte) (int, error) {
	if err := provider.CheckContext(s.ctx); err != nil {
		s.err = err
		return 0, err
	}
	return s.r.Read(p)
}

// sinkWriter writes to a destination and records its first failure as an
// ErrIO.
type sinkWriter struct {
	w   io.Writer
	err error
}

func (s *sinkWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil && s.err == nil {
		s.err = provider.Errorf(provider.EIO, "writing the output: %w", err)
	}
	return n, err
}

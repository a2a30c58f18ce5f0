// Package tpmcounter is an external monotonic counter in a TPM 2.0: an NV
// index of type counter (TPM_NT_COUNTER), which the TPM only lets go up
// (TPM2_NV_Increment) and keeps in its own non-volatile memory, outside
// the host's file systems. keystored advances it with its state changes
// and checks it at start (internal/tamper), so that restoring the state
// directory together with its audit log to an older copy is seen.
//
// The index is defined on first use under the owner hierarchy with the
// attributes in [Attributes] (reads and increments need only the index's
// own empty auth value, so the daemon holds no TPM secret once the index
// exists); an index that exists with other attributes, size or policy is
// refused, never changed or deleted. docs/operations.md ("TPM counter")
// says how to provision it and what it does not protect against.
//
// Counter has the method set of tamper.Counter (Read, Increment,
// Describe, Close) without importing it.
package tpmcounter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// DefaultIndex is the NV index used when Options.Index is 0.
const DefaultIndex uint32 = 0x01500016

// DefaultTimeout bounds one Read, Increment or Open when Options.Timeout
// is 0: every TPM command it sends, retries after TPM warnings included.
const DefaultTimeout = 10 * time.Second

// MaxOwnerAuth is the longest owner authorization value accepted (the
// largest digest a TPM hashes auth values to, SHA-512).
const MaxOwnerAuth = 64

// maxPath bounds Options.Path (PATH_MAX).
const maxPath = 4096

// The range of NV index handles (TPM_HT_NV_INDEX).
const (
	minIndex uint32 = 0x01000000
	maxIndex uint32 = 0x01ffffff
)

// Attributes are the attributes of the counter's index as this package
// defines it, and as a provisioned index must have them (the state bit
// TPMA_NV_WRITTEN aside): a counter (TPM_NT_COUNTER), read and incremented
// with the index's auth value (empty), exempt from dictionary-attack
// lockout (a wrong auth never locks the TPM out), deleted by the owner
// (TPM2_NV_UndefineSpace) or by TPM2_Clear. Name algorithm SHA-256, no
// policy, 8 bytes. With tpm2-tools:
//
//	tpm2_nvdefine 0x01500016 -C o -s 8 -a "nt=counter|authread|authwrite|no_da"
var Attributes = tpm2.TPMANV{
	AuthWrite: true,
	AuthRead:  true,
	NoDA:      true,
	NT:        tpm2.TPMNTCounter,
}

// ErrAttributes is wrapped by the error Open, Read and Increment return
// when the index exists with attributes, a size, a name algorithm or a
// policy other than this package's (Attributes): it was defined by
// something else, and is left alone.
var ErrAttributes = errors.New("the NV index exists with other attributes than a keystored counter")

// Options say which TPM and which index.
type Options struct {
	// Path is the TPM: a character device ("/dev/tpmrm0", the kernel's
	// resource manager; "/dev/tpm0" works when nothing else uses the
	// TPM) or the Unix socket of a TPM speaking raw TPM 2.0 commands
	// (swtpm socket --server type=unixio,path=...). Required.
	Path string
	// Index is the NV index handle, 0x01000000 to 0x01ffffff; 0 means
	// DefaultIndex.
	Index uint32
	// OwnerAuth is the owner hierarchy's authorization value, used only
	// to define the index when it does not exist yet (empty: the owner
	// auth of a TPM nobody took ownership of). At most MaxOwnerAuth
	// bytes. Only Open uses it; the Counter does not keep it.
	OwnerAuth secret.Bytes
	// Timeout bounds each operation; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Counter is a TPM NV counter. Its methods are safe for concurrent use;
// they are serialised (a TPM runs one command at a time anyway).
type Counter struct {
	path    string
	index   tpm2.TPMHandle
	timeout time.Duration

	mu     sync.Mutex
	closed bool
}

// Open connects to the TPM, defines the index if it does not exist and
// checks that it is a keystored counter (an error wrapping ErrAttributes
// if not). A TPM that cannot be reached is EUNAVAILABLE.
func Open(ctx context.Context, o Options) (*Counter, error) {
	if o.Path == "" || len(o.Path) > maxPath {
		return nil, provider.Errorf(provider.EINVAL, "tpm counter: a TPM path (a device or a Unix socket) of at most %d bytes is required", maxPath)
	}
	if o.Index == 0 {
		o.Index = DefaultIndex
	}
	if o.Index < minIndex || o.Index > maxIndex {
		return nil, provider.Errorf(provider.EINVAL, "tpm counter: NV index 0x%08x is not an NV index handle (0x%08x to 0x%08x)", o.Index, minIndex, maxIndex)
	}
	if o.OwnerAuth.Len() > MaxOwnerAuth {
		return nil, provider.Errorf(provider.EINVAL, "tpm counter: owner auth of %d bytes (at most %d)", o.OwnerAuth.Len(), MaxOwnerAuth)
	}
	if o.Timeout < 0 {
		return nil, provider.Errorf(provider.EINVAL, "tpm counter: negative timeout %v", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	c := &Counter{path: o.Path, index: tpm2.TPMHandle(o.Index), timeout: o.Timeout}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.do(ctx, func(t *bound) error {
		_, err := c.public(t)
		if !errors.Is(err, errNoIndex) {
			return err
		}
		if err := c.define(t, o.OwnerAuth.Reveal()); err != nil {
			return err
		}
		_, err = c.public(t)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Describe names the counter for audit records and messages:
// "tpm nv 0x01500016 on /dev/tpmrm0".
func (c *Counter) Describe() string {
	return fmt.Sprintf("tpm nv 0x%08x on %s", uint32(c.index), c.path)
}

// Read returns the counter's value: 0 for an index never incremented
// (a freshly defined one, e.g. after the TPM was cleared and the index
// defined again), else the 8-byte big-endian value the TPM holds.
func (c *Counter) Read(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	var v uint64
	err := c.do(ctx, func(t *bound) error {
		var err error
		v, err = c.read(t)
		return err
	})
	return v, err
}

// Increment adds 1 to the counter and returns the new value, read back
// from the TPM. The first increment of a never-incremented index starts
// from the largest value any counter index has had on this TPM (the TPM
// specification's rule, so that deleting and redefining a counter never
// takes it back): it may return more than 1.
//
// An error after the TPM received the increment (a lost response, a
// timeout) leaves it unknown whether the counter moved: Read tells.
func (c *Counter) Increment(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	var v uint64
	err := c.do(ctx, func(t *bound) error {
		pub, err := c.defined(t)
		if err != nil {
			return err
		}
		cmd := tpm2.NVIncrement{AuthHandle: c.authHandle(pub), NVIndex: c.namedHandle(pub)}
		if err := retry(t.ctx, func() error { _, err := cmd.Execute(t); return err }); err != nil {
			return c.tpmError(t, "incrementing", err)
		}
		v, err = c.read(t)
		return err
	})
	return v, err
}

// Close ends the Counter's use (each operation has its own connection,
// so there is nothing to close on the TPM). The counter in the TPM keeps
// its value. Close is idempotent; the other methods fail after it.
func (c *Counter) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// do runs f over a connection of its own to the TPM, bound to ctx, and
// closes it. One connection per operation: nothing stale is kept across
// a TPM (or swtpm) restart, and a TPM serving one client at a time (a
// swtpm socket) is not held between operations. c.mu is held.
func (c *Counter) do(ctx context.Context, f func(*bound) error) error {
	if c.closed {
		return provider.Errorf(provider.EUNAVAILABLE, "%s: closed", c.Describe())
	}
	l, err := dial(ctx, c.path)
	if err != nil {
		return err
	}
	err = f(&bound{ctx: ctx, l: l})
	if cerr := l.Close(); cerr != nil && err == nil {
		err = provider.Errorf(provider.EIO, "%s: closing the connection: %w", c.Describe(), cerr)
	}
	return err
}

// ErrNotDefined is wrapped (EIO) by the error Read and Increment return
// when the index has gone since Open: the TPM was cleared (TPM2_Clear
// deletes every owner index) or the index deleted. Only Open defines it.
var ErrNotDefined = errors.New("the NV index is not defined")

// errNoIndex: the index is not defined (public's own; Open defines it,
// Read and Increment return ErrNotDefined).
var errNoIndex = errors.New("nv index not defined")

// public reads the index's public area and checks it; errNoIndex when
// the TPM has no such index.
func (c *Counter) public(t *bound) (*tpm2.NVReadPublicResponse, error) {
	cmd := tpm2.NVReadPublic{NVIndex: c.index}
	var rsp *tpm2.NVReadPublicResponse
	err := retry(t.ctx, func() error {
		var err error
		rsp, err = cmd.Execute(t)
		return err
	})
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) && t.err == nil {
			return nil, errNoIndex
		}
		return nil, c.tpmError(t, "reading the index's public area", err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "%s: the TPM's public area does not parse: %w", c.Describe(), err)
	}
	if err := c.check(pub); err != nil {
		return nil, err
	}
	return rsp, nil
}

// defined is public for Read and Increment: a missing index is an error.
func (c *Counter) defined(t *bound) (*tpm2.NVReadPublicResponse, error) {
	rsp, err := c.public(t)
	if errors.Is(err, errNoIndex) {
		return nil, provider.Errorf(provider.EIO, "%s: %w: the TPM was cleared or the index deleted since the counter was opened (opening it again defines it, reading 0)", c.Describe(), ErrNotDefined)
	}
	return rsp, err
}

// check refuses a public area that is not this package's counter.
func (c *Counter) check(pub *tpm2.TPMSNVPublic) error {
	got := pub.Attributes
	got.Written = false
	var why string
	switch {
	case pub.NVIndex != c.index:
		why = fmt.Sprintf("the TPM answered for index 0x%08x", uint32(pub.NVIndex))
	case got.NT != tpm2.TPMNTCounter:
		why = fmt.Sprintf("it is not a counter (type %d)", got.NT)
	case got != Attributes:
		why = fmt.Sprintf("attributes 0x%08x, want 0x%08x", attrBits(got), attrBits(Attributes))
	case pub.NameAlg != tpm2.TPMAlgSHA256:
		why = fmt.Sprintf("name algorithm 0x%04x, want SHA-256", uint16(pub.NameAlg))
	case len(pub.AuthPolicy.Buffer) != 0:
		why = "it has an authorization policy"
	case pub.DataSize != 8:
		why = fmt.Sprintf("size %d, want 8", pub.DataSize)
	default:
		return nil
	}
	return provider.Errorf(provider.EINVAL, "%s: %w: %s (define it as docs/operations.md says, or configure another index)", c.Describe(), ErrAttributes, why)
}

// attrBits is the TPMA_NV bit field, for messages.
func attrBits(a tpm2.TPMANV) uint32 {
	b := tpm2.Marshal(a)
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// define defines the index under the owner hierarchy with ownerAuth.
func (c *Counter) define(t *bound, ownerAuth []byte) error {
	cmd := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(ownerAuth)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    c.index,
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: Attributes,
			DataSize:   8,
		}),
	}
	if err := retry(t.ctx, func() error { _, err := cmd.Execute(t); return err }); err != nil {
		return c.tpmError(t, "defining the index (owner authorization)", err)
	}
	return nil
}

// read returns the value (0 when never incremented).
func (c *Counter) read(t *bound) (uint64, error) {
	pub, err := c.defined(t)
	if err != nil {
		return 0, err
	}
	p, err := pub.NVPublic.Contents()
	if err != nil {
		return 0, provider.Errorf(provider.EIO, "%s: the TPM's public area does not parse: %w", c.Describe(), err)
	}
	if !p.Attributes.Written {
		return 0, nil
	}
	cmd := tpm2.NVRead{AuthHandle: c.authHandle(pub), NVIndex: c.namedHandle(pub), Size: 8}
	var rsp *tpm2.NVReadResponse
	err = retry(t.ctx, func() error {
		var err error
		rsp, err = cmd.Execute(t)
		return err
	})
	if err != nil {
		return 0, c.tpmError(t, "reading", err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, provider.Errorf(provider.EIO, "%s: the TPM returned %d bytes, want 8", c.Describe(), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// authHandle authorizes with the index's own (empty) auth value.
func (c *Counter) authHandle(pub *tpm2.NVReadPublicResponse) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: c.index, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)}
}

func (c *Counter) namedHandle(pub *tpm2.NVReadPublicResponse) tpm2.NamedHandle {
	return tpm2.NamedHandle{Handle: c.index, Name: pub.NVName}
}

// tpmError wraps a command's error: the link's own error as it is (EIO or
// EUNAVAILABLE), a TPM response code as EIO naming the step.
func (c *Counter) tpmError(t *bound, what string, err error) error {
	if code, ok := provider.CodeOf(t.err); ok {
		return provider.Errorf(code, "%s: %s: %w", c.Describe(), what, err)
	}
	return provider.Errorf(provider.EIO, "%s: %s: %w", c.Describe(), what, err)
}

// TPM warnings that mean "not executed, try again": the TPM is busy,
// testing itself, or rate-limiting NV writes.
var retryable = []tpm2.TPMRC{tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting, tpm2.TPMRCNVRate}

// maxTries bounds the retries of one command after TPM warnings.
const maxTries = 8

// retry runs f again after a retryable TPM warning, waiting a little
// longer each time, at most maxTries times and never past ctx.
func retry(ctx context.Context, f func() error) error {
	wait := 10 * time.Millisecond
	for try := 1; ; try++ {
		err := f()
		if err == nil || try == maxTries || !isRetryable(err) {
			return err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-timer.C:
		}
		wait *= 2
	}
}

func isRetryable(err error) bool {
	for _, rc := range retryable {
		if errors.Is(err, rc) {
			return true
		}
	}
	return false
}

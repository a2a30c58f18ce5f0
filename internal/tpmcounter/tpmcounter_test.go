package tpmcounter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/internal/tpmcounter/swtpmtest"
)

// Counter has tamper.Counter's method set (issue 14, part C item 4),
// checked here without importing internal/tamper.
var _ interface {
	Read(ctx context.Context) (uint64, error)
	Increment(ctx context.Context) (uint64, error)
	Describe() string
	Close() error
} = (*Counter)(nil)

// testIndex is not DefaultIndex, so that Options.Index is exercised;
// TestDefaultIndex covers the default.
const testIndex uint32 = 0x01500020

// incr increments c and fails t unless the new value is want.
func incr(t *testing.T, c *Counter, want uint64) {
	t.Helper()
	got, err := c.Increment(testContext(t))
	if err != nil {
		t.Fatalf("increment: %v", err)
	}
	if got != want {
		t.Fatalf("increment = %d, want %d", got, want)
	}
}

// read reads c and fails t unless the value is want.
func read(t *testing.T, c *Counter, want uint64) {
	t.Helper()
	got, err := c.Read(testContext(t))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got != want {
		t.Fatalf("read = %d, want %d", got, want)
	}
}

func TestDefineIncrementRead(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Describe(), fmt.Sprintf("tpm nv 0x01500020 on %s", s.Sock()); got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	read(t, c, 0) // defined, never incremented
	incr(t, c, 1) // a TPM that never had a counter starts at 0
	read(t, c, 1)
	incr(t, c, 2)
	incr(t, c, 3)
	read(t, c, 3)

	// The index as the TPM holds it: what Attributes says, written.
	p := readPublic(t, s, testIndex)
	want := Attributes
	want.Written = true
	if p.Attributes != want || p.DataSize != 8 || p.NameAlg != tpm2.TPMAlgSHA256 {
		t.Errorf("index defined as %+v size %d alg %v, want %+v size 8 SHA-256", p.Attributes, p.DataSize, p.NameAlg, want)
	}

	// A second counter on the same index finds it defined and shares it.
	c2, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	read(t, c2, 3)
	incr(t, c2, 4)
	read(t, c, 4)
}

func TestDefaultIndex(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Describe(), "tpm nv 0x01500016 on "+s.Sock(); got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	incr(t, c, 1)
	if p := readPublic(t, s, DefaultIndex); p.NVIndex != tpm2.TPMHandle(DefaultIndex) || !p.Attributes.Written {
		t.Errorf("index 0x%08x: %+v", DefaultIndex, p)
	}
}

func TestPersistsAcrossRestart(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	incr(t, c, 1)
	incr(t, c, 2)
	incr(t, c, 3)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	s.Restart() // an orderly shutdown and a new process on the same state
	c, err = open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	read(t, c, 3)
	incr(t, c, 4)

	// A crash (SIGKILL, no shutdown): every increment is in NV already.
	// The same Counter goes on (a connection per operation).
	s.Kill()
	s.Start()
	read(t, c, 4)
	incr(t, c, 5)
}

func TestFreshStateReadsZero(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	incr(t, c, 1)
	incr(t, c, 2)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// The TPM's state is gone (a new TPM, or its NV wiped): the index is
	// defined again and reads 0. Seeing that 0 is below what the audit
	// log recorded is internal/tamper's job (ErrCounterBehind).
	s.Reset()
	c, err = open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	read(t, c, 0)
	incr(t, c, 1)
}

// TestRedefinedCounterDoesNotGoBack: deleting the index (TPM2_NV_Undefine
// with owner auth, as TPM2_Clear does to every owner index) and defining
// it again gives a counter that reads 0 until its first increment, which
// starts from the largest value a counter had on this TPM: the TPM's own
// defence, which the docs rely on.
func TestRedefinedCounterDoesNotGoBack(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 5; want++ {
		incr(t, c, want)
	}
	undefineRaw(t, s, testIndex)
	c2, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	read(t, c2, 0)
	v, err := c2.Increment(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if v <= 5 {
		t.Fatalf("first increment of the redefined counter = %d, want > 5", v)
	}
	t.Logf("redefined counter starts at %d", v)
}

// withTPM runs f over a connection of its own to s's TPM (swtpm serves
// one connection at a time: it is closed before f returns).
func withTPM(t *testing.T, s *swtpmtest.TPM, f func(tpm transport.TPM)) {
	t.Helper()
	l, err := dial(testContext(t), s.Sock())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	f(&bound{ctx: testContext(t), l: l})
}

// readPublic returns index's public area on s's TPM.
func readPublic(t *testing.T, s *swtpmtest.TPM, index uint32) *tpm2.TPMSNVPublic {
	t.Helper()
	var p *tpm2.TPMSNVPublic
	withTPM(t, s, func(tpm transport.TPM) {
		rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(tpm)
		if err != nil {
			t.Fatalf("reading 0x%08x: %v", index, err)
		}
		if p, err = rsp.NVPublic.Contents(); err != nil {
			t.Fatal(err)
		}
	})
	return p
}

// undefineRaw deletes index with the (empty) owner auth, as an attacker
// with root, or TPM2_Clear, would.
func undefineRaw(t *testing.T, s *swtpmtest.TPM, index uint32) {
	t.Helper()
	withTPM(t, s, func(tpm transport.TPM) {
		rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(tpm)
		if err != nil {
			t.Fatalf("reading 0x%08x: %v", index, err)
		}
		undefine := tpm2.NVUndefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: rsp.NVName},
		}
		if _, err := undefine.Execute(tpm); err != nil {
			t.Fatalf("undefining 0x%08x: %v", index, err)
		}
	})
}

// defineRaw defines index with attrs and size on s's TPM, as another
// program would.
func defineRaw(t *testing.T, s *swtpmtest.TPM, index uint32, attrs tpm2.TPMANV, size uint16, policy []byte) {
	t.Helper()
	def := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    tpm2.TPMHandle(index),
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: attrs,
			AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
			DataSize:   size,
		}),
	}
	withTPM(t, s, func(tpm transport.TPM) {
		if _, err := def.Execute(tpm); err != nil {
			t.Fatalf("defining 0x%08x: %v", index, err)
		}
	})
}

func TestWrongAttributesRefused(t *testing.T) {
	s := swtpmtest.Start(t)
	ordinary := tpm2.TPMANV{AuthWrite: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary}
	ownerOnly := tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NoDA: true, NT: tpm2.TPMNTCounter}
	withDA := tpm2.TPMANV{AuthWrite: true, AuthRead: true, NT: tpm2.TPMNTCounter}
	extra := Attributes
	extra.OwnerRead = true
	policy := make([]byte, 32)
	for i, tc := range []struct {
		name   string
		attrs  tpm2.TPMANV
		size   uint16
		policy []byte
		why    string
	}{
		{"ordinary", ordinary, 8, nil, "not a counter"},
		{"owner auth only", ownerOnly, 8, nil, "attributes"},
		{"dictionary attack protected", withDA, 8, nil, "attributes"},
		{"an extra attribute", extra, 8, nil, "attributes"},
		{"a policy", Attributes, 8, policy, "policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			index := testIndex + 1 + uint32(i)
			defineRaw(t, s, index, tc.attrs, tc.size, tc.policy)
			_, err := open(t, s, Options{Index: index})
			if !errors.Is(err, ErrAttributes) || !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("open = %v, want EINVAL wrapping ErrAttributes", err)
			}
			if !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), fmt.Sprintf("0x%08x", index)) {
				t.Errorf("error %q does not name the index and %q", err, tc.why)
			}
			// Left as it was: still defined with its own attributes.
			p := readPublic(t, s, index)
			if p.Attributes != tc.attrs {
				t.Errorf("attributes now %+v, were %+v", p.Attributes, tc.attrs)
			}
		})
	}
}

// TestRedefinedWithWrongAttributesRefused: an index replaced behind an
// open Counter's back is refused at the next call, not incremented.
func TestRedefinedWithWrongAttributesRefused(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	incr(t, c, 1)
	undefineRaw(t, s, testIndex)
	defineRaw(t, s, testIndex, tpm2.TPMANV{AuthWrite: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTBits}, 8, nil)
	if _, err := c.Increment(testContext(t)); !errors.Is(err, ErrAttributes) {
		t.Errorf("increment = %v, want ErrAttributes", err)
	}
	if _, err := c.Read(testContext(t)); !errors.Is(err, ErrAttributes) {
		t.Errorf("read = %v, want ErrAttributes", err)
	}
}

func TestOwnerAuth(t *testing.T) {
	s := swtpmtest.Start(t)
	const pass = "owner-secret-1234"
	change := tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NewAuth:    tpm2.TPM2BAuth{Buffer: []byte(pass)},
	}
	withTPM(t, s, func(tpm transport.TPM) {
		if _, err := change.Execute(tpm); err != nil {
			t.Fatal(err)
		}
	})

	_, err := open(t, s, Options{Index: testIndex})
	if err == nil || !errors.Is(err, provider.ErrIO) {
		t.Fatalf("open without the owner auth = %v, want EIO", err)
	}
	_, err = open(t, s, Options{Index: testIndex, OwnerAuth: secret.New([]byte("wrong"))})
	if err == nil {
		t.Fatal("open with a wrong owner auth succeeded")
	}
	c, err := open(t, s, Options{Index: testIndex, OwnerAuth: secret.New([]byte(pass))})
	if err != nil {
		t.Fatal(err)
	}
	incr(t, c, 1)
	if strings.Contains(fmt.Sprintf("%+v %#v", c, c), pass) {
		t.Error("the counter keeps or prints the owner auth")
	}
	// Defined: opening it needs no owner auth any more.
	c2, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	read(t, c2, 1)
}

func TestClosed(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := c.Read(testContext(t)); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("read after close = %v, want EUNAVAILABLE", err)
	}
	if _, err := c.Increment(testContext(t)); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("increment after close = %v, want EUNAVAILABLE", err)
	}
}

// TestClearDoesNotTakeCounterBack: TPM2_Clear (tpm2_clear, or "clear
// TPM" in firmware) deletes every owner index; the daemon's next Open
// defines the index again, which reads 0 (internal/tamper then reports
// the counter behind the log), and its first increment starts above the
// old value.
func TestClearDoesNotTakeCounterBack(t *testing.T) {
	s := swtpmtest.Start(t)
	c, err := open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 7; want++ {
		incr(t, c, want)
	}
	withTPM(t, s, func(tpm transport.TPM) {
		clear := tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}
		if _, err := clear.Execute(tpm); err != nil {
			t.Fatalf("TPM2_Clear: %v", err)
		}
		if _, err := (tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(testIndex)}).Execute(tpm); !errors.Is(err, tpm2.TPMRCHandle) {
			t.Fatalf("index after TPM2_Clear: %v, want TPM_RC_HANDLE (deleted)", err)
		}
	})
	// The open counter does not define it again behind the daemon's back.
	if _, err := c.Read(testContext(t)); !errors.Is(err, ErrNotDefined) || !errors.Is(err, provider.ErrIO) {
		t.Fatalf("read after TPM2_Clear = %v, want EIO wrapping ErrNotDefined", err)
	}
	if _, err := c.Increment(testContext(t)); !errors.Is(err, ErrNotDefined) {
		t.Fatalf("increment after TPM2_Clear = %v, want ErrNotDefined", err)
	}
	// Opening it again (the daemon's next start) defines it: 0, then
	// above the old value.
	c, err = open(t, s, Options{Index: testIndex})
	if err != nil {
		t.Fatal(err)
	}
	read(t, c, 0)
	v, err := c.Increment(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if v <= 7 {
		t.Fatalf("first increment after TPM2_Clear = %d, want > 7", v)
	}
}

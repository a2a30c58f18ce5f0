package provider

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

func TestCodesMapToErrno(t *testing.T) {
	want := map[Code]syscall.Errno{
		EPERM: syscall.EPERM, ENOENT: syscall.ENOENT, EALREADY: syscall.EALREADY,
		EKEYREVOKED: syscall.EKEYREVOKED, EINVAL: syscall.EINVAL, EMSGSIZE: syscall.EMSGSIZE,
		EBADMSG: syscall.EBADMSG, ENOTSUP: syscall.ENOTSUP, EIO: syscall.EIO, EUNAVAILABLE: 0,
		EDQUOT: syscall.EDQUOT, EKEYEXPIRED: syscall.EKEYEXPIRED,
	}
	if len(Codes()) != len(want) {
		t.Fatalf("Codes() has %d codes, want %d", len(Codes()), len(want))
	}
	for _, c := range Codes() {
		errno, ok := want[c]
		if !ok {
			t.Fatalf("unexpected code %v", c)
		}
		if got := c.Errno(); got != errno {
			t.Errorf("%v.Errno() = %v, want %v", c, got, errno)
		}
		wrapped := fmt.Errorf("outer: %w", &Error{Code: c, Op: "sign", Key: "a/b/c@1", Msg: "detail"})
		if !errors.Is(wrapped, c) {
			t.Errorf("errors.Is(wrapped, %v) = false", c)
		}
		if errno != 0 && !errors.Is(wrapped, errno) {
			t.Errorf("errors.Is(wrapped %v, syscall %v) = false", c, errno)
		}
		for _, other := range Codes() {
			if other != c && errors.Is(wrapped, other) {
				t.Errorf("errors.Is(%v, %v) = true", c, other)
			}
		}
		got, ok := CodeOf(wrapped)
		if !ok || got != c {
			t.Errorf("CodeOf = %v, %v; want %v", got, ok, c)
		}
		p, ok := ParseCode(c.String())
		if !ok || p != c {
			t.Errorf("ParseCode(%q) = %v, %v", c.String(), p, ok)
		}
	}
	if !errors.Is(ErrKeyRevoked, syscall.EKEYREVOKED) {
		t.Error("ErrKeyRevoked is not syscall.EKEYREVOKED")
	}
	if !errors.Is(ErrNotFound, fs.ErrNotExist) || !errors.Is(ErrPermission, fs.ErrPermission) {
		t.Error("ENOENT/EPERM do not match io/fs sentinels")
	}
	if errors.Is(EUNAVAILABLE, syscall.Errno(0)) {
		t.Error("EUNAVAILABLE matches errno 0")
	}
	if _, ok := CodeOf(errors.New("plain")); ok {
		t.Error("CodeOf(plain error) reported a code")
	}
	if Code(0).Valid() || Code(200).Valid() {
		t.Error("invalid codes report Valid")
	}
	if _, ok := ParseCode("ENOPE"); ok {
		t.Error("ParseCode accepted an unknown name")
	}
}

func TestErrorMessages(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&Error{Code: EKEYREVOKED, Op: "sign", Key: "a/b/c@2"}, "sign a/b/c@2: key revoked"},
		{&Error{Code: EPERM, Msg: "no"}, "no"},
		{Errorf(EIO, "reading x: %w", errors.New("disk")), "reading x: disk"},
		{WithOp("seal", "a/b/c", Errorf(EMSGSIZE, "too big")), "seal a/b/c: too big"},
		{WithOp("unseal", "a/b/c", WithOp("open", "a/b/c@1", Errorf(EBADMSG, "bad"))), "unseal a/b/c: open a/b/c@1: bad"},
		{WithOp("x", "", errors.New("plain")), "x: plain"},
		{WithOp("x", "k", ENOENT), "x k: not found"},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	if WithOp("x", "y", nil) != nil {
		t.Error("WithOp(nil) != nil")
	}
	if c, _ := CodeOf(WithOp("x", "", errors.New("plain"))); c != EIO {
		t.Errorf("codeless error became %v, want EIO", c)
	}
}

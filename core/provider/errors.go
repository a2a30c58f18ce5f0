package provider

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
)

// Code is the keystore's error vocabulary: one value per kind of failure a
// caller may want to act on. A Code is itself an error, so the sentinels
// below are plain Code values and errors.Is(err, ErrKeyRevoked) works
// through any wrapping. Where Linux has a matching errno, Code.Is maps to
// it as well: errors.Is(err, syscall.EKEYREVOKED) holds for a revoked key.
//
// The zero Code is invalid.
type Code uint8

// The codes. Their names are the machine-readable reasons used on every
// boundary (plugin wire protocol, daemon API, CLI).
const (
	_            Code = iota
	EPERM             // operation not permitted: wrong caller, wrong use, policy
	ENOENT            // no such key, version or value
	EALREADY          // the key exists, or the transition already happened
	EKEYREVOKED       // the key or version is revoked or destroyed
	EINVAL            // malformed argument: key ID, version, algorithm, option
	EMSGSIZE          // an input is over its bound
	EBADMSG           // authentication failed, or a malformed envelope
	ENOTSUP           // the algorithm or operation is not supported
	EIO               // storage failure or corrupted state
	EUNAVAILABLE      // the provider or service is unavailable; retry later
	EDQUOT            // a quota is exhausted: keys, versions or Store space of an app
	EKEYEXPIRED       // a time-limited credential (an import token) has expired
	codeEnd
)

// The sentinels, one per Code. Compare with errors.Is.
var (
	ErrPermission   error = EPERM
	ErrNotFound     error = ENOENT
	ErrAlready      error = EALREADY
	ErrKeyRevoked   error = EKEYREVOKED
	ErrInvalid      error = EINVAL
	ErrTooLarge     error = EMSGSIZE
	ErrBadMessage   error = EBADMSG
	ErrNotSupported error = ENOTSUP
	ErrIO           error = EIO
	ErrUnavailable  error = EUNAVAILABLE
	ErrQuota        error = EDQUOT
	ErrExpired      error = EKEYEXPIRED
)

type codeInfo struct {
	name  string
	text  string
	errno syscall.Errno
}

var codes = [codeEnd]codeInfo{
	EPERM:        {"EPERM", "operation not permitted", syscall.EPERM},
	ENOENT:       {"ENOENT", "not found", syscall.ENOENT},
	EALREADY:     {"EALREADY", "already exists or already done", syscall.EALREADY},
	EKEYREVOKED:  {"EKEYREVOKED", "key revoked", syscall.EKEYREVOKED},
	EINVAL:       {"EINVAL", "invalid argument", syscall.EINVAL},
	EMSGSIZE:     {"EMSGSIZE", "input too large", syscall.EMSGSIZE},
	EBADMSG:      {"EBADMSG", "message authentication failed", syscall.EBADMSG},
	ENOTSUP:      {"ENOTSUP", "not supported", syscall.ENOTSUP},
	EIO:          {"EIO", "input/output error", syscall.EIO},
	EUNAVAILABLE: {"EUNAVAILABLE", "unavailable", 0},
	EDQUOT:       {"EDQUOT", "quota exceeded", syscall.EDQUOT},
	EKEYEXPIRED:  {"EKEYEXPIRED", "expired", syscall.EKEYEXPIRED},
}

// Codes lists every valid Code in order.
func Codes() []Code {
	out := make([]Code, 0, codeEnd-1)
	for c := Code(1); c < codeEnd; c++ {
		out = append(out, c)
	}
	return out
}

// Valid reports whether c is one of the defined codes.
func (c Code) Valid() bool { return c > 0 && c < codeEnd }

// Error returns the short description, e.g. "key revoked".
func (c Code) Error() string {
	if !c.Valid() {
		return "unknown error"
	}
	return codes[c].text
}

// String returns the code's name, e.g. "EKEYREVOKED".
func (c Code) String() string {
	if !c.Valid() {
		return "EUNKNOWN"
	}
	return codes[c].name
}

// Errno returns the Linux errno for c, or 0 where Linux has none
// (EUNAVAILABLE).
func (c Code) Errno() syscall.Errno {
	if !c.Valid() {
		return 0
	}
	return codes[c].errno
}

// Is makes errors.Is(err, syscall.EXXX) and the io/fs sentinels match a Code.
func (c Code) Is(target error) bool {
	var errno syscall.Errno
	if errors.As(target, &errno) {
		return errno != 0 && errno == c.Errno()
	}
	switch target {
	case fs.ErrNotExist:
		return c == ENOENT
	case fs.ErrPermission:
		return c == EPERM
	case fs.ErrExist:
		return c == EALREADY
	}
	return false
}

// ParseCode returns the Code named s ("EPERM", ...).
func ParseCode(s string) (Code, bool) {
	for c := Code(1); c < codeEnd; c++ {
		if codes[c].name == s {
			return c, true
		}
	}
	return 0, false
}

// CodeOf returns the first Code found in err's chain, and false when err
// carries none (callers usually treat that as EIO).
func CodeOf(err error) (Code, bool) {
	var c Code
	if errors.As(err, &c) && c.Valid() {
		return c, true
	}
	return 0, false
}

// Error is a Code with context: the operation, the key it concerns and a
// message for people. It unwraps to its Code and to Err, so errors.Is works
// with both the sentinel and the cause. The code is kept in the value only:
// Error() is the message, and whoever prints an error for a person adds
// the code's name once (keystorectl prints "<message> (EKEYREVOKED)").
//
// An Error never contains message payloads, plaintext or key bytes; callers
// building one must pass only identifiers and descriptions.
type Error struct {
	Code Code   // always valid
	Op   string // e.g. "sign"; may be empty
	Key  string // key ID or versioned ref; may be empty
	Msg  string // detail for people, the cause's text included; may be empty
	Err  error  // underlying cause; may be nil
}

// Errorf returns an *Error with the given code and a message formatted as
// fmt.Sprintf does. A %w verb wraps its operand as the cause, as in
// fmt.Errorf: Errorf(EIO, "reading %s: %w", path, err).
func Errorf(code Code, format string, args ...any) error {
	e := &Error{Code: code}
	if len(args) == 0 && !strings.Contains(format, "%") {
		e.Msg = format
		return e
	}
	err := fmt.Errorf(format, args...)
	e.Msg = err.Error()
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		e.Err = u.Unwrap()
	case interface{ Unwrap() []error }:
		e.Err = errors.Join(u.Unwrap()...)
	}
	return e
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		if e.Key != "" {
			b.WriteByte(' ')
			b.WriteString(e.Key)
		}
		b.WriteString(": ")
	} else if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	switch {
	case e.Msg != "":
		b.WriteString(e.Msg)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(e.Code.Error())
	}
	return b.String()
}

// Unwrap returns the Code first, then the cause, so CodeOf reports the
// outermost code.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Code}
	}
	return []error{e.Code, e.Err}
}

// WithOp returns err annotated with an operation and key. If err is an
// *Error without an Op, a copy is annotated; otherwise err is wrapped in a
// new *Error carrying err's code (EIO if it has none).
func WithOp(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) && e.Op == "" && e == err {
		c := *e
		c.Op, c.Key = op, key
		return &c
	}
	code, ok := CodeOf(err)
	if !ok {
		code = EIO
	}
	if c, ok := err.(Code); ok {
		return &Error{Code: c, Op: op, Key: key}
	}
	return &Error{Code: code, Op: op, Key: key, Err: err}
}

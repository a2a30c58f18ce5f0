package pkcs11

import (
	"errors"
	"strconv"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// ckrCodes maps PKCS#11 return values to the contract's codes: the one
// table every token error goes through. A value not listed is EIO.
var ckrCodes = map[uint]provider.Code{
	p11.CKR_KEY_HANDLE_INVALID:    provider.ENOENT,
	p11.CKR_OBJECT_HANDLE_INVALID: provider.ENOENT,

	p11.CKR_PIN_INCORRECT:              provider.EPERM,
	p11.CKR_PIN_INVALID:                provider.EPERM,
	p11.CKR_PIN_LEN_RANGE:              provider.EPERM,
	p11.CKR_PIN_EXPIRED:                provider.EPERM,
	p11.CKR_PIN_LOCKED:                 provider.EPERM,
	p11.CKR_USER_NOT_LOGGED_IN:         provider.EPERM, // after the re-login retry
	p11.CKR_USER_PIN_NOT_INITIALIZED:   provider.EPERM,
	p11.CKR_KEY_FUNCTION_NOT_PERMITTED: provider.EPERM,

	p11.CKR_MECHANISM_INVALID:      provider.ENOTSUP,
	p11.CKR_FUNCTION_NOT_SUPPORTED: provider.ENOTSUP,

	p11.CKR_DATA_LEN_RANGE: provider.EMSGSIZE,
	p11.CKR_ARGUMENTS_BAD:  provider.EINVAL,

	p11.CKR_ENCRYPTED_DATA_INVALID:   provider.EBADMSG,
	p11.CKR_ENCRYPTED_DATA_LEN_RANGE: provider.EBADMSG,
	p11.CKR_SIGNATURE_INVALID:        provider.EBADMSG,

	p11.CKR_DEVICE_REMOVED:           provider.EUNAVAILABLE,
	p11.CKR_TOKEN_NOT_PRESENT:        provider.EUNAVAILABLE,
	p11.CKR_DEVICE_ERROR:             provider.EUNAVAILABLE,
	p11.CKR_SLOT_ID_INVALID:          provider.EUNAVAILABLE,
	p11.CKR_SESSION_COUNT:            provider.EUNAVAILABLE,
	p11.CKR_SESSION_HANDLE_INVALID:   provider.EUNAVAILABLE, // after the retry
	p11.CKR_SESSION_CLOSED:           provider.EUNAVAILABLE, // after the retry
	p11.CKR_CRYPTOKI_NOT_INITIALIZED: provider.EUNAVAILABLE, // after the retry
}

// ckrCode returns the code of a PKCS#11 return value.
func ckrCode(rv uint) provider.Code {
	if c, ok := ckrCodes[rv]; ok {
		return c
	}
	return provider.EIO
}

// ckrName returns the name of a PKCS#11 return value ("CKR_PIN_INCORRECT"),
// or its number for a value the binding does not name.
func ckrName(rv uint) string {
	s := p11.Error(rv).Error() // "pkcs11: 0x%X: NAME"
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return "CKR_0x" + strings.ToUpper(strconv.FormatUint(uint64(rv), 16))
}

// ckrError is a PKCS#11 error as the provider reports it: the function
// that failed and the return value's name.
type ckrError struct {
	fn string // "C_Sign"
	rv uint
}

func (e *ckrError) Error() string { return e.fn + ": " + ckrName(e.rv) }

// Unwrap returns the binding's error value, so errors.As(err,
// *p11.Error) finds the return value.
func (e *ckrError) Unwrap() error { return p11.Error(e.rv) }

// rvOf returns the PKCS#11 return value carried by err.
func rvOf(err error) (uint, bool) {
	var e p11.Error
	if errors.As(err, &e) {
		return uint(e), true
	}
	return 0, false
}

// call turns a binding error into a *ckrError naming fn; nil stays nil and
// any other error is returned as it is.
func call(fn string, err error) error {
	if err == nil {
		return nil
	}
	var e p11.Error
	if errors.As(err, &e) {
		return &ckrError{fn: fn, rv: uint(e)}
	}
	return err
}

// mapErr returns err as a contract error: an error that already carries a
// code is returned unchanged; a PKCS#11 error gets its code from ckrCodes
// and msg (which names the key, never a payload) as context; anything else
// is EIO.
func mapErr(msg string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := provider.CodeOf(err); ok {
		return err
	}
	if rv, ok := rvOf(err); ok {
		return provider.Errorf(ckrCode(rv), "%s: %w", msg, err)
	}
	return provider.Errorf(provider.EIO, "%s: %w", msg, err)
}

// isReset reports whether rv means the session or the login is gone: the
// provider then opens a new session, logs in and retries once.
func isReset(rv uint) bool {
	switch rv {
	case p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_USER_NOT_LOGGED_IN,
		p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_CRYPTOKI_NOT_INITIALIZED,
		p11.CKR_OPERATION_ACTIVE:
		return true
	}
	return false
}

// needsSlot reports whether rv means the token may have moved to another
// slot (or the library was reinitialized): the slot is looked up again.
func needsSlot(rv uint) bool {
	switch rv {
	case p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_CRYPTOKI_NOT_INITIALIZED, p11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}

// isStaleObject reports whether rv means an object handle is no longer
// valid.
func isStaleObject(rv uint) bool {
	return rv == p11.CKR_OBJECT_HANDLE_INVALID || rv == p11.CKR_KEY_HANDLE_INVALID
}

// errAuth is the one error of a failed Open.
func errAuth() error { return provider.Errorf(provider.EBADMSG, "message authentication failed") }

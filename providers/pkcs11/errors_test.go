package pkcs11

import (
	"errors"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// TestErrorTable: every PKCS#11 return value the contract names maps to
// its code, anything else to EIO, and the error text names the function
// and the CKR value.
func TestErrorTable(t *testing.T) {
	cases := []struct {
		rv   uint
		name string
		want provider.Code
	}{
		{p11.CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID", provider.ENOENT},
		{p11.CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID", provider.ENOENT},
		{p11.CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", provider.EPERM},
		{p11.CKR_PIN_LOCKED, "CKR_PIN_LOCKED", provider.EPERM},
		{p11.CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN", provider.EPERM},
		{p11.CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED", provider.EPERM},
		{p11.CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID", provider.ENOTSUP},
		{p11.CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED", provider.ENOTSUP},
		{p11.CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE", provider.EMSGSIZE},
		{p11.CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD", provider.EINVAL},
		{p11.CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID", provider.EBADMSG},
		{p11.CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE", provider.EBADMSG},
		{p11.CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID", provider.EBADMSG},
		{p11.CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED", provider.EUNAVAILABLE},
		{p11.CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT", provider.EUNAVAILABLE},
		{p11.CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR", provider.EUNAVAILABLE},
		{p11.CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID", provider.EUNAVAILABLE},
		{p11.CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR", provider.EIO},
		{p11.CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED", provider.EIO},
		{p11.CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE", provider.EIO},
		{0x7FFFFFF0, "CKR_0x7FFFFFF0", provider.EIO},
	}
	for _, c := range cases {
		err := mapErr("key a/b/c@1", call("C_Sign", p11.Error(c.rv)))
		got, ok := provider.CodeOf(err)
		if !ok || got != c.want {
			t.Errorf("%s: code %v, want %v", c.name, got, c.want)
		}
		if s := err.Error(); !strings.Contains(s, "C_Sign: "+c.name) || !strings.HasPrefix(s, "key a/b/c@1: ") {
			t.Errorf("%s: error text %q, want the key, the function and the CKR name", c.name, s)
		}
		var e p11.Error
		if !errors.As(err, &e) || uint(e) != c.rv {
			t.Errorf("%s: errors.As(*p11.Error) = %v, want the return value", c.name, e)
		}
	}
	for rv := range ckrCodes {
		if !strings.HasPrefix(ckrName(rv), "CKR_") || strings.HasPrefix(ckrName(rv), "CKR_0x") {
			t.Errorf("table entry 0x%x has no name (%q)", rv, ckrName(rv))
		}
	}
	coded := provider.Errorf(provider.ENOENT, "gone")
	if mapErr("x", coded) != coded {
		t.Error("mapErr changed an error that already had a code")
	}
	if c, _ := provider.CodeOf(mapErr("x", errors.New("plain"))); c != provider.EIO {
		t.Errorf("plain error mapped to %v, want EIO", c)
	}
	if mapErr("x", nil) != nil {
		t.Error("mapErr(nil) != nil")
	}
}

// TestResetClasses: which return values make the provider log in again and
// retry, and which make it find the token's slot again.
func TestResetClasses(t *testing.T) {
	for _, rv := range []uint{p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_USER_NOT_LOGGED_IN,
		p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_CRYPTOKI_NOT_INITIALIZED} {
		if !isReset(rv) {
			t.Errorf("%s is not a reset", ckrName(rv))
		}
	}
	for _, rv := range []uint{p11.CKR_PIN_INCORRECT, p11.CKR_GENERAL_ERROR, p11.CKR_OBJECT_HANDLE_INVALID, p11.CKR_DEVICE_ERROR} {
		if isReset(rv) {
			t.Errorf("%s is a reset; retrying it would hide the error", ckrName(rv))
		}
	}
	if !needsSlot(p11.CKR_TOKEN_NOT_PRESENT) || needsSlot(p11.CKR_SESSION_HANDLE_INVALID) {
		t.Error("needsSlot: wrong classes")
	}
}

package client

import (
	"errors"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// The error sentinels: the provider contract's codes. Every error the
// client returns wraps exactly one of them; where Linux has a matching
// errno, errors.Is(err, syscall.EXXX) holds as well (ErrUnavailable has
// none).
var (
	ErrPermission   = provider.ErrPermission   // EPERM: another app's key, wrong use, policy, destroy before revoke
	ErrNotFound     = provider.ErrNotFound     // ENOENT: no such key, version or value
	ErrAlready      = provider.ErrAlready      // EALREADY: the key exists, or the transition already happened
	ErrKeyRevoked   = provider.ErrKeyRevoked   // EKEYREVOKED: the key or version is revoked or destroyed
	ErrInvalid      = provider.ErrInvalid      // EINVAL: malformed key name, version, algorithm or option
	ErrTooLarge     = provider.ErrTooLarge     // EMSGSIZE: an input is over its bound
	ErrBadMessage   = provider.ErrBadMessage   // EBADMSG: a signature does not verify, unseal failed, bad envelope
	ErrNotSupported = provider.ErrNotSupported // ENOTSUP: algorithm or operation not supported
	ErrIO           = provider.ErrIO           // EIO: storage failure or corrupted state in the daemon
	ErrUnavailable  = provider.ErrUnavailable  // EUNAVAILABLE: the daemon or its provider cannot be reached; retry later
	ErrQuota        = provider.ErrQuota        // EDQUOT: the app's quota (keys, versions per key, Store values or bytes) is used up, or too many import tokens are outstanding
	ErrExpired      = provider.ErrExpired      // EKEYEXPIRED: a time-limited credential (an import token) has expired
)

// ErrVersionMismatch is returned (wrapped, with ErrInvalid) by SignWith,
// SignBatch and a Signer's Sign when the daemon signed with another
// version than the one asked for: a daemon older than API v1.3 ignores
// the version and signs with the primary one, and the signature would not
// verify against the public key the caller holds.
var ErrVersionMismatch = errors.New("the daemon signed with another key version than the one asked for")

// Code is the error vocabulary shared with the daemon (EPERM, ENOENT,
// ...). CodeOf extracts it from an error.
type Code = provider.Code

// CodeOf returns the code an error carries, and false when it carries
// none.
func CodeOf(err error) (Code, bool) { return provider.CodeOf(err) }

// detailError rebuilds a per-item error of a batch or listing. An unknown
// reason becomes EIO.
func detailError(d *keystorev1.ErrorDetail) error {
	code, ok := provider.ParseCode(d.GetReason())
	if !ok {
		code = provider.EIO
	}
	msg := d.GetMessage()
	if len(msg) > maxDetailMessage {
		msg = msg[:maxDetailMessage]
	}
	if msg == "" {
		return provider.Errorf(code, "%s", code.Error())
	}
	return provider.Errorf(code, "%s", msg)
}

// maxDetailMessage bounds a per-item message from the daemon.
const maxDetailMessage = 1024

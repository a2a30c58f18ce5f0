package pkcs11

import (
	"bytes"
	"strconv"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/internal/privfile"
)

// ReadPINFile reads a token PIN from the file at path: a regular file, not
// a symlink, owned by this process's user, without any group or other
// permission (mode 0600 or 0400), holding the PIN and at most one final
// newline ("\n" or "\r\n"), at most MaxPIN bytes of PIN. The checks are
// made on the opened descriptor, after a no-follow open. A file that
// fails them is EPERM; an empty or overlong PIN is EINVAL.
func ReadPINFile(path string) (secret.Bytes, error) {
	if path == "" {
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "PIN file path is empty")
	}
	q := "PIN file " + strconv.Quote(path)
	b, err := privfile.Read(path, "PIN file", MaxPIN+2)
	if err != nil {
		// A missing or overlong PIN file is a configuration error here.
		if code, _ := provider.CodeOf(err); code == provider.ENOENT || code == provider.EMSGSIZE {
			return secret.Bytes{}, provider.Errorf(provider.EINVAL, "bad PIN file: %w", err)
		}
		return secret.Bytes{}, err
	}
	pin := b
	if bytes.HasSuffix(pin, []byte("\r\n")) {
		pin = pin[:len(pin)-2]
	} else if bytes.HasSuffix(pin, []byte("\n")) {
		pin = pin[:len(pin)-1]
	}
	switch {
	case len(pin) == 0:
		clear(b)
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "%s holds no PIN", q)
	case len(pin) > MaxPIN:
		clear(b)
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "%s holds a PIN longer than %d bytes", q, MaxPIN)
	}
	return secret.Own(pin), nil
}

package storage

import (
	"io/fs"

	"github.com/nexus-os/keystored/core/provider"
)

// ioErr is the EIO error of operation op on name: "op name: what: cause".
func ioErr(op, name, what string, cause error) error {
	msg := op + " " + name
	if what != "" {
		msg += ": " + what
	}
	if cause == nil {
		return provider.Errorf(provider.EIO, "%s", msg)
	}
	return provider.Errorf(provider.EIO, "%s: %w", msg, cause)
}

// notFound is the ENOENT error of operation op on name.
func notFound(op, name string, cause error) error {
	if cause == nil {
		cause = fs.ErrNotExist
	}
	return provider.Errorf(provider.ENOENT, "%s %s: %w", op, name, cause)
}

// symlinkErr refuses a symlink found at rel while doing op on name.
func symlinkErr(op, name, rel string) error {
	return ioErr(op, name, "symlink in state directory: "+rel, nil)
}

// tooLarge refuses data of n bytes written to name.
func tooLarge(name string, n int) error {
	return provider.Errorf(provider.EMSGSIZE, "write %s: %d bytes, over the %d-byte file limit", name, n, MaxFileSize)
}

// isNotFound reports whether err carries provider.ENOENT as its code.
func isNotFound(err error) bool {
	c, ok := provider.CodeOf(err)
	return ok && c == provider.ENOENT
}

// joinRel joins a directory path ("." for the top) and a name.
func joinRel(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

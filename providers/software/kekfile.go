package software

import (
	"errors"
	"io/fs"
	"os"
	"strconv"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/internal/softkey"
)

// loadOrCreateKEKFile returns the KEK held in the file at path, creating
// the file from crypto/rand if it does not exist and create is set (ENOENT
// otherwise). An existing file is never overwritten.
func loadOrCreateKEKFile(path string, create bool) (secret.Bytes, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return readKEKFile(path)
	case !errors.Is(err, fs.ErrNotExist):
		return secret.Bytes{}, fileError("KEK file "+strconv.Quote(path), err)
	case !create:
		return secret.Bytes{}, provider.Errorf(provider.ENOENT, "KEK file %q does not exist, and creating a KEK was not allowed", path)
	}
	kek := make([]byte, softkey.KEKSize)
	if err := fill(kek); err != nil {
		return secret.Bytes{}, err
	}
	created, err := createExclusive(path, "KEK file", kek)
	if err != nil || !created {
		clear(kek)
	}
	if err != nil {
		return secret.Bytes{}, err
	}
	if !created { // another process made it first: use theirs
		return readKEKFile(path)
	}
	return secret.Own(kek), nil
}

// readKEKFile reads a KEK file: exactly 32 raw bytes, private to this user.
// A temporary copy that createExclusive left beside it (a crash between
// its link and its removal) is removed first: it is a second name of a
// KEK that nothing else would clean up.
func readKEKFile(path string) (secret.Bytes, error) {
	if err := removeLeftoverTemps(path); err != nil {
		return secret.Bytes{}, err
	}
	b, err := readPrivateFile(path, "KEK file", softkey.KEKSize)
	if err != nil {
		return secret.Bytes{}, err
	}
	if len(b) != softkey.KEKSize {
		clear(b)
		return secret.Bytes{}, provider.Errorf(provider.EIO, "KEK file %q is %d bytes; a KEK file holds exactly %d raw bytes", path, len(b), softkey.KEKSize)
	}
	return secret.Own(b), nil
}

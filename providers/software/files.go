package software

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/privfile"
)

// readPrivateFile reads the private file at path (see package privfile);
// a file larger than max is corrupt here (EIO).
func readPrivateFile(path, what string, max int) ([]byte, error) {
	b, err := privfile.Read(path, what, max)
	if code, _ := provider.CodeOf(err); code == provider.EMSGSIZE {
		return nil, provider.Errorf(provider.EIO, "corrupt %s: %w", what, err)
	}
	return b, err
}

// fileError maps an os error on the file q to a Code, naming q.
func fileError(q string, err error) error { return privfile.Error(q, err) }

// createExclusive writes data to a new file at path with mode 0600,
// atomically and durably: a temporary file in the same directory, fsync,
// a hard link to path (which never replaces an existing file), removal of
// the temporary name, fsync of the directory. It returns false, and writes
// nothing, if path already exists. Where hard links are not supported it
// falls back to rename after checking that path is still absent.
func createExclusive(path, what string, data []byte) (bool, error) {
	q := what + " " + strconv.Quote(path)
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return false, provider.Errorf(provider.EIO, "cannot create %s: %w", q, err)
	}
	name := tmp.Name()
	// fail removes the temporary file (it may hold a key) and reports err.
	fail := func(msg string, err error) (bool, error) {
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return false, provider.Errorf(provider.EIO, "%s: %w", msg, err)
	}
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail("cannot write "+q, err)
	}
	created := true
	if err := os.Link(name, path); err != nil {
		switch _, lerr := os.Lstat(path); {
		case errors.Is(err, fs.ErrExist) || lerr == nil:
			created = false // lost a race: path exists, keep it
		case !errors.Is(lerr, fs.ErrNotExist):
			return fail("cannot create "+q, lerr)
		default: // no hard links here: rename, path being still absent
			if rerr := os.Rename(name, path); rerr != nil {
				return fail("cannot create "+q, rerr)
			}
		}
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, provider.Errorf(provider.EIO, "cannot remove the temporary file %q made for %s (remove it by hand): %w", name, q, err)
	}
	if !created {
		return false, nil
	}
	if err := privfile.SyncDir(dir); err != nil {
		return false, provider.Errorf(provider.EIO, "cannot sync the directory of %s: %w", q, err)
	}
	return true, nil
}

// removeLeftoverTemps removes the temporary files createExclusive makes
// for path (".<base>.tmp-*" in its directory). Call it only when path
// exists: a temporary file is then left over from a crash (or from a
// creator that lost the race to path and removes it anyway).
func removeLeftoverTemps(path string) error {
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(path), "."+globEscape(filepath.Base(path))+".tmp-*"))
	if err != nil {
		return provider.Errorf(provider.EIO, "looking for temporary copies of %q: %w", path, err)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return provider.Errorf(provider.EIO, "cannot remove the leftover temporary copy %q of %q (remove it by hand): %w", m, path, err)
		}
	}
	return nil
}

// globEscape escapes the pattern characters of s for filepath.Glob.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

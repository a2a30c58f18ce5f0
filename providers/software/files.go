package software

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

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
	if err := syncDir(dir); err != nil {
		return false, provider.Errorf(provider.EIO, "cannot sync the directory of %s: %w", q, err)
	}
	return true, nil
}

// syncDir fsyncs a directory so that a new name in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

package software

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nexus-os/keystored/core/provider"
)

// readPrivateFile reads the small file at path, which must be a regular
// file (not a symlink) of at most max bytes, owned by this process's user
// and without any group or other permission. what names the file in
// errors ("KEK file", ...). The checks are made on the opened descriptor,
// after a no-follow open, so the file cannot be swapped between check and
// read.
func readPrivateFile(path, what string, max int) ([]byte, error) {
	q := what + " " + strconv.Quote(path)
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fileError(q, err)
	}
	if err := checkPrivate(q, fi); err != nil {
		return nil, err
	}
	f, err := openNoFollow(path)
	if err != nil {
		return nil, fileError(q, err)
	}
	b, err := readOpened(q, f, max)
	if cerr := f.Close(); err == nil && cerr != nil {
		clear(b)
		return nil, fileError(q, cerr)
	}
	return b, err
}

// readOpened checks the opened file q and reads at most max bytes of it.
func readOpened(q string, f *os.File, max int) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(q, err)
	}
	if err := checkPrivate(q, fi); err != nil {
		return nil, err
	}
	if err := checkOwner(q, fi); err != nil {
		return nil, err
	}
	if fi.Size() > int64(max) {
		return nil, provider.Errorf(provider.EIO, q+" is "+strconv.FormatInt(fi.Size(), 10)+
			" bytes, more than the "+strconv.Itoa(max)+" expected")
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		clear(b)
		return nil, fileError(q, err)
	}
	if len(b) > max {
		clear(b)
		return nil, provider.Errorf(provider.EIO, q+" grew past "+strconv.Itoa(max)+" bytes while being read")
	}
	return b, nil
}

// checkPrivate refuses a symlink, a non-regular file and any group or
// other permission bit.
func checkPrivate(q string, fi fs.FileInfo) error {
	m := fi.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		return provider.Errorf(provider.EPERM, q+" is a symlink; refusing to follow it (point the option at the real file)")
	case !m.IsRegular():
		return provider.Errorf(provider.EPERM, q+" is not a regular file (mode "+m.String()+")")
	case m.Perm()&0o077 != 0:
		return provider.Errorf(provider.EPERM, q+" has mode "+m.Perm().String()+
			"; it must not be accessible by group or others (chmod 600)")
	}
	return nil
}

// fileError maps an os error on the file q to a Code, naming q.
func fileError(q string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return provider.Wrap(provider.ENOENT, q+" does not exist", err)
	case errors.Is(err, fs.ErrPermission):
		return provider.Wrap(provider.EPERM, q+" is not accessible", err)
	}
	return provider.Wrap(provider.EIO, q+" cannot be read", err)
}

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
		return false, provider.Wrap(provider.EIO, "cannot create "+q, err)
	}
	name := tmp.Name()
	// fail removes the temporary file (it may hold a key) and reports err.
	fail := func(msg string, err error) (bool, error) {
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return false, provider.Wrap(provider.EIO, msg, err)
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
		return false, provider.Wrap(provider.EIO, "cannot remove the temporary file "+strconv.Quote(name)+
			" made for "+q+" (remove it by hand)", err)
	}
	if !created {
		return false, nil
	}
	if err := syncDir(dir); err != nil {
		return false, provider.Wrap(provider.EIO, "cannot sync the directory of "+q, err)
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

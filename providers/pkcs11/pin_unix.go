//go:build unix

package pkcs11

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/nexus-os/keystored/core/provider"
)

// readPrivateFile reads the small file at path (q names it in errors),
// which must be a regular file, not a symlink, of at most max bytes,
// owned by the effective user and without group or other permissions.
func readPrivateFile(path, q string, max int) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fileError(q, err)
	}
	if err := checkPrivate(q, fi); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
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

// readOpened checks the opened file again and reads at most max bytes.
func readOpened(q string, f *os.File, max int) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(q, err)
	}
	if err := checkPrivate(q, fi); err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, provider.Errorf(provider.EIO, q+": cannot read its owner")
	}
	if euid := os.Geteuid(); int64(st.Uid) != int64(euid) {
		return nil, provider.Errorf(provider.EPERM, q+" is owned by uid "+strconv.FormatUint(uint64(st.Uid), 10)+
			", not by this process's uid "+strconv.Itoa(euid))
	}
	if fi.Size() > int64(max) {
		return nil, provider.Errorf(provider.EINVAL, q+" is larger than "+strconv.Itoa(max)+" bytes")
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		clear(b)
		return nil, fileError(q, err)
	}
	if len(b) > max {
		clear(b)
		return nil, provider.Errorf(provider.EINVAL, q+" grew past "+strconv.Itoa(max)+" bytes while being read")
	}
	return b, nil
}

// checkPrivate refuses a symlink, a non-regular file and any group or
// other permission bit.
func checkPrivate(q string, fi fs.FileInfo) error {
	m := fi.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		return provider.Errorf(provider.EPERM, q+" is a symlink; refusing to follow it (name the real file)")
	case !m.IsRegular():
		return provider.Errorf(provider.EPERM, q+" is not a regular file (mode "+m.String()+")")
	case m.Perm()&0o077 != 0:
		return provider.Errorf(provider.EPERM, q+" has mode "+m.Perm().String()+
			"; it must not be accessible by group or others (chmod 600)")
	}
	return nil
}

// fileError maps a file system error.
func fileError(q string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return provider.Wrap(provider.EINVAL, q+" does not exist", err)
	case errors.Is(err, fs.ErrPermission):
		return provider.Wrap(provider.EPERM, q+" cannot be read", err)
	case errors.Is(err, syscall.ELOOP):
		return provider.Wrap(provider.EPERM, q+" is a symlink; refusing to follow it", err)
	}
	return provider.Wrap(provider.EIO, q, err)
}

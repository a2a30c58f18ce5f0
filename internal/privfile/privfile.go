// Package privfile reads small private files — a KEK, a token PIN, the
// parameters of a passphrase-derived KEK — refusing anything that could
// let another user read or swap them.
//
// Read opens the file without following a final symlink and checks the
// opened descriptor: a regular file, owned by the effective user, with no
// group or other permission bit, at most max bytes. Checking the descriptor
// (not the path) means the file cannot be replaced between check and read.
package privfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/nexus-os/keystored/core/provider"
)

// Read reads the private file at path; what names it in errors ("KEK
// file"). Errors: ENOENT if it does not exist; EPERM for a symlink, a
// non-regular file, group or other permissions, another owner or an
// unreadable file; EMSGSIZE if it holds more than max bytes; EIO
// otherwise. Callers map these to their own meaning (a too-large KEK file
// is corrupt; a too-large PIN file is a configuration error).
func Read(path, what string, max int) ([]byte, error) {
	q := what + " " + strconv.Quote(path)
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, Error(q, err)
	}
	if err := checkPrivate(q, fi); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, Error(q, err)
	}
	b, err := readOpened(q, f, max)
	if cerr := f.Close(); err == nil && cerr != nil {
		clear(b)
		return nil, Error(q, cerr)
	}
	return b, err
}

// readOpened checks the opened file q again and reads at most max bytes.
func readOpened(q string, f *os.File, max int) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, Error(q, err)
	}
	if err := checkPrivate(q, fi); err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, provider.Errorf(provider.EIO, "%s: cannot read its owner", q)
	}
	if euid := os.Geteuid(); int64(st.Uid) != int64(euid) {
		return nil, provider.Errorf(provider.EPERM, "%s is owned by uid %d, not by this process's uid %d", q, uint64(st.Uid), euid)
	}
	if fi.Size() > int64(max) {
		return nil, provider.Errorf(provider.EMSGSIZE, "%s is %d bytes, more than the %d expected", q, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		clear(b)
		return nil, Error(q, err)
	}
	if len(b) > max {
		clear(b)
		return nil, provider.Errorf(provider.EMSGSIZE, "%s grew past %d bytes while being read", q, max)
	}
	return b, nil
}

// checkPrivate refuses a symlink, a non-regular file and any group or
// other permission bit.
func checkPrivate(q string, fi fs.FileInfo) error {
	m := fi.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		return provider.Errorf(provider.EPERM, "%s is a symlink; refusing to follow it (name the real file)", q)
	case !m.IsRegular():
		return provider.Errorf(provider.EPERM, "%s is not a regular file (mode %s)", q, m)
	case m.Perm()&0o077 != 0:
		return provider.Errorf(provider.EPERM, "%s has mode %s; it must not be accessible by group or others (chmod 600)", q, m.Perm())
	}
	return nil
}

// Error maps an os error on the file q to a Code, naming q.
func Error(q string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return provider.Errorf(provider.ENOENT, "%s does not exist: %w", q, err)
	case errors.Is(err, syscall.ELOOP):
		return provider.Errorf(provider.EPERM, "%s is a symlink; refusing to follow it: %w", q, err)
	case errors.Is(err, fs.ErrPermission):
		return provider.Errorf(provider.EPERM, "%s is not accessible: %w", q, err)
	}
	return provider.Errorf(provider.EIO, "%s cannot be read: %w", q, err)
}

// SyncDir fsyncs the directory dir, so that a name just created, renamed
// or removed in it is durable.
func SyncDir(dir string) error {
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

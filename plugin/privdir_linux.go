//go:build linux

package plugin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// Names inside the private directory. go-plugin adds "plugin-dir*"
// directories for the sockets.
const (
	binDirName  = "bin"
	workDirName = "work"
)

// privateDir is a client's private directory (Config.PrivateDir): opened
// once without following links, and checked again — same directory, still
// the daemon's, still 0700 — before every start of the plugin.
type privateDir struct {
	path     string
	fd       int // O_RDONLY|O_DIRECTORY of path
	dev, ino uint64
	euid     uint32
}

// openPrivateDir creates the directory at path (0700; its parent must
// exist) if it is missing, opens it and checks it. It must be a directory,
// not a symbolic link, owned by the effective uid, mode 0700 (EPERM
// otherwise, naming the fix).
func openPrivateDir(path string) (*privateDir, error) {
	what := "plugin private directory " + path
	created := false
	switch err := unix.Mkdir(path, 0o700); {
	case err == nil:
		created = true
	case !errors.Is(err, unix.EEXIST):
		return nil, provider.Errorf(provider.EIO, "creating %s: %w", what, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		if errors.Is(err, unix.ELOOP) || unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil, provider.Errorf(provider.EPERM, "%s is a symbolic link; refusing to follow it", what)
		}
		if errors.Is(err, unix.ENOTDIR) {
			return nil, provider.Errorf(provider.EPERM, "%s is not a directory", what)
		}
		return nil, provider.Errorf(provider.EIO, "opening %s: %w", what, err)
	}
	d := &privateDir{path: path, fd: fd, euid: uint32(unix.Geteuid())}
	if created {
		// The umask may have removed bits from the directory we made.
		if err := unix.Fchmod(fd, 0o700); err != nil {
			_ = d.close()
			return nil, provider.Errorf(provider.EIO, "chmod %s: %w", what, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = d.close()
		return nil, provider.Errorf(provider.EIO, "stat %s: %w", what, err)
	}
	d.dev, d.ino = st.Dev, st.Ino
	if err := d.check(); err != nil {
		_ = d.close()
		return nil, err
	}
	return d, nil
}

// check verifies that path still names the directory opened, owned by
// the effective uid with mode 0700.
func (d *privateDir) check() error {
	what := "plugin private directory " + d.path
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return provider.Errorf(provider.EIO, "stat %s: %w", what, err)
	}
	if st.Uid != d.euid {
		return provider.Errorf(provider.EPERM, "%s is owned by uid %d, not by the daemon's uid %d; refusing to run a plugin from it (remove it: keystored recreates it)",
			what, uint64(st.Uid), uint64(d.euid))
	}
	if perm := st.Mode & 0o7777; perm != 0o700 {
		return provider.Errorf(provider.EPERM, "%s has mode %04o; it must be 0700, so that only the daemon's user can change what runs (chmod 0700 %s)",
			what, perm, d.path)
	}
	var now unix.Stat_t
	if err := unix.Lstat(d.path, &now); err != nil || now.Dev != d.dev || now.Ino != d.ino {
		return provider.Errorf(provider.EPERM, "%s was replaced while the daemon runs; refusing to run a plugin from it", what)
	}
	return nil
}

// close releases the directory.
func (d *privateDir) close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// entries lists the names in the directory.
func (d *privateDir) entries() ([]string, error) {
	// A second descriptor: reading moves the offset of the one we hold.
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path)
	names, err := f.Readdirnames(-1)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return names, err
}

// clear removes everything in the directory: what an earlier client left
// behind when its daemon was killed before Close (a copy, a working
// directory, sockets). It returns the names it removed. The directory was
// checked first; os.RemoveAll never follows a symbolic link.
func (d *privateDir) clear() ([]string, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	names, err := d.entries()
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "listing plugin private directory %s: %w", d.path, err)
	}
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(d.path, n)); err != nil {
			return nil, provider.Errorf(provider.EIO, "removing %s from the plugin private directory: %w", n, err)
		}
	}
	return names, nil
}

// mkdir makes the subdirectory name (0700) and returns its path.
func (d *privateDir) mkdir(name string) (string, error) {
	if err := unix.Mkdirat(d.fd, name, 0o700); err != nil {
		return "", provider.Errorf(provider.EIO, "making %s in the plugin private directory: %w", name, err)
	}
	if err := unix.Fchmodat(d.fd, name, 0o700, 0); err != nil {
		return "", provider.Errorf(provider.EIO, "chmod %s in the plugin private directory: %w", name, err)
	}
	return filepath.Join(d.path, name), nil
}

// openBinDir opens bin/ without following a link.
func (d *privateDir) openBinDir() (int, error) {
	fd, err := unix.Openat(d.fd, binDirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, provider.Errorf(provider.EPERM, "plugin private directory %s: opening %s: %w", d.path, binDirName, err)
	}
	return fd, nil
}

// copyIn copies the checked source binary src into bin/name (a new file,
// mode 0500), hashing the bytes as it writes them, and compares the hash
// with pin (EPERM naming both sums on a mismatch).
func (d *privateDir) copyIn(src *os.File, name string, pin []byte) error {
	fi, err := src.Stat()
	if err != nil {
		return provider.Errorf(provider.EIO, "plugin %s: %w", src.Name(), err)
	}
	if fi.Size() > MaxBinary {
		return provider.Errorf(provider.EINVAL, "plugin %s is over %d bytes", src.Name(), MaxBinary)
	}
	bin, err := d.openBinDir()
	if err != nil {
		return err
	}
	defer unix.Close(bin)
	fd, err := unix.Openat(bin, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o700)
	if err != nil {
		return provider.Errorf(provider.EIO, "copying plugin %s: %w", src.Name(), err)
	}
	out := os.NewFile(uintptr(fd), filepath.Join(d.path, binDirName, name))
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(src, MaxBinary+1))
	if err == nil && n > MaxBinary {
		err = errors.New("file grew over the size bound while being copied")
	}
	if err == nil {
		err = out.Chmod(0o500)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return provider.Errorf(provider.EIO, "copying plugin %s: %w", src.Name(), err)
	}
	if sum := h.Sum(nil); subtle.ConstantTimeCompare(sum, pin) != 1 {
		return provider.Errorf(provider.EPERM, "plugin %s: SHA-256 mismatch: pinned %s, the binary has %s; refusing to start it",
			src.Name(), hex.EncodeToString(pin), hex.EncodeToString(sum))
	}
	return nil
}

// openCopy opens the private copy bin/name for executing: the directory
// is checked again, the copy opened without following a link, checked (a
// regular file of the daemon's, one link, mode 0500) and hashed; the
// returned descriptor is what the process is executed from, so what runs
// is what was hashed now, whatever happens to the path afterwards.
func (d *privateDir) openCopy(name string, pin []byte) (*os.File, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	bin, err := d.openBinDir()
	if err != nil {
		return nil, err
	}
	defer unix.Close(bin)
	rel := binDirName + "/" + name
	fd, err := unix.Openat(bin, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, provider.Errorf(provider.EPERM, "the verified copy %s of the plugin cannot be opened: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.path, rel))
	fail := func(code provider.Code, format string, args ...any) (*os.File, error) {
		_ = f.Close()
		return nil, provider.Errorf(code, "the verified copy %s of the plugin: "+format+"; refusing to start it", append([]any{rel}, args...)...)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(provider.EIO, "stat: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fail(provider.EPERM, "is not a regular file")
	case st.Uid != d.euid:
		return fail(provider.EPERM, "is owned by uid %d, not %d", uint64(st.Uid), uint64(d.euid))
	case st.Nlink != 1:
		return fail(provider.EPERM, "has %s links", strconv.FormatUint(uint64(st.Nlink), 10))
	case st.Mode&0o7777 != 0o500:
		return fail(provider.EPERM, "has mode %04o, not 0500", st.Mode&0o7777)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, MaxBinary+1))
	if err != nil {
		return fail(provider.EIO, "read: %w", err)
	}
	if n > MaxBinary {
		return fail(provider.EPERM, "is over %d bytes", MaxBinary)
	}
	if sum := h.Sum(nil); subtle.ConstantTimeCompare(sum, pin) != 1 {
		return fail(provider.EPERM, "changed since it was verified: SHA-256 %s, pinned %s", hex.EncodeToString(sum), hex.EncodeToString(pin))
	}
	return f, nil
}

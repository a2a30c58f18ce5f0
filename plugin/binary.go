package plugin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nexus-os/keystored/core/provider"
)

// MaxBinary bounds the size of a plugin binary Launch will copy.
const MaxBinary = 1 << 30

// parsePin decodes a hex SHA-256 (either case) into its 32 bytes.
func parsePin(s string) ([]byte, error) {
	if len(s) != 2*sha256.Size {
		return nil, provider.Errorf(provider.EINVAL, "plugin SHA-256 must be %d hex digits, got %d characters", 2*sha256.Size, len(s))
	}
	b, err := hex.DecodeString(strings.ToLower(s))
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "plugin SHA-256 is not hex")
	}
	return b, nil
}

// copyVerified copies the binary at src into dst (a new file, mode 0500),
// hashing the bytes as it writes them, and checks the hash of the copy
// against pin. The source is opened without following a final symlink and
// must be a regular file. What is executed later is the copy, in a
// directory only this process's user can write, so the file at src can
// change after the check without effect.
func copyVerified(src string, pin []byte, dst string) error {
	in, err := openNoFollow(src)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return provider.Errorf(provider.EPERM, "plugin %s is a symbolic link; name the binary itself", src)
		}
		if errors.Is(err, os.ErrNotExist) {
			return provider.Errorf(provider.ENOENT, "plugin %s: %w", src, err)
		}
		return provider.Errorf(provider.EPERM, "opening plugin %s: %w", src, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return provider.Errorf(provider.EIO, "plugin %s: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		return provider.Errorf(provider.EINVAL, "plugin %s is not a regular file", src)
	}
	if fi.Size() > MaxBinary {
		return provider.Errorf(provider.EINVAL, "plugin %s is over %d bytes", src, MaxBinary)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return provider.Errorf(provider.EIO, "copying plugin %s: %w", src, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(in, MaxBinary+1))
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
		return provider.Errorf(provider.EIO, "copying plugin %s: %w", src, err)
	}
	sum := h.Sum(nil)
	if subtle.ConstantTimeCompare(sum, pin) != 1 {
		return provider.Errorf(provider.EPERM, "plugin %s: SHA-256 mismatch: pinned %s, the binary has %s; refusing to start it", src, hex.EncodeToString(pin), hex.EncodeToString(sum))
	}
	return nil
}

// makePrivateDirs makes the client's private directory tree: root (0700)
// holding bin/ for the verified copy and work/ for the plugin's working
// directory. go-plugin makes the socket directory inside root.
func makePrivateDirs() (root, bin, work string, err error) {
	root, err = os.MkdirTemp("", "keystored-plugin-")
	if err != nil {
		return "", "", "", provider.Errorf(provider.EIO, "making the plugin's private directory: %w", err)
	}
	bin, work = filepath.Join(root, "bin"), filepath.Join(root, "work")
	for _, d := range []string{root, bin, work} {
		if err == nil && d != root {
			err = os.Mkdir(d, 0o700)
		}
		if err == nil {
			err = os.Chmod(d, 0o700)
		}
	}
	if err != nil {
		_ = os.RemoveAll(root)
		return "", "", "", provider.Errorf(provider.EIO, "making the plugin's private directory: %w", err)
	}
	return root, bin, work, nil
}

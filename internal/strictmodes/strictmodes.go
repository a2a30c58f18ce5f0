// Package strictmodes opens files that keystored executes or trusts only
// when no other user could have put them there, as sshd's StrictModes
// does for authorized_keys: the file and every directory above it, up to
// /, must be owned by root or the effective uid and must not be writable
// by group or others, and no component may be a symbolic link.
//
// A sticky, world-writable directory such as /tmp is refused too: the
// sticky bit stops others from replacing the entries they do not own, but
// not from creating the name first (or a directory of the same name), so
// it proves nothing about who made what is below it.
//
// The walk opens each directory relative to the one above it without
// following links (openat with O_NOFOLLOW) and checks the opened
// descriptor, so the path cannot be swapped between the check and the
// open: the returned *os.File is the file that was checked.
package strictmodes

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// Problem is why a file or directory is refused, for a message; "" if it
// is fine. owner is the file's uid, perm its permission bits (with the
// sticky, setuid and setgid bits), euid the effective uid of the caller.
func Problem(owner, perm, euid uint32) string {
	switch {
	case owner != 0 && owner != euid:
		return "is owned by uid " + strconv.FormatUint(uint64(owner), 10) + ", not by root or uid " + strconv.FormatUint(uint64(euid), 10)
	case perm&0o022 != 0:
		why := "is writable by group or others (mode " + octal(perm) + ")"
		if perm&0o1000 != 0 {
			why += "; the sticky bit does not make it safe"
		}
		return why
	}
	return ""
}

func octal(perm uint32) string {
	s := strconv.FormatUint(uint64(perm&0o7777), 8)
	return strings.Repeat("0", max(0, 4-len(s))) + s
}

// refusal is the EPERM of a component at path with problem why; what
// names the file ("plugin binary").
func refusal(what, path, target, why string) error {
	return provider.Errorf(provider.EPERM,
		"%s %s: %s %s, so another user could replace the %s; refusing it (StrictModes: the file and every directory "+
			"above it must be owned by root or the daemon's user and not writable by group or others; move it to such "+
			"a directory, e.g. /usr/libexec/keystored, or fix the owner or mode)", what, path, target, why, what)
}

// clean checks that path is absolute and returns it cleaned, with its
// components below /.
func clean(what, path string) (string, []string, error) {
	if !filepath.IsAbs(path) {
		return "", nil, provider.Errorf(provider.EINVAL, "%s %q is not an absolute path", what, path)
	}
	if strings.IndexByte(path, 0) >= 0 {
		return "", nil, provider.Errorf(provider.EINVAL, "%s %q holds a NUL byte", what, path)
	}
	p := filepath.Clean(path)
	if p == "/" {
		return "", nil, provider.Errorf(provider.EINVAL, "%s %q names the root directory", what, path)
	}
	return p, strings.Split(strings.TrimPrefix(p, "/"), "/"), nil
}

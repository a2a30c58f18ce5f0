package storage

import (
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// entry is one name in a directory listed by ReadDir: a regular file or a
// directory. It is its own fs.FileInfo.
type entry struct {
	name string // one path segment
	mode fs.FileMode
	size int64
	mod  time.Time
}

func (e entry) Name() string               { return e.name }
func (e entry) IsDir() bool                { return e.mode.IsDir() }
func (e entry) Type() fs.FileMode          { return e.mode.Type() }
func (e entry) Info() (fs.FileInfo, error) { return e, nil }
func (e entry) Size() int64                { return e.size }
func (e entry) Mode() fs.FileMode          { return e.mode }
func (e entry) ModTime() time.Time         { return e.mod }
func (e entry) Sys() any                   { return nil }

// Bounds on what the adapters store.
const (
	// MaxFileSize is the largest file the adapters write or read: a
	// metadata file with many versions of a large public key stays far
	// below it.
	MaxFileSize = 4 << 20
	// MaxPathLen is the longest path, in bytes.
	MaxPathLen = 4096
	// MaxNameLen is the longest path segment, in bytes (NAME_MAX).
	MaxNameLen = 255
)

// CheckPath reports whether name is a valid storage path: slash-separated
// and relative, at most MaxPathLen bytes, each segment non-empty, at most
// MaxNameLen bytes, not "." or "..", not starting with "." (names starting
// with a dot are the adapters' own: temporary files and the lock), and
// free of NUL and backslash. The error wraps provider.ErrInvalid.
func CheckPath(name string) error {
	_, err := splitPath(name)
	return err
}

// splitPath checks name and returns its segments.
func splitPath(name string) ([]string, error) {
	if err := checkPath(name); err != nil {
		return nil, err
	}
	return strings.Split(name, "/"), nil
}

func checkPath(name string) error {
	if name == "" {
		return provider.Errorf(provider.EINVAL, "invalid storage path: empty")
	}
	if len(name) > MaxPathLen {
		return provider.Errorf(provider.EINVAL, "invalid storage path: %d bytes, over %d", len(name), MaxPathLen)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) {
			switch name[i] {
			case 0:
				return invalidPath(name, "contains NUL")
			case '\\':
				return invalidPath(name, "contains a backslash")
			case '/':
			default:
				continue
			}
		}
		seg := name[start:i]
		switch {
		case seg == "" && start == 0:
			return invalidPath(name, "absolute or empty first segment")
		case seg == "":
			return invalidPath(name, "empty segment")
		case seg == "." || seg == "..":
			return invalidPath(name, "dot segment")
		case seg[0] == '.':
			return invalidPath(name, "segment starts with a dot (reserved)")
		case len(seg) > MaxNameLen:
			return invalidPath(name, fmt.Sprintf("segment of %d bytes, over %d", len(seg), MaxNameLen))
		}
		start = i + 1
	}
	return nil
}

func invalidPath(name, why string) error {
	const show = 64 // keep messages short: a path may be 4 KiB
	if len(name) > show {
		name = name[:show] + "..."
	}
	return provider.Errorf(provider.EINVAL, "invalid storage path %q: %s", name, why)
}

// parentOf returns the directory part of a valid path, "." for a name at
// the top of the tree.
func parentOf(name string) string {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "."
	}
	return name[:i]
}

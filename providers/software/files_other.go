//go:build !unix

package software

import (
	"io/fs"
	"os"
)

// openNoFollow opens path read-only. Outside unix the symlink check is the
// Lstat made before opening.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

// checkOwner cannot check ownership outside unix; permission bits are
// still checked.
func checkOwner(string, fs.FileInfo) error { return nil }

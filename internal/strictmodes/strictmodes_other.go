//go:build !linux

package strictmodes

import (
	"os"

	"github.com/nexus-os/keystored/core/provider"
)

// Open is not implemented outside Linux: it refuses (ENOTSUP), so that
// nothing is executed or trusted unchecked.
func Open(path, what string) (*os.File, error) {
	return nil, provider.Errorf(provider.ENOTSUP, "%s %s: the StrictModes checks are implemented on Linux only", what, path)
}

// CheckDir is not implemented outside Linux (ENOTSUP).
func CheckDir(path, what string) error {
	return provider.Errorf(provider.ENOTSUP, "%s %s: the StrictModes checks are implemented on Linux only", what, path)
}

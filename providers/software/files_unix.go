//go:build unix

package software

import (
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/nexus-os/keystored/core/provider"
)

// openNoFollow opens path read-only without following a final symlink and
// without blocking on a FIFO.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// checkOwner refuses a file owned by another user than the effective one.
func checkOwner(q string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return provider.Errorf(provider.EIO, q+": cannot read its owner")
	}
	if euid := os.Geteuid(); int64(st.Uid) != int64(euid) {
		return provider.Errorf(provider.EPERM, q+" is owned by uid "+strconv.FormatUint(uint64(st.Uid), 10)+
			", not by this process's uid "+strconv.Itoa(euid))
	}
	return nil
}

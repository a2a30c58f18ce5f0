//go:build !linux

package coredump

import "errors"

// Disable is implemented on Linux only; elsewhere it fails, so that a
// caller does not run believing its memory stays out of core dumps.
func Disable() error {
	return errors.New("disabling core dumps is implemented on Linux only")
}

// Dumpable is implemented on Linux only.
func Dumpable() (bool, error) {
	return true, errors.New("the dumpable flag is implemented on Linux only")
}

//go:build !unix

package plugin

import "os"

// openNoFollow: without O_NOFOLLOW, a plain open (the copy is still what
// is hashed and executed).
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

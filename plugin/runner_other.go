//go:build !linux

package plugin

import "syscall"

// sysProcAttr: no parent-death signal outside Linux.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// execDir is where a process finds its own descriptors by number.
const execDir = "/dev/fd/"

package plugin

import "syscall"

// sysProcAttr makes the kernel kill the plugin if the daemon dies, so a
// plugin never outlives the process that verified and started it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// execDir is where a process finds its own descriptors by number.
const execDir = "/proc/self/fd/"

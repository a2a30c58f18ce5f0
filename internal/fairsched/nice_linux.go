package fairsched

import "syscall"

// setThreadNice raises the nice value of the calling thread (Linux keeps
// one per thread) by inc, to at most 19.
func setThreadNice(inc int) error {
	tid := syscall.Gettid()
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return err
	}
	// The raw system call returns 20 - nice.
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, min(19, 20-p+inc))
}

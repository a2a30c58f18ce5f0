// Package coredump keeps a process's memory out of core dumps and out of
// reach of same-uid debuggers: keystored and every provider plugin call
// Disable first thing, because their memory holds the KEK and private key
// material.
//
// Disable sets RLIMIT_CORE to 0 (soft and hard, so the process cannot
// raise it again) and, on Linux, PR_SET_DUMPABLE to 0: no core file even
// with GOTRACEBACK=crash and `ulimit -c unlimited`, no core piped to a
// handler (core_pattern "|..." ignores RLIMIT_CORE but honours the
// dumpable flag), /proc/<pid>/mem, environ and maps owned by root, and no
// ptrace attach by other processes of the same uid. The dumpable flag is
// reset by execve, so a child must call Disable itself (plugin.Serve
// does).
package coredump

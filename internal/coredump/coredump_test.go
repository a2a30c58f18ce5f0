//go:build linux

package coredump_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/internal/coredump"
)

const childEnv = "KEYSTORED_COREDUMP_TEST_CHILD"

// TestMain: as a child (childEnv set), raise RLIMIT_CORE as far as
// allowed, report, call Disable, report again, and exit.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "" {
		os.Exit(m.Run())
	}
	var lim unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_CORE, &lim)
	lim.Cur = lim.Max
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &lim)
	report := func(when string) {
		d, err := coredump.Dumpable()
		var l unix.Rlimit
		if gerr := unix.Getrlimit(unix.RLIMIT_CORE, &l); err == nil {
			err = gerr
		}
		fmt.Printf("%s dumpable=%v core=%d/%d err=%v\n", when, d, l.Cur, l.Max, err)
	}
	report("before")
	if err := coredump.Disable(); err != nil {
		fmt.Println("Disable:", err)
		os.Exit(1)
	}
	report("after")
	// The hard limit is 0 too: it cannot be raised again.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}); err == nil && os.Geteuid() != 0 {
		fmt.Println("raised RLIMIT_CORE again")
	}
	os.Exit(0)
}

// TestDisable runs Disable in a child process: it starts dumpable (the
// default after execve) and ends with the dumpable flag off and
// RLIMIT_CORE 0/0.
func TestDisable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "before dumpable=true") {
		t.Errorf("the child was not dumpable to begin with, so the test proves nothing:\n%s", got)
	}
	if !strings.Contains(got, "after dumpable=false core=0/0 err=<nil>") {
		t.Errorf("after Disable:\n%s\nwant dumpable=false core=0/0", got)
	}
	if strings.Contains(got, "raised RLIMIT_CORE again") {
		t.Errorf("an unprivileged process raised RLIMIT_CORE after Disable:\n%s", got)
	}
}

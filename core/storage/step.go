package storage

import (
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// Step names one step of a write or a removal, as seen by a Hook. The zero
// Step is invalid.
type Step uint8

// The steps, in the order a WriteFile takes them: for each missing parent
// directory StepMkdir then StepDirFsync of its parent; then
// StepCreateTemp, StepWrite, StepFsync, StepRename and StepDirFsync.
// Remove takes StepRemove then StepDirFsync.
const (
	_              Step = iota
	StepMkdir           // create a missing parent directory
	StepCreateTemp      // create the temporary file (in the temporary directory of the target's tree)
	StepWrite           // write the data to the temporary file
	StepFsync           // fsync the temporary file
	StepRename          // rename the temporary file over the target
	StepDirFsync        // fsync a directory after an entry in it changed
	StepRemove          // unlink a file (Remove, temp-file cleanup, sweep)
	stepEnd
)

var stepNames = [stepEnd]string{
	StepMkdir:      "mkdir",
	StepCreateTemp: "create-temp",
	StepWrite:      "write",
	StepFsync:      "fsync",
	StepRename:     "rename",
	StepDirFsync:   "dir-fsync",
	StepRemove:     "remove",
}

// Steps lists every valid Step in order.
func Steps() []Step {
	out := make([]Step, 0, stepEnd-1)
	for s := Step(1); s < stepEnd; s++ {
		out = append(out, s)
	}
	return out
}

// Valid reports whether s is one of the defined steps.
func (s Step) Valid() bool { return s > 0 && s < stepEnd }

// String returns the step's name, e.g. "dir-fsync".
func (s Step) String() string {
	if !s.Valid() {
		return fmt.Sprintf("Step(%d)", uint8(s))
	}
	return stepNames[s]
}

// A Hook is called before each step of a write or a removal with the step
// and the storage path it concerns: the target file for StepCreateTemp,
// StepWrite, StepFsync, StepRename and Remove's StepRemove; the directory
// for StepMkdir and StepDirFsync ("." for the top of the tree); the
// temporary file itself for the StepRemove that deletes a temporary file
// (cleanup after a failed write, sweep at OpenDir).
//
// A non-nil return makes that step fail: the adapter skips it, cleans up
// as after a real failure, and returns an error wrapping both
// provider.ErrIO and the hook's error. Because the cleanup's removal of
// the temporary file consults the hook too, a hook that fails every call
// from the k-th on abandons the write exactly where a crash would.
//
// A Hook must not call the adapter it is installed in (Memory's Snapshot
// and Corrupt are the exception).
type Hook func(step Step, path string) error

// callHook runs h (if any) before step on path and turns its refusal into
// the error a failed step returns.
func callHook(h Hook, op, name string, step Step, path string) error {
	if h == nil {
		return nil
	}
	if err := h(step, path); err != nil {
		return provider.Errorf(provider.EIO, "%s: %w", fmt.Sprintf("%s %s: %s %s", op, name, step, path), err)
	}
	return nil
}

// Package storage holds the adapters behind the keystore core's Storage
// interface: Dir, a directory on disk with atomic, durable writes and a
// no-follow walk, and Memory, an in-memory tree for unit tests.
//
// Both adapters name files by slash-separated relative paths checked by
// CheckPath, report a missing file or directory with an error wrapping
// provider.ErrNotFound, a malformed path with provider.ErrInvalid, data
// over MaxFileSize with provider.ErrTooLarge, and every other failure with
// provider.ErrIO and the path concerned.
//
// The package does not import package core, and core does not import it:
// both adapters satisfy core.Storage structurally (ReadDir lists
// fs.DirEntry values), and the daemon or a test hands one to core.Open.
//
// Fault injection: a Hook is called before every step of a write or a
// removal (StepMkdir, StepCreateTemp, StepWrite, StepFsync, StepRename,
// StepDirFsync, StepRemove) and makes that step fail when it returns an
// error, so crash tests can stop a write at any step. See
// docs/storage.md, "Storage adapters".
package storage

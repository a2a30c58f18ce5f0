package core

import "io/fs"

// Storage is where a Keystore keeps its state: a tree of small files named
// by slash-separated relative paths (the layout is in layout.go and
// docs/storage.md). The core never builds a path from unchecked input:
// every segment is a validated key ID segment or a fixed file name.
//
// Adapters: core/storage.Dir (a directory on disk) and core/storage.Memory
// (for unit tests).
//
// Errors wrap the provider package's sentinels: ErrNotFound when a file or
// directory does not exist, ErrInvalid for a malformed path, ErrTooLarge
// for data over the adapter's bound (core/storage.MaxFileSize), ErrUnavailable when the directory is locked by
// another process, ErrIO for anything else (with the path).
type Storage interface {
	// ReadFile returns the whole content of the file at name. It refuses
	// (ErrIO) files over the adapter's size bound, symlinks, hard-linked files and
	// files with group or world permissions.
	ReadFile(name string) ([]byte, error)

	// WriteFile replaces the file at name with data, atomically and
	// durably: when it returns nil the new content survives a crash, and a
	// crash at any point leaves either the old or the new content. Missing
	// parent directories are created (0700) durably.
	WriteFile(name string, data []byte) error

	// PrepareWrite is WriteFile in two parts: it does now what stays
	// invisible at name (missing parent directories made durably, the
	// data written durably somewhere name does not show), and returns
	// commit, which makes the data name's content (atomically; durable
	// when it returns nil, as after WriteFile), and abort, which drops
	// it (name keeps its old content). The caller calls one of them
	// once; a later call of either does nothing. A crash before commit
	// leaves name as it was. The keystore prepares a change's metadata
	// while the audit log makes the change's intent record durable, and
	// commits it only after (Keystore.change). A transactional backend
	// may do nothing in PrepareWrite and the whole write in commit.
	PrepareWrite(name string, data []byte) (commit func() error, abort func() error, err error)

	// Remove deletes the file at name durably. A missing file is not an
	// error.
	Remove(name string) error

	// ReadDir lists the regular files and directories in the directory at
	// name, sorted by name, without temporary files. ErrNotFound if the
	// directory does not exist.
	ReadDir(name string) ([]fs.DirEntry, error)
}

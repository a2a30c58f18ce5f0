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

	// Remove deletes the file at name durably. A missing file is not an
	// error.
	Remove(name string) error

	// ReadDir lists the regular files and directories in the directory at
	// name, sorted by name, without temporary files. ErrNotFound if the
	// directory does not exist.
	ReadDir(name string) ([]fs.DirEntry, error)
}

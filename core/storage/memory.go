package storage

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
)

// Memory is an in-memory Storage for unit tests. It checks paths, sizes
// and types as Dir does, keeps directories once created (as Dir does), and
// copies data in and out, so callers never alias its buffers. A Hook set
// with SetHook sees the same steps as Dir's, in the same order, and can
// make any of them fail. It is safe for concurrent use.
//
// Memory has no notion of durability: a step that has run is permanent.
type Memory struct {
	mu    sync.Mutex
	files map[string][]byte
	dirs  map[string]bool
	fresh map[string]bool // directories made whose parent's fsync has not ended well
	hook  Hook
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{files: make(map[string][]byte), dirs: make(map[string]bool), fresh: make(map[string]bool)}
}

// SetHook installs h (nil removes it). The hook is called without the
// Memory's lock held, so it may call Snapshot or Corrupt.
func (m *Memory) SetHook(h Hook) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hook = h
}

// step runs the hook, if any, before step on path.
func (m *Memory) step(op, name string, s Step, path string) error {
	m.mu.Lock()
	h := m.hook
	m.mu.Unlock()
	return callHook(h, op, name, s, path)
}

// kind reports what is at path: 'f' file, 'd' directory, 0 nothing.
// The caller holds m.mu.
func (m *Memory) kind(path string) byte {
	if _, ok := m.files[path]; ok {
		return 'f'
	}
	if m.dirs[path] {
		return 'd'
	}
	return 0
}

// checkParents returns an error if a parent of name is a file, and
// notFound if one is missing. The caller holds m.mu.
func (m *Memory) checkParents(op, name string, segs []string) error {
	for i := 1; i < len(segs); i++ {
		dir := strings.Join(segs[:i], "/")
		switch m.kind(dir) {
		case 'f':
			return ioErr(op, name, dir+" is not a directory", nil)
		case 0:
			return notFound(op, name, nil)
		}
	}
	return nil
}

// lockNode checks name, locks m and checks that what is at name is a
// file (want 'f') or a directory (want 'd'). On success the caller
// unlocks m.
func (m *Memory) lockNode(op, name string, want byte) error {
	segs, err := splitPath(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	err = m.checkParents(op, name, segs)
	if err == nil {
		switch m.kind(name) {
		case want:
		case 0:
			err = notFound(op, name, nil)
		case 'd':
			err = ioErr(op, name, "not a regular file (directory)", nil)
		default:
			err = ioErr(op, name, name+" is not a directory", nil)
		}
	}
	if err != nil {
		m.mu.Unlock()
	}
	return err
}

// ReadFile returns a copy of the file at name.
func (m *Memory) ReadFile(name string) ([]byte, error) {
	const op = "read"
	if err := m.lockNode(op, name, 'f'); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	data := m.files[name]
	if len(data) > MaxFileSize {
		return nil, ioErr(op, name, fmt.Sprintf("file of %d bytes, over the %d-byte limit", len(data), MaxFileSize), nil)
	}
	return append(make([]byte, 0, len(data)), data...), nil
}

// WriteFile stores a copy of data at name, creating missing parent
// directories. It calls the hook for the same steps as Dir.WriteFile;
// the content changes at StepRename.
func (m *Memory) WriteFile(name string, data []byte) error {
	commit, _, err := m.PrepareWrite(name, data)
	if err != nil {
		return err
	}
	return commit()
}

// PrepareWrite is Dir.PrepareWrite: the parent directories are made and
// the hook sees StepCreateTemp, StepWrite and StepFsync now; commit takes
// StepRename (where the content changes) and StepDirFsync; abort drops
// the data. Memory keeps no temporary files, so abort calls no hook.
func (m *Memory) PrepareWrite(name string, data []byte) (commit func() error, abort func() error, err error) {
	const op = "write"
	segs, err := splitPath(name)
	if err != nil {
		return nil, nil, err
	}
	if len(data) > MaxFileSize {
		return nil, nil, tooLarge(name, len(data))
	}
	buf := append(make([]byte, 0, len(data)), data...)
	for i := 1; i < len(segs); i++ {
		dir := strings.Join(segs[:i], "/")
		m.mu.Lock()
		k := m.kind(dir)
		m.mu.Unlock()
		switch k {
		case 'f':
			return nil, nil, ioErr(op, name, dir+" is not a directory", nil)
		case 'd':
			// Made by a concurrent write whose parent fsync has not
			// ended well (fresh): this write fsyncs the parent too, as
			// Dir does, before it is acknowledged.
			m.mu.Lock()
			fresh := m.fresh[dir]
			m.mu.Unlock()
			if fresh {
				if err := m.syncParent(op, name, dir); err != nil {
					return nil, nil, err
				}
			}
			continue
		}
		if err := m.step(op, name, StepMkdir, dir); err != nil {
			return nil, nil, err
		}
		m.mu.Lock()
		k = m.kind(dir)
		if k == 0 {
			m.dirs[dir] = true
			m.fresh[dir] = true
		}
		m.mu.Unlock()
		if k == 'f' {
			return nil, nil, ioErr(op, name, dir+" is not a directory", nil)
		}
		if err := m.syncParent(op, name, dir); err != nil {
			return nil, nil, err
		}
	}
	m.mu.Lock()
	k := m.kind(name)
	m.mu.Unlock()
	if k == 'd' {
		return nil, nil, ioErr(op, name, "not a regular file (directory)", nil)
	}
	for _, s := range []Step{StepCreateTemp, StepWrite, StepFsync} {
		if err := m.step(op, name, s, name); err != nil {
			return nil, nil, err
		}
	}
	var once sync.Mutex
	done := false
	finish := func() bool {
		once.Lock()
		defer once.Unlock()
		was := done
		done = true
		return was
	}
	commit = func() error {
		if finish() {
			return nil
		}
		if err := m.step(op, name, StepRename, name); err != nil {
			return err
		}
		m.mu.Lock()
		err := m.checkParents(op, name, segs)
		if err == nil && m.kind(name) == 'd' {
			err = ioErr(op, name, "not a regular file (directory)", nil)
		}
		if err == nil {
			m.files[name] = buf
		}
		m.mu.Unlock()
		if err != nil {
			return err
		}
		return m.step(op, name, StepDirFsync, parentOf(name))
	}
	abort = func() error {
		finish()
		return nil
	}
	return commit, abort, nil
}

// syncParent takes StepDirFsync of dir's parent; once it succeeds, dir's
// entry is durable (no longer fresh).
func (m *Memory) syncParent(op, name, dir string) error {
	if err := m.step(op, name, StepDirFsync, parentOf(dir)); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.fresh, dir)
	m.mu.Unlock()
	return nil
}

// Remove deletes the file at name; a missing file or directory is not an
// error. It calls the hook for StepRemove and StepDirFsync, as Dir does.
func (m *Memory) Remove(name string) error {
	const op = "remove"
	segs, err := splitPath(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	err = m.checkParents(op, name, segs)
	m.mu.Unlock()
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.step(op, name, StepRemove, name); err != nil {
		return err
	}
	m.mu.Lock()
	if m.kind(name) == 'd' {
		err = ioErr(op, name, "is a directory", nil)
	}
	delete(m.files, name)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.step(op, name, StepDirFsync, parentOf(name))
}

// ReadDir lists the directory at name, sorted by name.
func (m *Memory) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := m.lockNode("readdir", name, 'd'); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	prefix := name + "/"
	var out []fs.DirEntry
	add := func(p string, e entry) {
		if rest, ok := strings.CutPrefix(p, prefix); ok && !strings.Contains(rest, "/") {
			e.name = rest
			out = append(out, e)
		}
	}
	for p, data := range m.files {
		add(p, entry{mode: 0o600, size: int64(len(data))})
	}
	for p := range m.dirs {
		add(p, entry{mode: fs.ModeDir | 0o700})
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// Snapshot returns a copy of every file, keyed by path.
func (m *Memory) Snapshot() map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.files))
	for p, data := range m.files {
		out[p] = append(make([]byte, 0, len(data)), data...)
	}
	return out
}

// Corrupt replaces the file at name with f applied to a copy of its
// content, bypassing the hook and the size limit (a file over
// MaxFileSize then fails ReadFile with ErrIO), to simulate tampering or
// bit rot. A missing file is ErrNotFound. f runs without the lock held.
func (m *Memory) Corrupt(name string, f func([]byte) []byte) error {
	const op = "corrupt"
	if err := CheckPath(name); err != nil {
		return err
	}
	if f == nil {
		return provider.Errorf(provider.EINVAL, "corrupt %s: nil function", name)
	}
	m.mu.Lock()
	data, ok := m.files[name]
	if ok {
		data = append(make([]byte, 0, len(data)), data...)
	}
	m.mu.Unlock()
	if !ok {
		return notFound(op, name, nil)
	}
	out := f(data)
	out = append(make([]byte, 0, len(out)), out...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; !ok {
		return notFound(op, name, nil)
	}
	m.files[name] = out
	return nil
}

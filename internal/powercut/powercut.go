// Package powercut simulates a power cut for tests: it keeps, of what a
// storage.Memory and an audit.Log were asked to write, only what was made
// durable, and builds the image a machine would find when the power comes
// back.
//
// The storage model follows the documented semantics of the storage
// fault hook's steps (docs/storage.md, "Fault injection"), not the order
// in which a particular write takes them, so it keeps working when the
// core's write order changes:
//
//   - the data written to a temporary file (StepCreateTemp, StepWrite) is
//     durable once StepFsync of that target ran after it;
//   - a rename over a target (StepRename) and a removal (StepRemove) are
//     durable once StepDirFsync of the target's directory ran after them:
//     the entry then names the content renamed last, which survives if its
//     data was fsynced before the rename, and is an empty file otherwise
//     (what a file system may leave of data never fsynced);
//   - a new directory (StepMkdir) is durable once its parent directory was
//     fsynced after it; what a directory holds survives only if the
//     directory itself does, up to the top of the tree.
//
// The audit model keeps the records through the last seq the Log reported
// durable (audit.WithDurableObserver) and drops every later one, even if
// its bytes reached the file: the worst a power cut can do.
//
// A Machine counts durability events (every storage step and every
// durable report of the log) and can cut the power just before event k
// (CutAt): from then on every storage step fails with ErrPowerCut and
// nothing more becomes durable, while the processes above go on running
// as a machine losing power would not — their replies after the cut are
// not acknowledgements, which Cut tells a caller.
//
// The model's limits: a temporary file is known by its target path, so
// two writes of the same target racing each other (which the core's key
// lock never allows) are tracked as one; the file system is assumed to
// keep the order of a file's data and a later rename (no reordering of a
// directory entry before the data it names once that data was fsynced).
package powercut

import (
	"errors"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/nexus-os/keystored/core/storage"
)

// ErrPowerCut is the error every storage step fails with once the power
// is cut.
var ErrPowerCut = errors.New("power cut")

// Machine is a simulated machine: one storage.Memory (Storage) and the
// durable seq of one audit log (DurableObserver). It is safe for
// concurrent use.
type Machine struct {
	mem *storage.Memory

	mu     sync.Mutex
	events int  // durability events seen
	cutAt  int  // cut just before this event; 0: never
	cut    bool // the power is off
	// Storage model.
	tempSynced    map[string]bool   // target -> its last temporary file was fsynced
	renamedSynced map[string]bool   // target -> what was renamed over it last was fsynced
	dirs          map[string]bool   // directories made (visible)
	durDirs       map[string]bool   // directories whose entry in their parent is durable
	durFiles      map[string][]byte // file -> the content its durable entry names
	// Audit model.
	auditSeq uint64 // every record through it is durable
	// The image at the cut.
	imgFiles map[string][]byte
	imgDirs  []string
	imgSeq   uint64
}

// New returns a Machine on a fresh storage.Memory, whose hook it owns.
func New() *Machine {
	m := &Machine{
		mem:           storage.NewMemory(),
		tempSynced:    map[string]bool{},
		renamedSynced: map[string]bool{},
		dirs:          map[string]bool{".": true},
		durDirs:       map[string]bool{".": true},
		durFiles:      map[string][]byte{},
	}
	m.mem.SetHook(m.hook)
	return m
}

// Storage returns the Memory whose writes the Machine tracks. It
// satisfies core.Storage.
func (m *Machine) Storage() *storage.Memory { return m.mem }

// CutAt makes the power go off just before durability event k (k >= 1;
// 0: never). Events already seen are not undone: a k at or below Events
// cuts at the next event.
func (m *Machine) CutAt(k int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cutAt = k
}

// Events returns the number of durability events seen so far.
func (m *Machine) Events() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.events
}

// Cut reports whether the power is off. A reply a client received while
// Cut was false was sent before the cut: everything the request made
// durable is in the image.
func (m *Machine) Cut() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cut
}

// CutNow cuts the power now (if it is still on).
func (m *Machine) CutNow() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cutLocked()
}

// cutLocked freezes the durable image. m.mu is held.
func (m *Machine) cutLocked() {
	if m.cut {
		return
	}
	m.cut = true
	m.imgFiles, m.imgDirs = m.durableLocked()
	m.imgSeq = m.auditSeq
}

// event counts one durability event and reports whether it may happen
// (false: the power is, or just went, off). m.mu is held.
func (m *Machine) event() bool {
	if m.cut {
		return false
	}
	m.events++
	if m.cutAt > 0 && m.events >= m.cutAt {
		m.cutLocked()
		return false
	}
	return true
}

// hook is the Memory's storage.Hook: the storage model.
func (m *Machine) hook(step storage.Step, p string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.event() {
		return ErrPowerCut
	}
	var snap map[string][]byte
	if step == storage.StepDirFsync {
		// Taken under m.mu (the Memory allows Snapshot from its hook,
		// and never calls the hook with its own lock held), so the
		// fsyncs of one directory apply their views in the order they
		// were taken: a view taken before a concurrent rename and
		// applied after that rename's own fsync would drop the renamed
		// file as removed.
		snap = m.mem.Snapshot()
	}
	switch step {
	case storage.StepCreateTemp, storage.StepWrite:
		m.tempSynced[p] = false
	case storage.StepFsync:
		m.tempSynced[p] = true
	case storage.StepRename:
		m.renamedSynced[p] = m.tempSynced[p]
		delete(m.tempSynced, p)
	case storage.StepMkdir:
		m.dirs[p] = true
	case storage.StepDirFsync:
		m.dirFsyncLocked(p, snap)
	case storage.StepRemove:
		// Durable at the directory's next fsync (the snapshot then
		// lacks the file). A temporary file's removal changes nothing
		// the model tracks.
	}
	return nil
}

// parent returns the directory holding p ("." for the top).
func parent(p string) string {
	d := path.Dir(p)
	if d == "" {
		return "."
	}
	return d
}

// dirFsyncLocked makes dir's entries durable as snap shows them. m.mu is
// held.
func (m *Machine) dirFsyncLocked(dir string, snap map[string][]byte) {
	for f := range m.durFiles {
		if parent(f) == dir {
			if _, ok := snap[f]; !ok {
				delete(m.durFiles, f) // removed
			}
		}
	}
	for f, data := range snap {
		if parent(f) != dir {
			continue
		}
		if m.renamedSynced[f] {
			m.durFiles[f] = data
		} else {
			m.durFiles[f] = []byte{} // renamed before its data was durable
		}
	}
	for d := range m.dirs {
		if d != "." && parent(d) == dir {
			m.durDirs[d] = true
		}
	}
}

// reachable reports whether every directory above p (p excluded) has a
// durable entry. m.mu is held.
func (m *Machine) reachable(p string) bool {
	for d := parent(p); d != "."; d = parent(d) {
		if !m.durDirs[d] {
			return false
		}
	}
	return true
}

// durableLocked returns the files and directories a restart would find
// now. m.mu is held.
func (m *Machine) durableLocked() (map[string][]byte, []string) {
	files := map[string][]byte{}
	for f, data := range m.durFiles {
		if m.reachable(f) {
			files[f] = slices.Clone(data)
		}
	}
	var dirs []string
	for d := range m.durDirs {
		if d != "." && m.reachable(d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return files, dirs
}

// Event counts one durability event of another device (an external
// counter's increment, say): nil if the power is on and the event's effect
// is durable, ErrPowerCut if the power is (or just went) off and the
// event must not take effect.
func (m *Machine) Event() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.event() {
		return ErrPowerCut
	}
	return nil
}

// DurableObserver is the audit.WithDurableObserver callback of the log
// the Machine tracks.
func (m *Machine) DurableObserver(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.event() {
		return
	}
	m.auditSeq = max(m.auditSeq, seq)
}

// Image returns what a restart finds: the durable files (keyed by
// storage path), the durable directories, and the last audit seq known
// durable. Before the cut it is the image of a cut now (without cutting).
func (m *Machine) Image() (files map[string][]byte, dirs []string, auditSeq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cut {
		return maps.Clone(m.imgFiles), slices.Clone(m.imgDirs), m.imgSeq
	}
	f, d := m.durableLocked()
	return f, d, m.auditSeq
}

// Reboot returns a new Machine, power on, whose storage holds m's image,
// all of it durable: the machine after the power came back, ready to be
// cut again.
func (m *Machine) Reboot() (*Machine, error) {
	mem, err := m.Restore()
	if err != nil {
		return nil, err
	}
	files, dirs, _ := m.Image()
	n := New()
	n.mem.SetHook(nil)
	n.mem = mem
	for f, data := range files {
		n.durFiles[f] = data
		n.renamedSynced[f] = true
	}
	for _, d := range dirs {
		n.dirs[d], n.durDirs[d] = true, true
	}
	mem.SetHook(n.hook)
	return n, nil
}

// placeholder names the file Restore writes and removes to make an empty
// directory.
const placeholder = "powercut-empty-dir"

// Restore returns a fresh storage.Memory (no hook) holding the image:
// what the state's storage looks like when the power comes back.
func (m *Machine) Restore() (*storage.Memory, error) {
	files, dirs, _ := m.Image()
	mem := storage.NewMemory()
	for _, d := range dirs {
		// Memory keeps the directories a write made.
		p := d + "/" + placeholder
		if err := mem.WriteFile(p, nil); err != nil {
			return nil, err
		}
		if err := mem.Remove(p); err != nil {
			return nil, err
		}
	}
	names := slices.Sorted(maps.Keys(files))
	for _, f := range names {
		if strings.HasSuffix(f, "/"+placeholder) {
			continue
		}
		if err := mem.WriteFile(f, files[f]); err != nil {
			return nil, err
		}
	}
	return mem, nil
}

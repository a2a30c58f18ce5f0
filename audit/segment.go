package audit

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// Segments (docs/audit.md, "Segments"). The log at <dir>/<stem><ext>
// (audit/audit.jsonl) is its current segment. When a write would make it
// larger than the segment size, the Log seals it: it fsyncs it, renames it
// to <stem>-<first seq, 20 digits><ext> (audit-00000000000000000001.jsonl)
// and starts a new, empty current file. The chain goes on across the
// files: the first record of a segment has the next Seq and, as Prev, the
// Hash of the last record of the segment before it. A log that predates
// segments is a current file whose first record has seq 1.

// OpSegmentPruned is the Op of the record a Log appends before it removes
// a sealed segment to keep at most WithMaxSegments files. Its Key is the
// file's name, its Detail "through SEQ:HASH", the last record the file
// held: a verifier that finds no segment before that seq knows the daemon
// removed them.
const OpSegmentPruned = "audit.segment-pruned"

// pruneDetailPrefix starts the Detail of an OpSegmentPruned record.
const pruneDetailPrefix = "through "

// DefaultSegmentSize is the segment size of a Log opened without
// WithSegmentSize. A start verifies the current segment, so this bounds
// the start's audit work whatever the log's length (16 MiB: about 0.1–0.4 s).
const DefaultSegmentSize = 16 << 20

// Bounds of WithSegmentSize and WithMaxSegments.
const (
	MinSegmentSize = 4 << 10
	MaxSegmentSize = 1 << 40
	MinMaxSegments = 2
	MaxMaxSegments = 1 << 20
)

// seqDigits is the width of the first seq in a sealed segment's name: a
// uint64 in decimal, zero-padded, so that names sort as numbers do.
const seqDigits = 20

// segment is one sealed segment: its file name and the Seq of its first
// record, from the name.
type segment struct {
	name  string
	first uint64
}

// splitBase splits a log file name into stem and extension
// ("audit.jsonl" → "audit", ".jsonl").
func splitBase(base string) (stem, ext string) {
	ext = filepath.Ext(base)
	if ext == base {
		ext = "" // ".jsonl" alone is a stem
	}
	return strings.TrimSuffix(base, ext), ext
}

// sealedName returns the file name of the sealed segment of the log base
// whose first record has Seq first.
func sealedName(base string, first uint64) string {
	stem, ext := splitBase(base)
	n := strconv.FormatUint(first, 10)
	return stem + "-" + strings.Repeat("0", seqDigits-len(n)) + n + ext
}

// parseSealed returns the first Seq a sealed segment's name carries, and
// whether name is one of base's sealed segments.
func parseSealed(base, name string) (uint64, bool) {
	stem, ext := splitBase(base)
	digits, ok := strings.CutPrefix(name, stem+"-")
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, ext); !ok || len(digits) != seqDigits || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

// sealedIn returns base's sealed segments among names, oldest first.
func sealedIn(base string, names []string) []segment {
	var out []segment
	for _, name := range names {
		if first, ok := parseSealed(base, name); ok {
			out = append(out, segment{name: name, first: first})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first < out[j].first })
	return out
}

// listSealed lists base's sealed segments in the directory dfd.
func listSealed(dfd int, dir, base string) ([]segment, error) {
	fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "list audit directory %s: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir)
	names, err := d.Readdirnames(-1)
	if cerr := d.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "list audit directory %s: %w", dir, err)
	}
	return sealedIn(base, names), nil
}

// openSealed opens a sealed segment for reading. It must be a regular
// file of this user without group or other permissions (0600, or 0400 if
// an operator made it read-only); other hard links are allowed (an archive
// may link it), as nothing writes to it any more.
func openSealed(dfd int, dir, name string) (*os.File, int64, error) {
	what := "audit segment " + filepath.Join(dir, name)
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, 0, provider.Errorf(provider.EIO, "%s is a symlink", what)
		}
		return nil, 0, provider.Errorf(provider.EIO, "open %s: %w", what, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		closeFD(fd)
		return nil, 0, provider.Errorf(provider.EIO, "stat %s: %w", what, err)
	}
	euid := unix.Geteuid()
	var problem error
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		problem = provider.Errorf(provider.EIO, "%s is not a regular file", what)
	case int(st.Uid) != euid:
		problem = provider.Errorf(provider.EIO, "%s is owned by uid %d, not by this process (uid %d)", what, st.Uid, euid)
	case st.Mode&0o077 != 0:
		problem = provider.Errorf(provider.EIO, "%s has mode %04o: readable or writable by group or others", what, st.Mode&0o7777)
	}
	if problem != nil {
		closeFD(fd)
		return nil, 0, problem
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, name)), st.Size, nil
}

// lastRecord reads the last record of a sealed segment of size bytes
// without reading the rest: the file must end with a complete line whose
// record is canonical and whose Hash matches it. (That it chains to the
// records before it is what VerifyLog checks, not Open.)
func lastRecord(f io.ReaderAt, size int64) (Record, error) {
	n := min(size, MaxLine+2) // the last line, its newline and the one before
	if n == 0 {
		return Record{}, errors.New("the segment is empty")
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return Record{}, err
	}
	if buf[n-1] != '\n' {
		return Record{}, errors.New("the segment does not end with a newline")
	}
	line := buf[:n-1]
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	} else if n < size {
		return Record{}, errors.New("the last line is longer than " + strconv.Itoa(MaxLine) + " bytes")
	}
	return selfChecked(line)
}

// firstRecord reads the first record of a sealed segment (see lastRecord).
func firstRecord(f io.ReaderAt, size int64) (Record, error) {
	buf := make([]byte, min(size, MaxLine+1))
	if _, err := f.ReadAt(buf, 0); err != nil {
		return Record{}, err
	}
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return Record{}, errors.New("the first line is not complete")
	}
	return selfChecked(buf[:i])
}

// selfChecked parses a line and checks its Hash against its contents.
func selfChecked(line []byte) (Record, error) {
	rec, _, reason := parseRecord(line, nil)
	if reason != "" {
		return Record{}, errors.New("malformed record: " + reason)
	}
	var want [hashLen]byte
	hex.Encode(want[:], newHasher().chain(line[:len(line)-hashLen-len(bodyEnd)]))
	if subtle.ConstantTimeCompare(want[:], []byte(rec.Hash)) != 1 {
		return Record{}, errors.New("hash does not match the record")
	}
	return rec, nil
}

// sealedEnd returns the Seq and Hash of the last record of the sealed
// segment s (for Open: where the current file's chain starts).
func sealedEnd(dfd int, dir string, s segment) (Checkpoint, error) {
	f, size, err := openSealed(dfd, dir, s.name)
	if err != nil {
		return Checkpoint{}, err
	}
	rec, err := lastRecord(f, size)
	cerr := f.Close()
	if err != nil {
		return Checkpoint{}, provider.Errorf(provider.EIO, "audit segment %s: %v; refusing to continue its chain", filepath.Join(dir, s.name), err)
	}
	if cerr != nil {
		return Checkpoint{}, provider.Errorf(provider.EIO, "close audit segment %s: %w", filepath.Join(dir, s.name), cerr)
	}
	if rec.Seq < s.first {
		return Checkpoint{}, provider.Errorf(provider.EIO, "audit segment %s ends at seq %d, before the seq its name says it starts at; refusing to continue its chain", filepath.Join(dir, s.name), rec.Seq)
	}
	return Checkpoint{Seq: rec.Seq, Hash: rec.Hash}, nil
}

// sealedStart returns the Prev of the first record of the sealed segment
// s (the Hash of the record before it), checking that its Seq is the one
// the name says.
func sealedStart(dfd int, dir string, s segment) (string, error) {
	f, size, err := openSealed(dfd, dir, s.name)
	if err != nil {
		return "", err
	}
	rec, err := firstRecord(f, size)
	cerr := f.Close()
	switch {
	case err != nil:
		return "", provider.Errorf(provider.EIO, "audit segment %s: %v", filepath.Join(dir, s.name), err)
	case cerr != nil:
		return "", provider.Errorf(provider.EIO, "close audit segment %s: %w", filepath.Join(dir, s.name), cerr)
	case rec.Seq != s.first:
		return "", provider.Errorf(provider.EIO, "audit segment %s starts with seq %d, not the seq in its name", filepath.Join(dir, s.name), rec.Seq)
	}
	return rec.Prev, nil
}

// renameNoReplace renames old to new in the directory dfd, failing if new
// exists. Filesystems without RENAME_NOREPLACE get a check, then a plain
// rename: the directory is the locked Log's own.
func renameNoReplace(dfd int, old, new string) error {
	err := unix.Renameat2(dfd, old, dfd, new, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	var st unix.Stat_t
	switch err := unix.Fstatat(dfd, new, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		return unix.EEXIST
	case !errors.Is(err, unix.ENOENT):
		return err
	}
	return unix.Renameat(dfd, old, dfd, new)
}

// VerifyLog verifies the whole log whose current file is path: every
// sealed segment beside it, oldest first, then the current file, as one
// chain (see Verify for the checks of each record). It also checks that
// each sealed segment starts with the seq its name says, and reports
// segments missing in the middle, and records missing at the start that
// no OpSegmentPruned record accounts for. Errors are *VerifyError with
// File set to the segment; ENOENT if there is neither a current file nor
// a sealed segment. It reads each file once, streaming.
func VerifyLog(path string, checkpoints ...Checkpoint) (VerifyResult, error) {
	return WalkLog(path, Checkpoint{}, nil, checkpoints...)
}

// WalkLog verifies a log as VerifyLog does and calls fn, if not nil, with
// each record that verified, in order; it stops at the first bad record or
// the first error from fn, which it returns as is.
//
// start, if its Hash is set, says where the log may begin: the segments
// holding records up to start.Seq were moved elsewhere, and the first
// record present must then be start.Seq+1 with Prev start.Hash (the last
// seq and hash that verifying the moved segments printed). With a zero
// start a log must begin at seq 1, or after a removal its own
// OpSegmentPruned record accounts for.
func WalkLog(path string, start Checkpoint, fn func(Record) error, checkpoints ...Checkpoint) (VerifyResult, error) {
	cps, err := checkpointSet(checkpoints)
	if err != nil {
		return VerifyResult{}, err
	}
	var visit func(Record, string, int) error
	if fn != nil {
		visit = func(r Record, _ string, _ int) error { return fn(r) }
	}
	return walkLog(path, start, cps, visit, 0)
}

// WalkLogFrom is WalkLog from the segment that holds record from on: the
// sealed segments before it are not read (a start of the daemon reads the
// tail after its audit index's head, not the whole history). The first
// record read is taken as the start of the chain; the caller checks that
// the record at from is the one it expects (its hash), which ties the
// rest to what it saw. With from 0 it is WalkLog with a zero start.
func WalkLogFrom(path string, from uint64, fn func(Record) error) (VerifyResult, error) {
	var visit func(Record, string, int) error
	if fn != nil {
		visit = func(r Record, _ string, _ int) error { return fn(r) }
	}
	cps, err := checkpointSet(nil)
	if err != nil {
		return VerifyResult{}, err
	}
	return walkLog(path, Checkpoint{}, cps, visit, from)
}

// walkLog is WalkLog with the checkpoints checked and fn told the file
// and line of each record.
//
// With from > 0 the sealed segments wholly before record from are
// skipped, and the first record read is trusted as the chain's start.
func walkLog(path string, start Checkpoint, cps *checkpoints, fn func(r Record, file string, line int) error, from uint64) (VerifyResult, error) {
	dir, base, err := splitPath(path)
	if err != nil {
		return VerifyResult{}, err
	}
	if start.Hash != "" {
		if err := start.check(); err != nil {
			return VerifyResult{}, err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return VerifyResult{}, provider.Errorf(provider.ENOENT, "audit log %s: %w", path, err)
		}
		return VerifyResult{}, provider.Errorf(provider.EIO, "list audit directory %s: %w", dir, err)
	}
	names := make([]string, 0, len(entries))
	current := false
	for _, e := range entries {
		names = append(names, e.Name())
		current = current || e.Name() == base
	}
	type file struct {
		path  string
		first uint64 // from the name; 0 for the current file
	}
	var files []file
	for _, s := range sealedIn(base, names) {
		files = append(files, file{filepath.Join(dir, s.name), s.first})
	}
	if current {
		files = append(files, file{filepath.Join(dir, base), 0})
	}
	if len(files) == 0 {
		return VerifyResult{}, provider.Errorf(provider.ENOENT, "audit log %s: no current file and no sealed segment", path)
	}
	skipped := false
	if from > 0 {
		// Keep the segment holding from: drop one while the next sealed
		// segment still starts at or before it.
		for len(files) > 1 && files[1].first != 0 && files[1].first <= from {
			files = files[1:]
			skipped = true
		}
	}

	var res VerifyResult
	res.LastHash = Genesis
	// need is set when the first record present is not seq 1: something
	// must account for the records before it.
	var need *Checkpoint
	accounted := false
	var cur *walker
	var curPath string
	visit := func(r Record) error {
		if need == nil && res.Records == 0 && r.Seq > 1 {
			need = &Checkpoint{Seq: r.Seq - 1, Hash: r.Prev}
			if skipped {
				accounted = true // WalkLogFrom: the caller vouches for the start
			}
			if start.Hash != "" {
				if start.Seq != need.Seq || subtle.ConstantTimeCompare([]byte(start.Hash), []byte(need.Hash)) != 1 {
					return &VerifyError{Line: 1, Seq: r.Seq, Reason: "the log starts after seq " + need.String() + ", not after the given start " + start.String()}
				}
				accounted = true
			}
			for seq := range cps.m {
				if seq < r.Seq && !(accounted && seq == start.Seq) {
					return &VerifyError{Line: 1, Seq: r.Seq, Reason: "checkpoint " + strconv.FormatUint(seq, 10) + " is before the first record present (seq " + strconv.FormatUint(r.Seq, 10) + "): its segment is not here"}
				}
			}
		}
		if need != nil && !accounted && r.Op == OpSegmentPruned {
			if cp, err := ParseCheckpoint(strings.TrimPrefix(r.Detail, pruneDetailPrefix)); err == nil && cp == *need {
				accounted = true
			}
		}
		if res.Records == 0 {
			res.FirstSeq = r.Seq
		}
		res.Records++
		if fn != nil {
			return fn(r, curPath, cur.line)
		}
		return nil
	}
	if start.Hash != "" && start.Seq > 0 {
		// A start whose records are present anyway is a checkpoint.
		cps.m[start.Seq] = start.Hash
	}
	for i, f := range files {
		fail := func(err error) (VerifyResult, error) {
			var ve *VerifyError
			if errors.As(err, &ve) {
				if ve.File == "" {
					ve.File = f.path
				}
				if ve.UntrustedFrom == 0 {
					ve.UntrustedFrom = ve.Seq
				}
			}
			return res, err
		}
		if i > 0 && f.first != 0 && f.first != res.LastSeq+1 {
			reason := "the segment before it ends at seq " + strconv.FormatUint(res.LastSeq, 10) + " but this one's name says it starts at seq " + strconv.FormatUint(f.first, 10)
			if f.first > res.LastSeq+1 {
				reason += ": the segment(s) holding seq " + strconv.FormatUint(res.LastSeq+1, 10) + ".." + strconv.FormatUint(f.first-1, 10) + " are missing"
			} else {
				reason += ": segments overlap (renamed or copied files)"
			}
			return fail(&VerifyError{Line: 1, Seq: res.LastSeq + 1, Reason: reason})
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return fail(provider.Errorf(provider.EIO, "open audit segment %s: %w", f.path, err))
		}
		if i > 0 && f.first == 0 {
			// The current file has no seq in its name: look at its first
			// record to tell a missing sealed segment from a bad record.
			if fi, err := fh.Stat(); err == nil {
				if r, err := firstRecord(fh, fi.Size()); err == nil && r.Seq > res.LastSeq+1 {
					if err := fh.Close(); err != nil {
						return fail(provider.Errorf(provider.EIO, "close audit segment %s: %w", f.path, err))
					}
					return fail(&VerifyError{Line: 1, Seq: res.LastSeq + 1, Reason: "the last sealed segment ends at seq " + strconv.FormatUint(res.LastSeq, 10) +
						" but this file starts at seq " + strconv.FormatUint(r.Seq, 10) + ": the segment(s) holding seq " + strconv.FormatUint(res.LastSeq+1, 10) + ".." + strconv.FormatUint(r.Seq-1, 10) + " are missing"})
				}
			}
		}
		w := newWalker(fh)
		cur, curPath = w, f.path
		if i == 0 {
			w.anyStart = true
		} else {
			w.continueFrom(res.LastSeq, res.LastHash)
		}
		werr := w.walk(cps, visit)
		if cerr := fh.Close(); werr == nil && cerr != nil {
			werr = provider.Errorf(provider.EIO, "close audit segment %s: %w", f.path, cerr)
		}
		if w.count > 0 {
			res.LastSeq, res.LastHash = w.seq, w.prev
		}
		res.Segments++
		if werr != nil {
			return fail(werr)
		}
		switch {
		case f.first != 0 && w.count == 0:
			return fail(&VerifyError{Line: 1, Seq: res.LastSeq + 1, Reason: "sealed segment is empty"})
		case f.first != 0 && w.first != f.first:
			return fail(&VerifyError{Line: 1, Seq: w.first, Reason: "the first record has seq " + strconv.FormatUint(w.first, 10) + " but the segment's name says " + strconv.FormatUint(f.first, 10)})
		}
		if i == len(files)-1 {
			if err := cps.pastEnd(res.LastSeq, w.line+1); err != nil {
				return fail(err)
			}
		}
	}
	if need != nil && !accounted {
		err := &VerifyError{File: files[0].path, Line: 1, Seq: 1, UntrustedFrom: 1,
			Reason: "the log starts at seq " + strconv.FormatUint(need.Seq+1, 10) + ": the records before it are in no segment here, and no " + OpSegmentPruned +
				" record says the daemon removed them (if the segments were moved elsewhere, verify them there and give their last seq and hash as the start)"}
		return res, err
	}
	return res, nil
}

// rotate seals the current file and starts a new one. It is called by the
// goroutine that owns the write side, before it writes a batch that
// would pass the segment size. Each step leaves a state Open recovers
// from after a crash:
//
//  1. fsync the current file: every record in it is durable;
//  2. rename it to its sealed name (never over an existing file), fsync
//     the directory — a crash here leaves no current file, and Open
//     starts a new one after the sealed segment's last record;
//  3. create the new current file (0600), fsync the directory — a crash
//     here leaves it empty, which Open treats the same way;
//  4. plan the removal of segments past WithMaxSegments.
//
// A failure fails the log (the caller reports it); nothing is written to
// the new file before all of this succeeded.
func (l *Log) rotate() error {
	name := sealedName(l.base, l.segFirst)
	sealedPath := filepath.Join(l.dir, name)
	if err := l.step("sync"); err != nil {
		return err
	}
	if err := l.syncFile(); err != nil {
		return err
	}
	// Every record written so far is in this file: now durable.
	l.mu.Lock()
	if l.written.Seq > l.synced {
		l.setSynced(l.written.Seq)
		l.syncCond.Broadcast()
	}
	l.mu.Unlock()
	if err := l.step("rename"); err != nil {
		return err
	}
	if err := renameNoReplace(l.dfd, l.base, name); err != nil {
		return provider.Errorf(provider.EIO, "audit log %s: seal it as %s: %w", l.path, sealedPath, err)
	}
	if err := l.step("fsync-dir"); err != nil {
		return err
	}
	if err := unix.Fsync(l.dfd); err != nil {
		return provider.Errorf(provider.EIO, "audit log %s: fsync the directory after sealing %s: %w", l.path, sealedPath, err)
	}
	if err := l.step("create"); err != nil {
		return err
	}
	f, _, err := openFile(l.dfd, l.path, l.base, true)
	if err != nil {
		return provider.Errorf(provider.EIO, "audit log %s: start a new segment after %s: %w", l.path, sealedPath, err)
	}
	if err := l.step("swap"); err != nil {
		return errors.Join(err, f.Close())
	}
	var nf file = f
	if l.wrap != nil {
		nf = l.wrap(f)
	}
	l.syncMu.Lock()
	old := l.f
	l.f = nf
	l.syncMu.Unlock()
	l.mu.Lock() // a removal may be trimming the front (see flush)
	l.sealed = append(l.sealed, segment{name: name, first: l.segFirst})
	l.mu.Unlock()
	l.size, l.segFirst = 0, 0
	if err := old.Close(); err != nil {
		return provider.Errorf(provider.EIO, "audit segment %s: close: %w", sealedPath, err)
	}
	return l.planPrune(false)
}

// rotationSteps names the points between the steps of a rotation, in
// order, at which tests make it fail (as a crash there would stop it).
var rotationSteps = []string{"sync", "rename", "fsync-dir", "create", "swap", "prune"}

// step is a point between the steps of a rotation: tests fail it there.
func (l *Log) step(name string) error {
	if l.fault == nil {
		return nil
	}
	if err := l.fault(name); err != nil {
		return provider.Errorf(provider.EIO, "audit log %s: rotation stopped before %s: %w", l.path, name, err)
	}
	return nil
}

// planPrune queues an OpSegmentPruned record for each sealed segment past
// WithMaxSegments, oldest first, and plans their removal once the records
// are written (see removeSegments). One plan at a time: segments still
// in excess are planned at the next rotation.
//
// again is set by the goroutine that just carried out a removal (and
// still has l.pruning set): segments left in excess are planned at once.
func (l *Log) planPrune(again bool) error {
	l.mu.Lock()
	excess := len(l.sealed) + 1 - l.maxSegs
	busy := l.prune != nil || (l.pruning && !again)
	sealed := append([]segment(nil), l.sealed...)
	l.mu.Unlock()
	if l.maxSegs == 0 || excess <= 0 || busy {
		return nil
	}
	// The last record of each victim is the one before the first record
	// of the segment after it (maxSegs >= 2 keeps one sealed segment).
	victims := sealed[:excess]
	recs := make([]Record, 0, len(victims))
	var through uint64
	for i, v := range victims {
		next := sealed[i+1]
		prev, err := sealedStart(l.dfd, l.dir, next)
		if err != nil {
			return err
		}
		key := v.name
		if checkField(key, false) != "" {
			key = "" // a log name that does not fit a record; the detail says which records
		}
		end := Checkpoint{Seq: next.first - 1, Hash: prev}
		through = end.Seq
		recs = append(recs, l.ownRecord(OpSegmentPruned, key, pruneDetailPrefix+end.String()))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Not unusable(): a Close waits for the write side, so records queued
	// while it waits are still written.
	if l.failure != nil {
		return l.failure
	}
	if l.prune != nil {
		return nil // planned meanwhile by the other side
	}
	for i := range recs {
		r := &recs[i]
		if err := r.validate(); err != nil {
			return err
		}
		r.Time = r.Time.UTC()
		l.assign(r)
	}
	l.prune = &prunePlan{seq: l.seq, through: through, segments: victims}
	return nil
}

// removeSegments carries out a plan whose records are written: fsync them,
// remove the segments, fsync the directory. A crash in between leaves
// segments that the next rotation plans again (a second record for
// them). The prune guard, if set, is asked first. Called by the goroutine
// that wrote the plan's records, after it handed the write side on (see
// flush), with l.pruning set.
func (l *Log) removeSegments(p *prunePlan) (removed bool, err error) {
	if err := l.syncFile(); err != nil {
		return false, err
	}
	if err := l.step("prune"); err != nil {
		return false, err
	}
	l.mu.Lock()
	guard := l.guard
	l.mu.Unlock()
	if guard != nil {
		if err := guard(p.through); err != nil {
			// Postponed: the segments stay listed, and the next
			// rotation plans their removal again.
			l.statPrunePostponed.Add(1)
			return false, nil
		}
	}
	for _, s := range p.segments {
		if err := unix.Unlinkat(l.dfd, s.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return false, provider.Errorf(provider.EIO, "remove audit segment %s: %w", filepath.Join(l.dir, s.name), err)
		}
	}
	if err := unix.Fsync(l.dfd); err != nil {
		return false, provider.Errorf(provider.EIO, "audit directory %s: fsync after removing segments: %w", l.dir, err)
	}
	// The victims are the oldest: drop them from the front.
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for n < len(l.sealed) && n < len(p.segments) && l.sealed[n].first == p.segments[n].first {
		n++
	}
	l.sealed = l.sealed[n:]
	return true, nil
}

// LogExists reports whether the log at path has its current file or a
// sealed segment: what a start that would make a fresh chain must check
// first (internal/tamper refuses a log the state last saw that is gone).
func LogExists(path string) (bool, error) {
	dir, base, err := splitPath(path)
	if err != nil {
		return false, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, provider.Errorf(provider.EIO, "list audit directory %s: %w", dir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Name() == base {
			return true, nil
		}
		names = append(names, e.Name())
	}
	return len(sealedIn(base, names)) > 0, nil
}

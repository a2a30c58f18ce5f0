package probe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nexus-os/keystored/audit"
)

// AuditDir is the state directory's audit subdirectory, which Snapshot
// leaves out: every request, refused ones too, appends to it.
const AuditDir = "audit"

// AuditFile is the audit log's path inside a state directory.
const AuditFile = AuditDir + "/audit.jsonl"

// Snapshot describes every entry of the state directory dir except the
// audit log: path → type, mode and (for files) size and SHA-256 of the
// content (for symlinks, the target). Two snapshots are equal when
// nothing but the audit log changed.
func Snapshot(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == AuditDir && e.IsDir() {
			return filepath.SkipDir
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += fmt.Sprintf(" %d %s", len(data), hex.EncodeToString(sum[:]))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	return out, err
}

// DiffSnapshots lists the differences between two snapshots, one line per
// path, sorted; empty when they are equal.
func DiffSnapshots(before, after map[string]string) []string {
	var diff []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diff = append(diff, "removed "+p+" ("+b+")")
		} else if a != b {
			diff = append(diff, "changed "+p+": "+b+" -> "+a)
		}
	}
	for p, a := range after {
		if _, ok := before[p]; !ok {
			diff = append(diff, "added "+p+" ("+a+")")
		}
	}
	sort.Strings(diff)
	return diff
}

// ReadAudit reads the audit log of the state directory dir, checking its
// hash chain, and returns every record.
func ReadAudit(dir string) ([]audit.Record, error) {
	data, err := os.ReadFile(filepath.Join(dir, AuditFile))
	if err != nil {
		return nil, err
	}
	var recs []audit.Record
	_, err = audit.Walk(bytes.NewReader(data), func(r audit.Record) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

// ReadAuditFrom parses the complete lines of the audit log of dir from
// byte offset off (without checking the chain, which needs the whole
// file) and returns the records and the offset after the last complete
// line. For watching the log of a running daemon.
func ReadAuditFrom(dir string, off int64) ([]audit.Record, int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, AuditFile))
	if err != nil {
		return nil, off, err
	}
	if off > int64(len(data)) {
		return nil, off, fmt.Errorf("audit log shrank from %d to %d bytes", off, len(data))
	}
	data = data[off:]
	end := bytes.LastIndexByte(data, '\n') + 1
	var recs []audit.Record
	for _, line := range strings.SplitAfter(string(data[:end]), "\n") {
		if line == "" {
			continue
		}
		r, err := audit.ParseLine([]byte(strings.TrimSuffix(line, "\n")))
		if err != nil {
			return nil, off, fmt.Errorf("audit line %q: %w", line, err)
		}
		recs = append(recs, r)
	}
	return recs, off + int64(end), nil
}

package powercut

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CopyAuditDir copies the audit log directory src to dst (created, mode
// 0700) as a power cut leaves it when the log's last durable report
// (audit.WithDurableObserver) was seq. The log's files are taken in
// order (the sealed segments of base, oldest first, then base): those
// whose records are all through seq are copied; the first one holding a
// record past seq was the current file at the cut (a rotation seals a
// file only after fsyncing it, and that fsync would have been reported),
// so its records through seq are written as base, and the files after it
// are dropped. Other files are copied as they are.
//
// tail keeps that many more bytes of that current file after its last
// durable record (as far as the file goes): pages of records never
// fsynced that reached the disk all the same, usually ending in a torn
// line, which audit.Open then cuts off.
func CopyAuditDir(src, dst, base string, seq uint64, tail int) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	var logs []string
	hasBase := false
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		switch {
		case name == base:
			hasBase = true
		case strings.HasPrefix(name, stem+"-") && filepath.Ext(name) == filepath.Ext(base):
			logs = append(logs, name) // a sealed segment: zero-padded first seq
		default:
			if err := copyFile(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
				return err
			}
		}
	}
	slices.Sort(logs)
	if hasBase {
		logs = append(logs, base)
	}
	for _, name := range logs {
		cut := false
		keep := func(data []byte) []byte {
			kept := keepThrough(data, seq)
			if len(kept) == len(data) {
				return data
			}
			cut = true
			return data[:min(len(data), len(kept)+max(tail, 0))]
		}
		to := name
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		data = keep(data)
		if cut {
			to = base
		}
		if err := os.WriteFile(filepath.Join(dst, to), data, 0o600); err != nil {
			return fmt.Errorf("powercut: copy %s: %w", name, err)
		}
		if cut {
			return nil
		}
	}
	return nil
}

// copyFile copies src to dst (mode 0600).
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		return fmt.Errorf("powercut: copy %s: %w", filepath.Base(src), err)
	}
	return nil
}

// keepThrough returns the whole lines of data whose record's seq is at
// most seq, up to the first that is not.
func keepThrough(data []byte, seq uint64) []byte {
	var n int
	for n < len(data) {
		i := bytes.IndexByte(data[n:], '\n')
		if i < 0 {
			break // torn last line
		}
		var r struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(data[n:n+i], &r); err != nil || r.Seq == 0 || r.Seq > seq {
			break
		}
		n += i + 1
	}
	return data[:n]
}

package powercut

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CopyAuditDir copies the audit log directory src to dst (created, mode
// 0700), keeping of every log file (*.jsonl) only the records through
// seq: what a power cut leaves of a log whose last durable report
// (audit.WithDurableObserver) was seq. A torn or undecodable line ends
// what is kept of its file. A file left with no record is dropped unless
// it is the current file (base). Other files are copied as they are.
//
// tail keeps that many more bytes of the current file after its last
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
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if strings.HasSuffix(e.Name(), ".jsonl") {
			kept := keepThrough(data, seq)
			if e.Name() == base {
				kept = data[:min(len(data), len(kept)+max(tail, 0))]
			}
			data = kept
			if len(data) == 0 && e.Name() != base {
				continue
			}
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			return fmt.Errorf("powercut: copy %s: %w", e.Name(), err)
		}
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

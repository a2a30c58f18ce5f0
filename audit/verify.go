package audit

import (
	"bufio"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// VerifyResult describes a log that verified: how many records it holds
// and the Seq and Hash of the last one. For an empty log LastSeq is 0 and
// LastHash is Genesis. Keep LastSeq and LastHash somewhere the daemon
// cannot write: they are what reveals a later truncation (see Checkpoint).
type VerifyResult struct {
	Records  int
	LastSeq  uint64
	LastHash string
	// FirstSeq is the Seq of the first record verified (1 unless the
	// segments before it were removed); 0 for an empty log.
	FirstSeq uint64
	// Segments is the number of segment files VerifyLog or WalkLog read
	// (the sealed segments and the current file); 0 for Verify, Walk and
	// VerifyFile, which read one stream.
	Segments int

	// Set by VerifyLogWith with a public key: LastSigned is the seq the
	// last valid checkpoint covers (the record before it), Checkpoints
	// the number of checkpoint records whose signature verified,
	// Unsigned the records after the last checkpoint record, EndsWithStop
	// whether the last checkpoint is a "stop" one (the daemon closed the
	// log).
	LastSigned   uint64
	Checkpoints  int
	Unsigned     uint64
	EndsWithStop bool
	// KeyRef is the key ref the last valid checkpoint names.
	KeyRef string
	// Shipped is the number of shipped checkpoints found in the log.
	Shipped int
}

// Checkpoint returns the result's last record as a Checkpoint.
func (r VerifyResult) Checkpoint() Checkpoint {
	return Checkpoint{Seq: r.LastSeq, Hash: r.LastHash}
}

// VerifyError reports the first record of a log that fails verification.
// It unwraps to EIO (corrupted state).
type VerifyError struct {
	// File is the segment file holding the bad record, when the log was
	// read by VerifyLog or WalkLog; empty for a single stream.
	File string
	// Line is the 1-based line number of the bad record (in File).
	Line int
	// Seq is the sequence number the record at that line should carry
	// (one more than the last good record's).
	Seq uint64
	// Reason says what is wrong, e.g. "hash does not match the record".
	Reason string
	// UntrustedFrom is the first seq that nothing vouches for: for a
	// record that fails its own check (hash, prev, seq, form) it is Seq;
	// for a chain that is consistent but disagrees with a checkpoint
	// (given, shipped or signed) it is one past the last checkpoint that
	// matched, 1 if none did — the log was rewritten from there on.
	UntrustedFrom uint64
}

// Error returns "audit: record at line N (seq S): reason", with
// " of FILE" after the line number when File is set.
func (e *VerifyError) Error() string {
	of := ""
	if e.File != "" {
		of = " of " + e.File
	}
	return "audit: record at line " + strconv.Itoa(e.Line) + of + " (seq " +
		strconv.FormatUint(e.Seq, 10) + "): " + e.Reason
}

// Unwrap returns EIO, so errors.Is(err, provider.ErrIO) holds and
// provider.CodeOf reports EIO.
func (e *VerifyError) Unwrap() error { return provider.EIO }

// Checkpoint is a record's Seq and Hash, noted somewhere other than the log
// (a ticket, another host, the daemon's journal). A log that verifies
// against a checkpoint holds that record unchanged, so it was neither
// truncated below it nor rewritten up to it.
type Checkpoint struct {
	Seq  uint64
	Hash string
}

// String returns "SEQ:HASH", the form ParseCheckpoint reads.
func (c Checkpoint) String() string {
	return strconv.FormatUint(c.Seq, 10) + ":" + c.Hash
}

// ParseCheckpoint reads "SEQ:HASH" (EINVAL if malformed).
func ParseCheckpoint(s string) (Checkpoint, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || strconv.FormatUint(n, 10) != seq {
		return Checkpoint{}, provider.Errorf(provider.EINVAL, "audit checkpoint: want SEQ:HASH")
	}
	c := Checkpoint{Seq: n, Hash: hash}
	if err := c.check(); err != nil {
		return Checkpoint{}, err
	}
	return c, nil
}

// check reports a malformed checkpoint (EINVAL).
func (c Checkpoint) check() error {
	if len(c.Hash) != hashLen || strings.Trim(c.Hash, "0123456789abcdef") != "" {
		return provider.Errorf(provider.EINVAL, "audit checkpoint %d: hash is not 64 lower-case hex digits", c.Seq)
	}
	if c.Seq == 0 && c.Hash != Genesis {
		return provider.Errorf(provider.EINVAL, "audit checkpoint 0: hash must be the genesis value")
	}
	return nil
}

// Verify reads a log and checks, line by line, that each record is in
// canonical form, that its Seq is one more than its predecessor's (1 for
// the first), that its Prev is its predecessor's Hash (Genesis for the
// first) and that its Hash matches its contents, and that the log ends
// with a newline. It also checks that the log holds each checkpoint given
// (the record with that Seq, with that Hash).
//
// It returns a *VerifyError for the first bad record; an error wrapping
// EIO if r fails; EINVAL for a malformed checkpoint. It reads r in one
// pass with bounded memory.
func Verify(r io.Reader, checkpoints ...Checkpoint) (VerifyResult, error) {
	return Walk(r, nil, checkpoints...)
}

// VerifyFile opens the log at path and verifies it (see Verify). A missing
// file is ENOENT. Run it on a stopped daemon's log or a copy: a record
// being written while the file is read can show up as a truncated last
// line.
func VerifyFile(path string, checkpoints ...Checkpoint) (VerifyResult, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return VerifyResult{}, provider.Errorf(provider.ENOENT, "audit log %s: %w", path, err)
		}
		return VerifyResult{}, provider.Errorf(provider.EIO, "open audit log %s: %w", path, err)
	}
	res, err := Verify(f, checkpoints...)
	if cerr := f.Close(); cerr != nil && err == nil {
		err = provider.Errorf(provider.EIO, "close audit log %s: %w", path, cerr)
	}
	return res, err
}

// Walk verifies a log as Verify does and calls fn, if not nil, with each
// record that verified, in order. It stops at the first bad record or the
// first error from fn, which it returns as is.
func Walk(r io.Reader, fn func(Record) error, checkpoints ...Checkpoint) (VerifyResult, error) {
	cps, err := checkpointSet(checkpoints)
	if err != nil {
		return VerifyResult{}, err
	}
	w := newWalker(r)
	if err := w.walk(cps, fn); err != nil {
		return w.result(), err
	}
	res := w.result()
	if err := cps.pastEnd(res.LastSeq, w.line+1); err != nil {
		return res, err
	}
	return res, nil
}

// checkpoints maps the Seq of each checkpoint to its Hash, and tracks
// the last one a verification found (matched): a later mismatch means
// everything after it is untrusted.
type checkpoints struct {
	m       map[uint64]string
	matched uint64
}

// checkpointSet checks the checkpoints given to a verification (EINVAL
// for a malformed one, or two hashes for one seq).
func checkpointSet(list []Checkpoint) (*checkpoints, error) {
	cps := &checkpoints{m: make(map[uint64]string, len(list))}
	for _, c := range list {
		if err := c.check(); err != nil {
			return nil, err
		}
		if h, ok := cps.m[c.Seq]; ok && h != c.Hash {
			return nil, provider.Errorf(provider.EINVAL, "audit checkpoints: two hashes for seq %d", c.Seq)
		}
		cps.m[c.Seq] = c.Hash
	}
	return cps, nil
}

// match notes that the record seq matched a checkpoint.
func (cps *checkpoints) match(seq uint64) {
	cps.matched = max(cps.matched, seq)
}

// rewritten is the error for a record that verified but disagrees with a
// checkpoint (what, e.g. "checkpoint 12:ab…").
func (cps *checkpoints) rewritten(line int, seq uint64, what string) *VerifyError {
	tail := "every record after the last matching checkpoint (seq " + strconv.FormatUint(cps.matched, 10) + ") is untrusted"
	if cps.matched == 0 {
		tail = "no checkpoint before it matched: every record is untrusted"
	}
	return &VerifyError{Line: line, Seq: seq, UntrustedFrom: cps.matched + 1,
		Reason: "hash differs from " + what + ": the log was rewritten; " + tail}
}

// pastEnd reports the smallest checkpoint past the log's last seq: the
// log lost its tail. line is the line number to report.
func (cps *checkpoints) pastEnd(last uint64, line int) error {
	var missing uint64
	for seq := range cps.m {
		if seq > last && (missing == 0 || seq < missing) {
			missing = seq
		}
	}
	if missing == 0 {
		return nil
	}
	return &VerifyError{Line: line, Seq: last + 1, UntrustedFrom: cps.matched + 1,
		Reason: "log ends at seq " + strconv.FormatUint(last, 10) +
			" but checkpoint " + strconv.FormatUint(missing, 10) +
			" is later: records were removed from the end"}
}

// walk reads the rest of w's input, checking each record against cps and
// passing it to fn (if not nil). It returns the first bad record's
// *VerifyError, a read error, or fn's error.
func (w *walker) walk(cps *checkpoints, fn func(Record) error) error {
	for {
		rec, bad, err := w.next()
		if err != nil {
			return err
		}
		if bad != nil {
			return bad.err
		}
		if rec == nil {
			return nil
		}
		if h, ok := cps.m[rec.Seq]; ok {
			if subtle.ConstantTimeCompare([]byte(h), []byte(rec.Hash)) != 1 {
				// The record verified but is not the one noted: report the
				// chain as it stood before it.
				w.seq, w.prev, w.count = rec.Seq-1, rec.Prev, w.count-1
				if w.count == 0 {
					w.first = 0
				}
				return cps.rewritten(w.line, rec.Seq, "checkpoint "+Checkpoint{rec.Seq, h}.String())
			}
			cps.match(rec.Seq)
		}
		if fn != nil {
			if err := fn(*rec); err != nil {
				return err
			}
		}
	}
}

// walker reads a log line by line and checks the chain.
type walker struct {
	br    *bufio.Reader
	x     *hasher
	buf   []byte
	lbuf  []byte // a copy of the current line (see next)
	line  int    // lines read so far
	off   int64  // bytes read so far
	good  int64  // offset just past the last good record's newline
	seq   uint64 // last good record's Seq
	prev  string // last good record's Hash (Genesis before the first)
	count int
	first uint64 // the first good record's Seq; 0 before it

	// anyStart accepts whatever Seq and Prev the first record has (a log
	// whose earlier segments are elsewhere); a record with Seq 1 must
	// still have the genesis Prev.
	anyStart bool
}

// badRecord is a failed check. tail reports that the bad line is the last
// in the file and is torn rather than wrong: it has no newline, or it does
// not decode as a record at all (what a crash in the middle of a write can
// leave). start is the line's offset.
type badRecord struct {
	err   *VerifyError
	start int64
	tail  bool
}

func newWalker(r io.Reader) *walker {
	return &walker{br: bufio.NewReaderSize(r, 64<<10), x: newHasher(), prev: Genesis}
}

// continueFrom makes the walker expect its first record to follow the
// record (seq, prev) of an earlier segment.
func (w *walker) continueFrom(seq uint64, prev string) {
	w.seq, w.prev = seq, prev
}

func (w *walker) result() VerifyResult {
	return VerifyResult{Records: w.count, LastSeq: w.seq, LastHash: w.prev, FirstSeq: w.first}
}

// next returns the next good record, or nil at the end of the log; a
// badRecord for the first line that fails; an error wrapping EIO if
// reading fails.
func (w *walker) next() (*Record, *badRecord, error) {
	start := w.off
	line, complete, tooLong, err := w.readLine()
	if err != nil {
		return nil, nil, provider.Errorf(provider.EIO, "read audit log: %w", err)
	}
	if line == nil && !tooLong {
		return nil, nil, nil
	}
	w.line++
	bad := func(reason string, tail bool) (*Record, *badRecord, error) {
		return nil, &badRecord{err: &VerifyError{Line: w.line, Seq: w.seq + 1, UntrustedFrom: w.seq + 1, Reason: reason}, start: start, tail: tail}, nil
	}
	if !complete {
		return bad("truncated last line (no newline at the end of the file)", true)
	}
	// The line is a slice of the reader's buffer, which Peek may refill:
	// keep a copy.
	w.lbuf = append(w.lbuf[:0], line...)
	line = w.lbuf
	last := false
	if _, err := w.br.Peek(1); err == io.EOF {
		last = true
	}
	if tooLong {
		return bad("line longer than "+strconv.Itoa(MaxLine)+" bytes", last)
	}
	rec, buf, reason := parseRecord(line, w.buf)
	w.buf = buf
	if reason != "" {
		return bad("malformed record: "+reason, last)
	}
	if w.anyStart && w.count == 0 && (rec.Seq > 1 || rec.Prev == Genesis) {
		w.seq, w.prev = rec.Seq-1, rec.Prev
	}
	if rec.Seq != w.seq+1 {
		return bad("seq is "+strconv.FormatUint(rec.Seq, 10)+", want "+strconv.FormatUint(w.seq+1, 10), false)
	}
	if subtle.ConstantTimeCompare([]byte(rec.Prev), []byte(w.prev)) != 1 {
		switch {
		case w.count == 0 && w.prev == Genesis:
			return bad("prev is not the genesis value", false)
		case w.count == 0:
			return bad("prev is not the hash of the previous segment's last record", false)
		}
		return bad("prev does not match the previous record's hash", false)
	}
	// The line is canonical, so the hash preimage's body is the line
	// without its hash value and closing `"}`.
	sum := w.x.chain(line[:len(line)-hashLen-len(bodyEnd)])
	var want [hashLen]byte
	hex.Encode(want[:], sum)
	if subtle.ConstantTimeCompare(want[:], []byte(rec.Hash)) != 1 {
		return bad("hash does not match the record", false)
	}
	w.seq, w.prev = rec.Seq, rec.Hash
	if w.count == 0 {
		w.first = rec.Seq
	}
	w.count++
	w.good = w.off
	return &rec, nil, nil
}

// readLine returns the next line without its newline and whether it had
// one. A line longer than MaxLine is skipped to its end and reported as
// tooLong with a nil line. At the end of the input it returns a nil line.
func (w *walker) readLine() (line []byte, complete, tooLong bool, err error) {
	b, err := w.br.ReadSlice('\n')
	w.off += int64(len(b))
	for errors.Is(err, bufio.ErrBufferFull) {
		tooLong = true
		b, err = w.br.ReadSlice('\n')
		w.off += int64(len(b))
	}
	switch {
	case err == nil:
		if tooLong || len(b)-1 > MaxLine {
			return nil, true, true, nil
		}
		return b[:len(b)-1], true, false, nil
	case err == io.EOF:
		if tooLong {
			return nil, false, true, nil
		}
		if len(b) == 0 {
			return nil, false, false, nil
		}
		return b, false, false, nil
	default:
		return nil, false, false, err
	}
}

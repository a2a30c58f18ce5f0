package audit

import (
	"bufio"
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"io"
	"strconv"

	"github.com/nexus-os/keystored/core/provider"
)

// VerifyOptions are what VerifyLogWith checks a log against, besides its
// chain.
type VerifyOptions struct {
	// PublicKey is the checkpoint signing key's public key. nil: the
	// chain only, as VerifyLog. With a key, every checkpoint record's
	// signature must verify, the log must hold one, and it must end with
	// a "stop" checkpoint (unless AllowUnsignedTail).
	PublicKey ed25519.PublicKey
	// Checkpoints are SEQ:HASH values noted elsewhere (--checkpoint).
	Checkpoints []Checkpoint
	// Shipped are checkpoint records kept off the host (ParseShipped
	// reads them from a shipped file; Shipped[i] is its line i+1). Each
	// must be in the log at its seq, unchanged; those before the first
	// record present (removed by retention or archived) are skipped.
	Shipped []Record
	// AllowUnsignedTail accepts records after the last checkpoint, and a
	// last checkpoint that is not "stop": a running daemon's log. They are
	// counted in VerifyResult.Unsigned, not an error.
	AllowUnsignedTail bool
	// Start is WalkLog's start: the last seq and hash of segments moved
	// elsewhere (zero: none).
	Start Checkpoint
}

// ShippedFile is the VerifyError.File of a failure found in the shipped
// checkpoints themselves (Line is the shipped file's line).
const ShippedFile = "(shipped checkpoints)"

// shippedCP is a shipped checkpoint's hash and line.
type shippedCP struct {
	hash string
	line int
}

// VerifyLogWith verifies the whole log at path as VerifyLog does, and
// against o: signed checkpoints (o.PublicKey), given checkpoints and
// shipped checkpoints. It returns a *VerifyError for the first failure:
//
//   - a record that fails its own check (form, seq, prev, hash): that
//     record, UntrustedFrom its seq;
//   - a checkpoint record whose signature does not verify, "checkpoint
//     signature invalid", at that record;
//   - a record that disagrees with a given or shipped checkpoint: "the
//     log was rewritten", UntrustedFrom one past the last checkpoint that
//     matched (1 if none);
//   - with a key: a log with records but no checkpoint; records after the
//     last checkpoint, or a last checkpoint that is not "stop" (unless
//     o.AllowUnsignedTail);
//   - a shipped checkpoint past the log's end ("log truncated");
//   - a shipped checkpoint whose signature or hash does not verify
//     (File ShippedFile, Line its line, UntrustedFrom 0: the shipped copy
//     or the key is wrong, not the log).
//
// EINVAL for a malformed option (a public key of the wrong size, a
// malformed checkpoint, two values for one seq, a shipped record that is
// not a checkpoint).
func VerifyLogWith(path string, o VerifyOptions) (VerifyResult, error) {
	key := o.PublicKey
	if key != nil && len(key) != ed25519.PublicKeySize {
		return VerifyResult{}, provider.Errorf(provider.EINVAL, "audit verify: the public key is %d bytes, not an Ed25519 key", len(key))
	}
	cps, err := checkpointSet(o.Checkpoints)
	if err != nil {
		return VerifyResult{}, err
	}
	shipped := make(map[uint64]shippedCP, len(o.Shipped))
	for i, r := range o.Shipped {
		line := i + 1
		if r.Op != OpCheckpoint {
			return VerifyResult{}, provider.Errorf(provider.EINVAL, "shipped checkpoints line %d: a %q record, not %s", line, r.Op, OpCheckpoint)
		}
		if _, h := appendLine(newHasher(), nil, &r); subtle.ConstantTimeCompare([]byte(h), []byte(r.Hash)) != 1 {
			return VerifyResult{}, &VerifyError{File: ShippedFile, Line: line, Seq: r.Seq, Reason: "shipped checkpoint's hash does not match it: the shipped copy was altered"}
		}
		if key != nil {
			if _, problem := checkSigned(r, key); problem != "" {
				return VerifyResult{}, &VerifyError{File: ShippedFile, Line: line, Seq: r.Seq,
					Reason: "shipped " + problem + " (the wrong public key, or the shipped copy was altered)"}
			}
		}
		if prev, ok := shipped[r.Seq]; ok && prev.hash != r.Hash {
			return VerifyResult{}, provider.Errorf(provider.EINVAL, "shipped checkpoints lines %d and %d: two records for seq %d", prev.line, line, r.Seq)
		}
		shipped[r.Seq] = shippedCP{hash: r.Hash, line: line}
	}

	var (
		nCP                    int
		last                   *Record // the last valid checkpoint record
		lastReason             string
		lastFile               string
		lastLine               int
		afterFile              string // the record after it
		afterLine              int
		found                  int
		prevWasCP, sawAnyAfter bool
		endFile                string // the last record's
		endLine                int
	)
	visit := func(r Record, file string, line int) error {
		endFile, endLine = file, line
		if prevWasCP {
			afterFile, afterLine, sawAnyAfter = file, line, true
			prevWasCP = false
		}
		if sh, ok := shipped[r.Seq]; ok {
			if subtle.ConstantTimeCompare([]byte(sh.hash), []byte(r.Hash)) != 1 {
				ve := cps.rewritten(line, r.Seq, "the shipped checkpoint at line "+strconv.Itoa(sh.line)+" of the shipped file")
				ve.File = file
				return ve
			}
			cps.match(r.Seq)
			found++
		}
		if key == nil || r.Op != OpCheckpoint {
			return nil
		}
		sc, problem := checkSigned(r, key)
		if problem != "" {
			m := strconv.FormatUint(cps.matched, 10)
			return &VerifyError{File: file, Line: line, Seq: r.Seq, UntrustedFrom: cps.matched + 1,
				Reason: problem + ": a record before it was changed, or it was forged or signed by another key; every record after the last valid checkpoint (seq " + m + ") is untrusted"}
		}
		cps.match(r.Seq)
		nCP++
		rc := r
		last, lastReason, lastFile, lastLine = &rc, sc.reason, file, line
		prevWasCP, sawAnyAfter = true, false
		return nil
	}
	if o.Start.Hash != "" {
		if err := o.Start.check(); err != nil {
			return VerifyResult{}, err
		}
	}
	res, err := walkLog(path, o.Start, cps, visit, 0)
	res.Checkpoints, res.Shipped = nCP, found
	if last != nil {
		res.LastSigned = last.Seq - 1
		res.Unsigned = res.LastSeq - last.Seq
		res.EndsWithStop = res.Unsigned == 0 && lastReason == reasonStop
		res.KeyRef = last.Key
	}
	if err != nil {
		return res, err
	}
	var beyond uint64
	for seq := range shipped {
		if seq > res.LastSeq && (beyond == 0 || seq < beyond) {
			beyond = seq
		}
	}
	if beyond != 0 {
		return res, &VerifyError{File: endFile, Line: endLine + 1, Seq: res.LastSeq + 1, UntrustedFrom: cps.matched + 1,
			Reason: "log truncated: shipped checkpoint seq " + strconv.FormatUint(beyond, 10) + " is beyond the log's end (seq " + strconv.FormatUint(res.LastSeq, 10) + ")"}
	}
	if key == nil {
		return res, nil
	}
	if res.Records == 0 {
		// A daemon with checkpoints writes one at its first start: an
		// empty log is an emptied one.
		return res, &VerifyError{File: path, Line: 1, Seq: 1, UntrustedFrom: 1,
			Reason: "the log is empty: a daemon signs a checkpoint at its first start, so it was emptied or replaced"}
	}
	if last == nil {
		return res, &VerifyError{File: path, Line: 1, Seq: res.FirstSeq, UntrustedFrom: res.FirstSeq,
			Reason: "no signed checkpoint in " + strconv.Itoa(res.Records) + " records: nothing in the log is signed (forged or replaced log, or a daemon without checkpoints)"}
	}
	if o.AllowUnsignedTail {
		return res, nil
	}
	m := strconv.FormatUint(last.Seq, 10)
	switch {
	case res.Unsigned > 0:
		file, line := afterFile, afterLine
		if !sawAnyAfter {
			file, line = lastFile, lastLine+1
		}
		return res, &VerifyError{File: file, Line: line, Seq: last.Seq + 1, UntrustedFrom: last.Seq + 1,
			Reason: strconv.FormatUint(res.Unsigned, 10) + " records after the last signed checkpoint (seq " + m +
				"): forged append, or a log cut / a daemon still running; --allow-unsigned-tail for a live log"}
	case !res.EndsWithStop:
		return res, &VerifyError{File: lastFile, Line: lastLine, Seq: last.Seq + 1, UntrustedFrom: last.Seq + 1,
			Reason: "the last signed checkpoint (seq " + m + ") is " + strconv.Quote(lastReason) + ", not \"stop\": the log was cut after it, or the daemon crashed or is still running; --allow-unsigned-tail for a live log"}
	}
	return res, nil
}

// MaxShipped bounds the lines ParseShipped reads: a checkpoint a minute
// for ten years is about 5 million; a million lines of about 450 bytes
// are 450 MB in memory.
const MaxShipped = 1 << 20

// ParseShipped reads a file of shipped checkpoint lines (what a
// CheckpointSink received: one canonical checkpoint record per line).
// Each line must be a canonical record whose hash matches it and whose Op
// is OpCheckpoint; anything else — an empty line included — is an error
// (EINVAL) naming the line number. The last line may lack its newline.
//
// At most MaxShipped lines are read (EMSGSIZE beyond).
func ParseShipped(r io.Reader) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLine+1)
	var out []Record
	n := 0
	for sc.Scan() {
		n++
		if n > MaxShipped {
			return nil, provider.Errorf(provider.EMSGSIZE, "shipped checkpoints: more than %d lines", MaxShipped)
		}
		rec, err := selfChecked(sc.Bytes())
		if err != nil {
			return nil, provider.Errorf(provider.EINVAL, "shipped checkpoints line %d: %v", n, err)
		}
		if rec.Op != OpCheckpoint {
			return nil, provider.Errorf(provider.EINVAL, "shipped checkpoints line %d: a %q record, not %s", n, rec.Op, OpCheckpoint)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, provider.Errorf(provider.EINVAL, "shipped checkpoints line %d: longer than %d bytes", n+1, MaxLine)
		}
		return nil, provider.Errorf(provider.EIO, "read shipped checkpoints: %w", err)
	}
	return out, nil
}

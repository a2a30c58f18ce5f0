package main

import (
	"errors"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

// DefaultState is the daemon's default state directory.
const DefaultState = "keystore-state"

// auditFile is the audit log's place under the state directory.
func auditFile(state string) string { return filepath.Join(state, "audit", "audit.jsonl") }

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with keystored's audit log",
	}
	var state, start string
	var checkpoints []string
	verify := &cobra.Command{
		Use:   "verify [--state DIR] [--checkpoint SEQ:HASH]... [--start SEQ:HASH]",
		Short: "Check the audit log's hash chain across all its segments; report the first bad record",
		Long: `Verify reads the audit log under <state>/audit (default state: ./` + DefaultState + `): every
sealed segment (audit-<first seq>.jsonl), oldest first, then the current
file audit.jsonl, as one chain. It checks every record — canonical form,
sequence numbers, the SHA-256 chain, also from one segment to the next — and
reports a segment missing in the middle or renamed. It does not need the
daemon. On success it prints the number of records and segments, the first
seq and the last seq and hash (note them elsewhere: given later as
--checkpoint, they also reveal a truncated or rewritten log). On failure it
names the file and line of the first bad record and exits 74 (EBADMSG).

A log must start at seq 1, or after segments the daemon removed itself
([audit] max_segments: it records each removal). If you moved old segments
elsewhere, verify them there and give their last seq and hash as --start.`,
		Example: `  keystorectl audit verify --state /var/lib/keystored
  keystorectl audit verify --checkpoint 1200:3f5a...
  keystorectl audit verify --start 480113:9c0e...   # older segments archived`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			var cps []audit.Checkpoint
			for _, s := range checkpoints {
				cp, err := audit.ParseCheckpoint(s)
				if err != nil {
					return usageError{err, "keystorectl audit verify"}
				}
				cps = append(cps, cp)
			}
			var from audit.Checkpoint
			if start != "" {
				cp, err := audit.ParseCheckpoint(start)
				if err != nil {
					return usageError{err, "keystorectl audit verify"}
				}
				from = cp
			}
			path := auditFile(state)
			res, err := audit.WalkLog(path, from, nil, cps...)
			if err != nil {
				return auditError(path, err)
			}
			if a.json {
				return a.emit(struct {
					File     string `json:"file"`
					OK       bool   `json:"ok"`
					Records  int    `json:"records"`
					Segments int    `json:"segments"`
					FirstSeq uint64 `json:"first_seq"`
					LastSeq  uint64 `json:"last_seq"`
					LastHash string `json:"last_hash"`
				}{path, true, res.Records, res.Segments, res.FirstSeq, res.LastSeq, res.LastHash})
			}
			return a.printf("audit log %s: ok, %d records in %d segment files\nfirst seq %d\nlast seq  %d\nlast hash %s\n",
				path, res.Records, res.Segments, res.FirstSeq, res.LastSeq, res.LastHash)
		},
	}
	verify.Flags().StringVar(&state, "state", DefaultState, "the daemon's state directory")
	verify.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "SEQ:HASH of a record noted earlier; the log must still hold it")
	verify.Flags().StringVar(&start, "start", "", "SEQ:HASH of the last record of segments moved elsewhere: the log may begin right after it")
	cmd.AddCommand(verify)
	return cmd
}

// auditError turns a verification failure into EBADMSG naming the file
// and record.
func auditError(path string, err error) error {
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		if code, _ := provider.CodeOf(err); code == provider.ENOENT {
			return withHint(err, "no audit log at "+path+"; give the daemon's state directory with --state")
		}
		return err
	}
	file := path
	if ve.File != "" {
		file = ve.File
	}
	line, seq := strconv.Itoa(ve.Line), strconv.FormatUint(ve.Seq, 10)
	e := provider.Errorf(provider.EBADMSG, "audit log %s: %w", path, ve)
	return &detailed{
		err: withHint(e, "records before line "+line+" are intact (in "+file+", and every segment before it); the record at line "+line+" (seq "+seq+") and everything after it cannot be trusted: "+
			"keep a copy of the log for investigation, find out who could write "+filepath.Dir(file)+", and see docs/operations.md"),
		fields: map[string]any{"file": file, "line": ve.Line, "seq": ve.Seq, "problem": ve.Reason},
	}
}

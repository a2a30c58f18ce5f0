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
	var state string
	var checkpoints []string
	verify := &cobra.Command{
		Use:   "verify [--state DIR] [--checkpoint SEQ:HASH]...",
		Short: "Check the audit log's hash chain; report the first bad record",
		Long: `Verify reads <state>/audit/audit.jsonl (default state: ./` + DefaultState + `) and checks
every record: canonical form, sequence numbers, and the SHA-256 chain.
It does not need the daemon. On success it prints the number of records and
the last seq and hash (note them elsewhere: given later as --checkpoint, they
also reveal a truncated or rewritten log). On failure it names the first bad
record and exits 74 (EBADMSG).`,
		Example: `  keystorectl audit verify --state /var/lib/keystored
  keystorectl audit verify --checkpoint 1200:3f5a...`,
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
			path := auditFile(state)
			res, err := audit.VerifyFile(path, cps...)
			if err != nil {
				return auditError(path, err)
			}
			if a.json {
				return a.emit(struct {
					File     string `json:"file"`
					OK       bool   `json:"ok"`
					Records  int    `json:"records"`
					LastSeq  uint64 `json:"last_seq"`
					LastHash string `json:"last_hash"`
				}{path, true, res.Records, res.LastSeq, res.LastHash})
			}
			return a.printf("audit log %s: ok, %d records\nlast seq  %d\nlast hash %s\n", path, res.Records, res.LastSeq, res.LastHash)
		},
	}
	verify.Flags().StringVar(&state, "state", DefaultState, "the daemon's state directory")
	verify.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "SEQ:HASH of a record noted earlier; the log must still hold it")
	cmd.AddCommand(verify)
	return cmd
}

// auditError turns a verification failure into EBADMSG naming the record.
func auditError(path string, err error) error {
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		if code, _ := provider.CodeOf(err); code == provider.ENOENT {
			return withHint(err, "no audit log at "+path+"; give the daemon's state directory with --state")
		}
		return err
	}
	line, seq := strconv.Itoa(ve.Line), strconv.FormatUint(ve.Seq, 10)
	e := provider.Errorf(provider.EBADMSG, "audit log %s: %w", path, ve)
	return &detailed{
		err: withHint(e, "records before line "+line+" are intact; the record at line "+line+" (seq "+seq+") and everything after it cannot be trusted: "+
			"keep a copy of the log for investigation, find out who could write "+path+", and see docs/operations.md"),
		fields: map[string]any{"line": ve.Line, "seq": ve.Seq, "problem": ve.Reason},
	}
}

package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
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
	var state, start, pubkey, shippedPath string
	var allowTail bool
	var checkpoints []string
	verify := &cobra.Command{
		Use:   "verify [--state DIR | FILE] [--pubkey FILE] [--shipped FILE] [--allow-unsigned-tail] [--checkpoint SEQ:HASH]... [--start SEQ:HASH]",
		Short: "Check the audit log's hash chain and signed checkpoints across all its segments; report the first bad record",
		Long: `Verify reads the audit log under <state>/audit (default state: ./` + DefaultState + `), or the
log whose current file is FILE: every sealed segment (audit-<first seq>.jsonl),
oldest first, then the current file audit.jsonl, as one chain. It checks every
record — canonical form, sequence numbers, the SHA-256 chain, also from one
segment to the next — and reports a segment missing in the middle or renamed.
It does not need the daemon.

With --pubkey FILE (the daemon's checkpoint key, PEM "PUBLIC KEY", from
keystorectl audit pubkey) it also checks every signed checkpoint record, and
requires the log to end with the daemon's "stop" checkpoint: forged appends,
rewrites and a cut tail are then detected without any other input. For a
running daemon's log, --allow-unsigned-tail reports the records after the
last checkpoint instead of failing. With --shipped FILE (checkpoint lines
shipped off the host by a sink) every shipped checkpoint must be in the log,
unchanged; one past the log's end means the log was cut.

On success it prints the number of records and segments, the first seq and
the last seq and hash, and what the signatures proved. On failure it names
the file and line of the first bad record, says from which seq on the log is
untrusted, and exits 74 (EBADMSG).

A log must start at seq 1, or after segments the daemon removed itself
([audit] max_segments: it records each removal). If you moved old segments
elsewhere, verify them there and give their last seq and hash as --start.`,
		Example: `  keystorectl audit verify --state /var/lib/keystored --pubkey audit.pub
  keystorectl audit verify --pubkey audit.pub --shipped shipped-checkpoints.jsonl /backup/audit/audit.jsonl
  keystorectl audit verify --pubkey audit.pub --allow-unsigned-tail   # a running daemon
  keystorectl audit verify --checkpoint 1200:3f5a...
  keystorectl audit verify --start 480113:9c0e...   # older segments archived`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{errors.New("audit verify takes at most one FILE"), cmd.CommandPath()}
			}
			if len(args) == 1 && cmd.Flags().Changed("state") {
				return usageError{errors.New("audit verify takes --state DIR or FILE, not both"), cmd.CommandPath()}
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			var o audit.VerifyOptions
			o.AllowUnsignedTail = allowTail
			for _, s := range checkpoints {
				cp, err := audit.ParseCheckpoint(s)
				if err != nil {
					return usageError{err, "keystorectl audit verify"}
				}
				o.Checkpoints = append(o.Checkpoints, cp)
			}
			if start != "" {
				cp, err := audit.ParseCheckpoint(start)
				if err != nil {
					return usageError{err, "keystorectl audit verify"}
				}
				o.Start = cp
			}
			if pubkey != "" {
				k, err := readEd25519PublicKey(pubkey)
				if err != nil {
					return err
				}
				o.PublicKey = k
			}
			if shippedPath != "" {
				recs, err := readShipped(shippedPath)
				if err != nil {
					return err
				}
				o.Shipped = recs
			}
			path := auditFile(state)
			if len(args) == 1 {
				path = args[0]
			}
			res, err := audit.VerifyLogWith(path, o)
			if err != nil {
				return auditError(path, res, err)
			}
			if a.json {
				return a.emit(struct {
					File         string `json:"file"`
					OK           bool   `json:"ok"`
					Records      int    `json:"records"`
					Segments     int    `json:"segments"`
					FirstSeq     uint64 `json:"first_seq"`
					LastSeq      uint64 `json:"last_seq"`
					LastHash     string `json:"last_hash"`
					Signed       bool   `json:"signed"`
					KeyRef       string `json:"key_ref,omitempty"`
					LastSigned   uint64 `json:"last_signed,omitempty"`
					Checkpoints  int    `json:"checkpoints,omitempty"`
					Unsigned     uint64 `json:"unsigned,omitempty"`
					EndsWithStop bool   `json:"ends_with_stop,omitempty"`
					Shipped      int    `json:"shipped_found,omitempty"`
				}{path, true, res.Records, res.Segments, res.FirstSeq, res.LastSeq, res.LastHash,
					o.PublicKey != nil, res.KeyRef, res.LastSigned, res.Checkpoints, res.Unsigned, res.EndsWithStop, res.Shipped})
			}
			if err := a.printf("audit log %s: ok, %d records in %d segment files\nfirst seq %d\nlast seq  %d\nlast hash %s\n",
				path, res.Records, res.Segments, res.FirstSeq, res.LastSeq, res.LastHash); err != nil {
				return err
			}
			if o.PublicKey != nil && res.Checkpoints > 0 {
				if err := a.printf("signed through seq %d by %s (%d checkpoints verified)\n", res.LastSigned, res.KeyRef, res.Checkpoints); err != nil {
					return err
				}
				tail := "ends with the daemon's stop checkpoint\n"
				if !res.EndsWithStop {
					tail = strconv.FormatUint(res.Unsigned, 10) + " unsigned records after it (a live log: not proven until the next checkpoint)\n"
				}
				if err := a.printf("%s", tail); err != nil {
					return err
				}
			} else if o.PublicKey == nil {
				if err := a.printf("chain only: without --pubkey a rewrite or a cut tail cannot be seen\n"); err != nil {
					return err
				}
			}
			if len(o.Shipped) > 0 {
				return a.printf("%d of %d shipped checkpoints found in the log, unchanged (the others predate its first record)\n", res.Shipped, len(o.Shipped))
			}
			return nil
		},
	}
	verify.Flags().StringVar(&state, "state", DefaultState, "the daemon's state directory")
	verify.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "SEQ:HASH of a record noted earlier; the log must still hold it")
	verify.Flags().StringVar(&start, "start", "", "SEQ:HASH of the last record of segments moved elsewhere: the log may begin right after it")
	verify.Flags().StringVar(&pubkey, "pubkey", "", "PEM file with the checkpoint key's public key: verify signed checkpoints")
	verify.Flags().StringVar(&shippedPath, "shipped", "", "file of checkpoint lines shipped off the host: each must be in the log")
	verify.Flags().BoolVar(&allowTail, "allow-unsigned-tail", false, "a running daemon's log: report records after the last checkpoint instead of failing")
	cmd.AddCommand(verify, a.auditPubkeyCommand())
	return cmd
}

// readEd25519PublicKey reads a PEM "PUBLIC KEY" (PKIX) holding an
// Ed25519 key.
func readEd25519PublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--pubkey: %w", err), "keystorectl audit verify"}
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, usageError{fmt.Errorf("--pubkey %s: not a PEM \"PUBLIC KEY\" block", path), "keystorectl audit verify"}
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, usageError{fmt.Errorf("--pubkey %s: %w", path, err), "keystorectl audit verify"}
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, usageError{fmt.Errorf("--pubkey %s: a %T, not an Ed25519 key", path, k), "keystorectl audit verify"}
	}
	return ek, nil
}

// readShipped reads a shipped-checkpoint file.
func readShipped(path string) ([]audit.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--shipped: %w", err), "keystorectl audit verify"}
	}
	recs, err := audit.ParseShipped(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, provider.Errorf(provider.EBADMSG, "--shipped %s: %w", path, err)
	}
	return recs, nil
}

// auditError turns a verification failure into EBADMSG naming the file
// and record, and what is untrusted.
func auditError(path string, res audit.VerifyResult, err error) error {
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
	keep := "keep a copy of the log for investigation, find out who could write " + filepath.Dir(file) + ", and see docs/operations.md"
	var hint string
	switch {
	case ve.File == audit.ShippedFile:
		hint = "line " + line + " of the shipped checkpoints does not verify: the wrong --pubkey, or the shipped copy was altered; the log itself was not judged"
	case ve.UntrustedFrom < ve.Seq:
		hint = "every record from seq " + strconv.FormatUint(ve.UntrustedFrom, 10) + " on is untrusted: the chain holds together but disagrees with what vouches for it (found at line " + line + " of " + file + "); " + keep
	default:
		hint = "the record at line " + line + " (seq " + seq + ") fails its check; it and everything after it cannot be trusted"
		if res.Checkpoints > 0 {
			hint += "; the records through seq " + strconv.FormatUint(res.LastSigned, 10) + " are covered by a valid signed checkpoint"
		} else {
			hint += "; the records before it chain correctly, which proves them only as far as a signed or noted checkpoint covers them"
		}
		hint += ": " + keep
	}
	return &detailed{
		err:    withHint(e, hint),
		fields: map[string]any{"file": file, "line": ve.Line, "seq": ve.Seq, "problem": ve.Reason, "untrusted_from": ve.UntrustedFrom},
	}
}

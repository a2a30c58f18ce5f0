package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

func (a *app) sweepCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "sweep [--limit N]",
		Short: "Rotate every key past its rotation period now (operators)",
		Long: `Sweep rotates every active key whose primary version is older than its
rotation period, in every app, now: the daemon does the same on its own
schedule ([rotation] sweep_interval). Operators only (EPERM otherwise).

It prints each key it rotated with its new primary version, then a summary
line. The daemon examines at most --limit keys (default and at most 1000)
per call; keystorectl calls again until every key was examined. A key that
fails to rotate (EDQUOT at its versions quota, an unreadable key's EIO) is
reported on stderr and does not stop the sweep; the exit status is then
that of the first failure.`,
		Example: `  keystorectl sweep
  # rotated billing/signing/invoices: version 4 is primary
  # swept 1200 keys: 1 rotated, 0 failed`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if limit < 0 || limit > maxSweepLimit {
				return usageError{fmt.Errorf("--limit must be 0 (the daemon's default) to %d", maxSweepLimit), "keystorectl sweep"}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			return a.sweep(c, limit)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("keys the daemon examines per call (0: its default; at most %d)", maxSweepLimit))
	return cmd
}

// maxSweepLimit is the most keys one sweep call examines.
const maxSweepLimit = 1000

type sweepJSON struct {
	Examined int                `json:"examined"`
	Rotated  []rotatedJSON      `json:"rotated"`
	Failed   []sweepFailureJSON `json:"failed"`
}

type rotatedJSON struct {
	Key     string `json:"key"`
	Version uint32 `json:"version"`
}

type sweepFailureJSON struct {
	Key   string    `json:"key"`
	Error errorJSON `json:"error"`
}

// sweepFailed is the error of a sweep in which keys failed to rotate: its
// code is the first failure's, for the exit status.
type sweepFailed struct {
	first error
	n     int
}

func (e *sweepFailed) Error() string {
	return fmt.Sprintf("%d key(s) failed to rotate; the first: %v", e.n, e.first)
}
func (e *sweepFailed) Unwrap() error { return e.first }

// sweep calls Sweep until every key was examined, printing the rotated
// keys as they come (with --json: one object at the end).
func (a *app) sweep(c *client.Client, limit int) error {
	out := sweepJSON{Rotated: []rotatedJSON{}, Failed: []sweepFailureJSON{}}
	var failed *sweepFailed
	opts := client.SweepOptions{Limit: limit}
	seen := map[string]bool{}
	for {
		res, err := c.Sweep(a.ctx, opts)
		if err != nil {
			if code, _ := client.CodeOf(err); code == provider.EPERM {
				err = withHint(err, "only operators may sweep (the daemon's operators list, docs/operations.md); the daemon sweeps on its own every [rotation] sweep_interval")
			}
			return err
		}
		out.Examined += res.Examined
		for _, r := range res.Rotated {
			out.Rotated = append(out.Rotated, rotatedJSON{Key: r.Key, Version: r.Version})
			if !a.json {
				if err := a.printf("rotated %s: version %d is primary\n", r.Key, r.Version); err != nil {
					return err
				}
			}
		}
		for _, f := range res.Failed {
			code, ok := client.CodeOf(f.Err)
			if !ok {
				code = provider.EIO
			}
			out.Failed = append(out.Failed, sweepFailureJSON{Key: f.Key, Error: errorJSON{Reason: code.String(), Message: f.Err.Error()}})
			if failed == nil {
				failed = &sweepFailed{first: f.Err}
			}
			failed.n++
			if !a.json {
				fmt.Fprintf(a.stderr, "keystorectl: warning: %s did not rotate: %v (%s)\n", f.Key, f.Err, code)
			}
		}
		if res.NextPageToken == "" {
			break
		}
		if seen[res.NextPageToken] {
			return provider.Errorf(provider.EIO, "keystored repeated a page token while sweeping")
		}
		seen[res.NextPageToken] = true
		opts.PageToken = res.NextPageToken
	}
	var ferr error
	if failed != nil {
		ferr = withHint(failed, "the keys above did not rotate; a key at its versions quota (EDQUOT) needs [quotas] versions_per_key raised or a new key (docs/operations.md); others: see the daemon's log")
	}
	if a.json {
		if ferr != nil {
			// One JSON object per run: the error object carries the result.
			return &detailed{err: ferr, fields: map[string]any{"examined": out.Examined, "rotated": out.Rotated, "failed": out.Failed}}
		}
		return a.emit(out)
	}
	if err := a.printf("swept %d keys: %d rotated, %d failed\n", out.Examined, len(out.Rotated), len(out.Failed)); err != nil {
		return err
	}
	return ferr
}

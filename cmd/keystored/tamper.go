package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/tamper"
	"github.com/nexus-os/keystored/internal/tpmcounter"
)

// snapshotInterval is how often the daemon rewrites the audit index
// snapshot (<state>/audit-index) while it runs; it is also written
// before old audit segments are pruned and at stop.
const snapshotInterval = time.Minute

// within reports whether path is in dir or below it, symlinks resolved
// where the paths exist.
func within(dir, path string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	where, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(filepath.Dir(where)); err == nil {
		where = filepath.Join(r, filepath.Base(where))
	}
	rel, err := filepath.Rel(abs, where)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)), nil
}

// openCounter opens the external monotonic counter of [counter], or
// returns nil when none is configured. A file counter inside the state
// directory is refused: a restored state directory would bring its
// counter back with it.
func openCounter(ctx context.Context, c counterSettings, state string) (tamper.Counter, error) {
	switch c.kind {
	case "":
		return nil, nil
	case "file":
		inside, err := within(state, c.path)
		if err != nil {
			return nil, fmt.Errorf("counter: %w", err)
		}
		if inside {
			return nil, fmt.Errorf("counter.path %s is inside the state directory %s: a restored state directory would bring the counter back with it; put it on another file system or device", c.path, state)
		}
		fc, err := tamper.OpenFileCounter(c.path)
		if err != nil {
			return nil, fmt.Errorf("counter: %w", err)
		}
		return fc, nil
	case "tpm":
		tc, err := tpmcounter.Open(ctx, tpmcounter.Options{Path: c.device, Index: c.nvIndex})
		if err != nil {
			return nil, fmt.Errorf("counter: %w", err)
		}
		return tpmCounter{tc}, nil
	}
	return nil, fmt.Errorf("counter: unknown type %q", c.kind)
}

// tpmCounter is the TPM counter as the tracker needs it. An index never
// incremented (Read 0: defined by this Open, on first use or after the
// TPM was cleared or wiped) is a missing counter (tamper.ErrCounterMissing),
// and Create is its first increment: the TPM starts a counter's first
// increment above the largest value any counter had on it, not at 1, and
// the tracker's rule that each increment gives the last value + 1 holds
// from there on. (Read as 0, a cleared TPM's counter jumped at its first
// increment, which the tracker took for another process advancing it,
// so --accept-counter-change could not start the daemon.)
type tpmCounter struct{ *tpmcounter.Counter }

func (c tpmCounter) Read(ctx context.Context) (uint64, error) {
	v, err := c.Counter.Read(ctx)
	if err == nil && v == 0 {
		return 0, provider.Errorf(provider.ENOENT, "%s: %w: the index was never incremented (just defined: first use, or the TPM was cleared or wiped)", c.Describe(), tamper.ErrCounterMissing)
	}
	return v, err
}

// Create makes the first increment; its value is read back by the tracker.
func (c tpmCounter) Create(ctx context.Context) error {
	_, err := c.Counter.Increment(ctx)
	return err
}

// syslogTag is the syslog tag of the checkpoint lines, apart from the
// daemon's own log (journalctl -t keystored-audit -o cat lists them).
const syslogTag = "keystored-audit"

// openSinks opens [audit]'s checkpoint sinks. A checkpoint file in the
// state directory is refused: it would be no copy at all.
func openSinks(c checkpointSettings, state string) ([]audit.CheckpointSink, error) {
	var sinks []audit.CheckpointSink
	if c.file != "" {
		if inside, err := within(state, c.file); err != nil || inside {
			if err == nil {
				err = fmt.Errorf("%s is inside the state directory %s: copies of the checkpoints must live where the state's writer cannot rewrite them with it", c.file, state)
			}
			return nil, fmt.Errorf("audit.checkpoint_file: %w", err)
		}
		s, err := audit.NewFileSink(c.file)
		if err != nil {
			return nil, fmt.Errorf("audit.checkpoint_file: %w", err)
		}
		sinks = append(sinks, s)
	}
	if c.syslog != "" {
		network, addr := "", ""
		if c.syslog != "local" {
			network, addr = c.syslog[:3], c.syslog[4:]
		}
		s, err := audit.NewSyslogSink(network, addr, syslogTag)
		if err != nil {
			for _, o := range sinks {
				if cerr := o.Close(); cerr != nil {
					err = errors.Join(err, cerr)
				}
			}
			return nil, fmt.Errorf("audit.checkpoint_syslog: %w", err)
		}
		sinks = append(sinks, s)
	}
	return sinks, nil
}

// startSigning makes (on first start) or loads the daemon's audit
// checkpoint key and attaches it to the log: from now on the log signs a
// checkpoint at once, every c.every records or c.interval, and at stop.
//
// Before the log signs anything new, the checkpoints it holds after the
// audit index's snapshot are verified with the key: a tail rewritten
// with its chain recomputed is refused here (tamper.ErrLogForged).
func startSigning(ctx context.Context, ks *core.Keystore, alog *audit.Log, tr *tamper.Tracker, state string, c checkpointSettings, sinks []audit.CheckpointSink, logger *slog.Logger) error {
	closeSinks := func(err error) error {
		for _, s := range sinks {
			if cerr := s.Close(); cerr != nil {
				logger.Warn("closing a checkpoint sink", "err", cerr)
			}
		}
		return err
	}
	signer, err := ks.AuditSigner(ctx)
	if err != nil {
		return closeSinks(withHint(fmt.Errorf("audit checkpoint key %s: %w", core.AuditSignerKey, err),
			"the provider must be able to make and use an Ed25519 key for the audit log's signed checkpoints (docs/audit.md)"))
	}
	if err := tr.Verify(ctx, signer.PublicKey()); err != nil {
		return closeSinks(auditRefused(err, state))
	}
	// From here on the log owns the sinks (it closes them).
	if err := alog.SetSigner(signer, c.every, c.interval, sinks...); err != nil {
		return fmt.Errorf("audit checkpoints: %w", err)
	}
	// The counter's start rules (its records are signed from now on) and
	// the first signed snapshot of the index.
	if err := tr.Start(ctx, signer); err != nil {
		return auditRefused(err, state)
	}
	logger.Info("audit log checkpoints signed", "key", signer.KeyRef(), "every", c.every, "interval", c.interval.String(), "sinks", len(sinks))
	return nil
}

// The background scan's pace: it starts scanStartDelay after the daemon
// serves and reads scanBatch keys per scanPause at most, so that the
// first requests after a start (cold page cache: every key read from
// disk) are not queued behind it. At this pace 10^5 keys take ≥ 16 s,
// 10^6 ≥ 160 s.
const (
	scanStartDelay = 2 * time.Second
	scanBatch      = 64
	scanPause      = 10 * time.Millisecond
)

// scanKeys runs in the background after start: scanStartDelay after the
// daemon serves, it builds core's key index (so that the first List does
// not walk the key tree), then checks every key the audit index knows
// against its files, so that a rolled-back key is reported (logged and
// audited by the core, listed by keystorectl keys list) soon after start
// rather than at its first use. The check goes at a bounded pace
// (scanBatch keys per scanPause). It stops with ctx.
func scanKeys(ctx context.Context, ks *core.Keystore, ids []string, logger *slog.Logger) {
	if !pause(ctx, scanStartDelay) {
		return
	}
	if err := ks.LoadIndex(ctx); err != nil && ctx.Err() == nil {
		logger.Warn("key index not built; the first List builds it", "err", err)
	}
	bad := 0
	for i, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if i > 0 && i%scanBatch == 0 && !pause(ctx, scanPause) {
			return
		}
		kid, err := provider.ParseKeyID(id)
		if err != nil {
			logger.Error("audit index names a malformed key ID", "key", id, "err", err)
			bad++
			continue
		}
		switch err := ks.CheckKey(ctx, kid); {
		case err == nil:
		case errors.Is(err, core.ErrRolledBack) || errors.Is(err, core.ErrNotInLog):
			bad++
			logger.Error("key refused: its files disagree with the audit log", "key", id, "err", err)
		case errors.Is(err, provider.ErrNotFound):
			// Known to the log, no files, not a rollback: an
			// interrupted create (storage.md).
		default:
			bad++
			logger.Warn("key unreadable", "key", id, "err", err)
		}
	}
	if bad > 0 {
		logger.Error("keys refused at start; keystorectl list --unreadable shows them (docs/operations.md, \"Rolled-back keys\")", "count", bad, "checked", len(ids))
		return
	}
	logger.Info("key files agree with the audit log", "checked", len(ids))
}

// snapshotLoop rewrites the audit index snapshot every snapshotInterval
// until ctx ends.
func snapshotLoop(ctx context.Context, tr *tamper.Tracker, logger *slog.Logger) {
	t := time.NewTicker(snapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := tr.Snapshot(); err != nil {
				logger.Error("audit index snapshot not written", "err", err)
			}
		}
	}
}

// auditRefused is the error of an audit log the daemon will not start
// on, with the operator's way out: a tamper refusal names its override,
// any other failure points at keystorectl audit verify.
func auditRefused(err error, state string) error {
	switch {
	case errors.Is(err, tamper.ErrLogMissing), errors.Is(err, tamper.ErrLogReplaced), errors.Is(err, tamper.ErrIndexMissing),
		errors.Is(err, tamper.ErrIndexCorrupt), errors.Is(err, tamper.ErrLogAppended), errors.Is(err, tamper.ErrLogForged):
		return withHint(err, "restore the audit log of "+state+" if you have it; if the change is known and accepted, start once with --accept-audit-log-change (audited) — docs/operations.md, \"When the daemon refuses to start\"")
	case errors.Is(err, tamper.ErrCounterAhead), errors.Is(err, tamper.ErrCounterBehind), errors.Is(err, tamper.ErrCounterMissing):
		return withHint(err, "a restored backup of the state directory, or a replaced or reset counter; if known and accepted, start once with --accept-counter-change (audited) — docs/operations.md, \"When the daemon refuses to start\"")
	}
	return withHint(fmt.Errorf("audit log: %w", err), "keystorectl audit verify --state "+state+" shows the first bad record")
}

// The tracker's index is what the core checks key records against.
var _ core.Generations = (*tamper.Index)(nil)

// pause waits d or until ctx ends; it reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

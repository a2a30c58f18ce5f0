package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/server"
)

// reloadOp is the audit operation of a configuration reload.
const reloadOp = "daemon.reload"

// reloader applies SIGHUP: it reads and validates the whole config file
// again and swaps what can change while the daemon runs — the identity
// map (apps, operators, unmapped) and the trust anchors — into the server
// at once, and the sweep interval into the scheduled sweep. Anything else
// that changed (socket group, metrics address, audit, limits, quotas,
// scheduler, KEK) is reported as needing a restart and keeps its running value. On any error nothing changes. Every attempt is logged
// and audited.
type reloader struct {
	o       *options
	srv     *server.Server
	sweeper *server.Sweeper
	alog    *audit.Log
	logger  *slog.Logger
	running settings // what runs now
	// metricsFlag: --metrics-addr was given, so the config's
	// metrics_addr does not matter.
	metricsFlag bool
}

// reload handles one SIGHUP.
func (r *reloader) reload(ctx context.Context) {
	if r.o.config == "" {
		r.logger.Info("SIGHUP: no --config file, nothing to reload")
		r.audit(ctx, "ok", "no config file")
		return
	}
	next, err := loadConfig(r.o.config)
	var anchors *server.Anchors
	if err == nil && next.anchorsDir != "" {
		anchors, err = server.LoadAnchors(next.anchorsDir)
	}
	if err == nil {
		err = r.srv.Reload(next.identity, anchors)
	}
	if err != nil {
		r.logger.Error("SIGHUP: configuration reload refused; the running configuration is unchanged", "err", err)
		code := provider.EINVAL
		if c, ok := provider.CodeOf(err); ok {
			code = c
		}
		r.audit(ctx, code.String(), "config refused; running configuration unchanged")
		return
	}
	stale := r.needsRestart(next)
	r.running.identity, r.running.anchorsDir = next.identity, next.anchorsDir
	sweep := ""
	if next.sweepInterval != r.running.sweepInterval {
		// Validated with the config: SetInterval cannot refuse it.
		if err := r.sweeper.SetInterval(next.sweepInterval); err != nil {
			r.logger.Error("SIGHUP: rotation.sweep_interval not applied", "err", err)
		} else {
			r.running.sweepInterval = next.sweepInterval
			sweep = "; sweep_interval=" + next.sweepInterval.String()
		}
	}
	args := []any{"config", r.o.config, "unmapped", next.identity.Unmapped().String(), "anchors", anchors.Len(),
		"sweep_interval", r.running.sweepInterval.String()}
	if len(stale) > 0 {
		args = append(args, "restart_needed_for", strings.Join(stale, ","))
		r.logger.Warn("SIGHUP: these settings changed in the config file but take effect only at the next start", "keys", strings.Join(stale, ", "))
	}
	r.logger.Info("SIGHUP: configuration reloaded (apps, operators, unmapped, anchors, sweep interval)", args...)
	detail := "identity and anchors reloaded; anchors=" + strconv.Itoa(anchors.Len()) + sweep
	if len(stale) > 0 {
		detail += "; restart needed for " + strings.Join(stale, ",")
	}
	r.audit(ctx, "ok", detail)
}

// needsRestart names the settings of next that differ from the running
// ones and cannot change without a restart.
func (r *reloader) needsRestart(next settings) []string {
	cur := r.running
	var out []string
	if next.socketGID != cur.socketGID {
		out = append(out, "socket_group")
	}
	if next.metricsAddr != cur.metricsAddr && !r.metricsFlag {
		out = append(out, "metrics_addr")
	}
	if next.auditSync != cur.auditSync {
		out = append(out, "audit.sync")
	}
	if next.auditSegment != cur.auditSegment || next.auditMaxSegs != cur.auditMaxSegs {
		out = append(out, "audit.segments")
	}
	if !reflect.DeepEqual(next.quotas, cur.quotas) {
		out = append(out, "quotas")
	}
	if next.scheduler != cur.scheduler {
		out = append(out, "scheduler")
	}
	if !reflect.DeepEqual(next.limits, cur.limits) {
		out = append(out, "limits")
	}
	if next.shutdownTimeout != cur.shutdownTimeout {
		out = append(out, "limits.shutdown_timeout")
	}
	if next.kek.Values() != cur.kek.Values() {
		out = append(out, "kek")
	}
	if next.checkpoints != cur.checkpoints {
		out = append(out, "audit.checkpoints")
	}
	if next.counter != cur.counter {
		out = append(out, "counter")
	}
	if next.cache != cur.cache {
		out = append(out, "cache")
	}
	if next.provider != cur.provider {
		out = append(out, "provider")
	}
	return out
}

// audit writes the reload's audit record, as the daemon itself; a failure
// is logged (the reload has happened or not regardless).
func (r *reloader) audit(ctx context.Context, result, detail string) {
	if len(detail) > audit.MaxField {
		detail = detail[:audit.MaxField]
	}
	rec := audit.Record{
		Time:   clock.System{}.Now(),
		Caller: audit.Caller{UID: int64(os.Geteuid()), GID: int64(os.Getegid()), PID: int64(os.Getpid())},
		Op:     reloadOp,
		Result: result,
		Detail: detail,
	}
	if _, err := r.alog.Append(ctx, rec); err != nil {
		r.logger.Error("SIGHUP: writing the reload's audit record", "err", fmt.Errorf("audit: %w", err))
	}
}

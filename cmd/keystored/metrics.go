package main

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/internal/buildinfo"
	"github.com/nexus-os/keystored/plugin"
)

// The daemon's own metrics, beside the server's (server/metrics.go,
// server/census.go): build information, the audit log's writes and
// fsyncs, and the provider plugin's supervision.

// Metric names of the daemon.
const (
	metricBuildInfo       = "keystored_build_info"
	metricAuditRecords    = "keystored_audit_records_total"
	metricAuditBytes      = "keystored_audit_bytes_total"
	metricAuditSync       = "keystored_audit_fsync_duration_seconds"
	metricPluginRestarts  = "keystored_plugin_restarts_total"
	metricPluginFailed    = "keystored_plugin_failed_starts_total"
	metricPluginState     = "keystored_plugin_state"
	metricPluginStateHelp = "The provider plugin's supervision state: 1 for the current one (running, down, cooling-down, closed)."
)

// newAuditSyncHistogram is the fsync latency of the audit log, fed by
// audit.WithSyncObserver (made before the log is opened).
func newAuditSyncHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: metricAuditSync,
		Help: "Time one fsync of the audit log file took.",
		// 50 µs .. ~1.6 s.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	})
}

// observeSeconds adapts a histogram to audit.WithSyncObserver.
func observeSeconds(h prometheus.Histogram) func(time.Duration) {
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// daemonCollectors returns the daemon's collectors: build info, the audit
// log's (syncs: the histogram the log was opened with) and, with a
// plugin, the plugin's.
func daemonCollectors(alog *audit.Log, syncs prometheus.Histogram, pc *plugin.Client) []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricBuildInfo,
			Help: "Always 1; the labels say which keystored this is.",
			ConstLabels: prometheus.Labels{"version": version, "revision": buildinfo.Revision(),
				"goversion": runtime.Version()},
		}, func() float64 { return 1 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: metricAuditRecords,
			Help: "Audit records written since the daemon started.",
		}, func() float64 { return float64(alog.Stats().Records) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: metricAuditBytes,
			Help: "Bytes of audit records written since the daemon started.",
		}, func() float64 { return float64(alog.Stats().Bytes) }),
		syncs,
	}
	if pc != nil {
		cs = append(cs, pluginCollector{c: pc})
	}
	return cs
}

var (
	pluginRestartsDesc = prometheus.NewDesc(metricPluginRestarts, "Restarts of the provider plugin that succeeded.", nil, nil)
	pluginFailedDesc   = prometheus.NewDesc(metricPluginFailed, "Starts of the provider plugin that failed.", nil, nil)
	pluginStateDesc    = prometheus.NewDesc(metricPluginState, metricPluginStateHelp, []string{"state"}, nil)
)

// pluginCollector exports plugin.Client.Status.
type pluginCollector struct{ c *plugin.Client }

func (p pluginCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pluginRestartsDesc
	ch <- pluginFailedDesc
	ch <- pluginStateDesc
}

func (p pluginCollector) Collect(ch chan<- prometheus.Metric) {
	st := p.c.Status()
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		if m, err := prometheus.NewConstMetric(d, t, v, labels...); err == nil {
			ch <- m
		} else {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
	}
	send(pluginRestartsDesc, prometheus.CounterValue, float64(st.Restarts))
	send(pluginFailedDesc, prometheus.CounterValue, float64(st.FailedStarts))
	for _, s := range plugin.States() {
		v := 0.0
		if s == st.State {
			v = 1
		}
		send(pluginStateDesc, prometheus.GaugeValue, v, s.String())
	}
}

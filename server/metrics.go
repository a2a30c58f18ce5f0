package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors, in a registry of its
// own (never the global default registry).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	refused  prometheus.Counter
	// refusedRequests counts requests refused before their body was read,
	// by reason.
	refusedRequests *prometheus.CounterVec
	// probes counts health and reflection calls, which are not audited.
	probes *prometheus.CounterVec
}

// Metric names.
const (
	MetricRequests    = "keystored_requests_total"
	MetricDuration    = "keystored_request_duration_seconds"
	MetricConnections = "keystored_connections_open"
	MetricRefused     = "keystored_connections_refused_total"
	// MetricRequestsRefused counts requests refused at admission, by
	// reason: rate, denied, size, budget (and overrun: connections closed
	// for sending more than they declared).
	MetricRequestsRefused = "keystored_requests_refused_total"
	// MetricInFlight is the memory reserved by requests being received.
	MetricInFlight = "keystored_inflight_bytes"
	// MetricProbes counts health and reflection calls (not audited), by
	// operation and result.
	MetricProbes = "keystored_probe_requests_total"
)

func newMetrics(openConns func() int, inFlight func() int64) (*metrics, error) {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "Requests handled, by operation and result (ok or the error code name).",
		}, []string{"op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricDuration,
			Help: "Time from the start of a request to its audit record, by operation and result.",
			// 25 µs .. ~6.7 s: a signature takes tens of microseconds.
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 19),
		}, []string{"op", "result"}),
	}
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: MetricRefused,
		Help: "Connections closed at accept: over a connection limit, or without peer credentials.",
	})
	m.refusedRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRequestsRefused,
		Help: "Requests refused before their body was read, by reason (rate, denied, size, budget, overrun).",
	}, []string{"reason"})
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricProbes,
		Help: "Health and reflection calls (not audited), by operation and result.",
	}, []string{"op", "result"})
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricInFlight,
		Help: "Bytes of memory reserved by requests being received.",
	}, func() float64 { return float64(inFlight()) })
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricConnections,
		Help: "Client connections open now.",
	}, func() float64 { return float64(openConns()) })
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.refused, m.refusedRequests, m.probes, inflight, conns} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(op, result string, d time.Duration) {
	m.requests.WithLabelValues(op, result).Inc()
	m.duration.WithLabelValues(op, result).Observe(d.Seconds())
}

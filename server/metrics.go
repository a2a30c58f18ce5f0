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
}

// Metric names.
const (
	MetricRequests    = "keystored_requests_total"
	MetricDuration    = "keystored_request_duration_seconds"
	MetricConnections = "keystored_connections_open"
	MetricRefused     = "keystored_connections_refused_total"
)

func newMetrics(openConns func() int) (*metrics, error) {
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
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricConnections,
		Help: "Client connections open now.",
	}, func() float64 { return float64(openConns()) })
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.refused, conns} {
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

package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// CensusInterval is the longest a metrics scrape reuses the count of
// keys and quota use: a census reads every key's metadata, so scrapes
// within the interval get the previous one.
const CensusInterval = 30 * time.Second

// censusTimeout bounds one census.
const censusTimeout = 10 * time.Second

// Metric names of the census.
const (
	// MetricKeys counts the keys in storage by app and state (active,
	// revoked, destroyed, unreadable).
	MetricKeys = "keystored_keys"
	// MetricQuotaUsed and MetricQuotaLimit are each app's use and quota,
	// by resource (keys, store_values, store_bytes).
	MetricQuotaUsed  = "keystored_quota_used"
	MetricQuotaLimit = "keystored_quota_limit"
)

var (
	keysDesc = prometheus.NewDesc(MetricKeys,
		"Keys in storage by app and state (unreadable: metadata that cannot be read); refreshed at most every 30 s.",
		[]string{"app", "state"}, nil)
	quotaUsedDesc = prometheus.NewDesc(MetricQuotaUsed,
		"What each app holds against its quota, by resource (keys in any state, store_values, store_bytes); refreshed at most every 30 s.",
		[]string{"app", "resource"}, nil)
	quotaLimitDesc = prometheus.NewDesc(MetricQuotaLimit,
		"Each app's quota, by resource (keys, store_values, store_bytes).",
		[]string{"app", "resource"}, nil)
)

// censusCollector exports the census of keys and the apps' quota use,
// cached for CensusInterval (by the server's clock).
type censusCollector struct {
	s *Server

	mu      sync.Mutex
	at      time.Time
	metrics []prometheus.Metric
}

func (c *censusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- keysDesc
	ch <- quotaUsedDesc
	ch <- quotaLimitDesc
}

func (c *censusCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.s.clock.Now(); c.at.IsZero() || now.Sub(c.at) >= CensusInterval || now.Before(c.at) {
		ms, err := c.take()
		if err != nil {
			c.s.log.Warn("metrics: counting keys failed; the previous count is exported", "err", err)
		} else {
			c.metrics, c.at = ms, now
		}
	}
	for _, m := range c.metrics {
		ch <- m
	}
}

// censusCaller is who asks the core for an app's usage on the metrics'
// behalf (Usage wants an operator; it is not audited).
var censusCaller = core.Caller{App: "keystored", Operator: true}

// take runs a census and builds its samples.
func (c *censusCollector) take() ([]prometheus.Metric, error) {
	ctx, cancel := context.WithTimeout(context.Background(), censusTimeout)
	defer cancel()
	census, err := c.s.ks.Census(ctx)
	if err != nil {
		return nil, err
	}
	apps := make(map[string]bool, len(census.Apps))
	for app := range census.Apps {
		apps[app] = true
	}
	storeApps, err := c.s.st.ReadDir(storeRoot)
	if err != nil && !errors.Is(err, provider.ErrNotFound) {
		return nil, err
	}
	for _, de := range storeApps {
		if de.IsDir() && provider.CheckSegment("app ID", de.Name()) == nil {
			apps[de.Name()] = true
		}
	}
	var out []prometheus.Metric
	var errs []error
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
		if err != nil {
			errs = append(errs, err)
			return
		}
		out = append(out, m)
	}
	for app := range apps {
		ac := census.Apps[app]
		for _, st := range []core.KeyState{core.StateActive, core.StateRevoked, core.StateDestroyed} {
			gauge(keysDesc, float64(ac.ByState[st]), app, st.String())
		}
		gauge(keysDesc, float64(ac.Unreadable), app, "unreadable")
		u, err := c.s.Usage(ctx, censusCaller, app)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		gauge(quotaUsedDesc, float64(u.Keys), app, "keys")
		gauge(quotaUsedDesc, float64(u.StoreValues), app, "store_values")
		gauge(quotaUsedDesc, float64(u.StoreBytes), app, "store_bytes")
		gauge(quotaLimitDesc, float64(u.Quota.Keys), app, "keys")
		gauge(quotaLimitDesc, float64(u.Quota.StoreValues), app, "store_values")
		gauge(quotaLimitDesc, float64(u.Quota.StoreBytes), app, "store_bytes")
	}
	return out, errors.Join(errs...)
}

package load

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/internal/daemontest"
)

// metricsLine is what keystored prints on stdout when it serves metrics.
const metricsLine = "keystored: metrics on "

// metricsURL returns the metrics URL the daemon printed.
func metricsURL(t *testing.T, d *daemontest.Daemon) string {
	t.Helper()
	for _, line := range strings.Split(d.Stdout(), "\n") {
		if u, ok := strings.CutPrefix(line, metricsLine); ok {
			return strings.TrimSpace(u)
		}
	}
	t.Fatalf("the daemon did not print %q:\n%s", metricsLine, d.Logs())
	return ""
}

// scraper reads gauges from the metrics endpoint, one connection per
// scrape (no keep-alive, so the scraper holds no goroutine of the daemon
// between scrapes).
type scraper struct {
	url    string
	client *http.Client
}

func newScraper(url string) *scraper {
	return &scraper{url: url, client: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
}

// gauges returns the unlabelled samples named in names.
func (s *scraper) gauges(names ...string) (map[string]float64, error) {
	resp, err := s.client.Get(s.url)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %s: %v", name, err)
		}
		out[name] = f
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("metrics: no sample %s", n)
		}
	}
	return out, nil
}

// settle polls until cond holds for the gauges (returning them), or fails
// the test after timeout with the last values.
func (s *scraper) settle(t *testing.T, what string, timeout time.Duration, cond func(map[string]float64) bool, names ...string) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]float64
	var lastErr error
	for {
		g, err := s.gauges(names...)
		if err == nil {
			last = g
			if cond(g) {
				return g
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: last values %v (error %v)", what, timeout, last, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

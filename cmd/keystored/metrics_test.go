package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// scrape returns the daemon's /metrics text.
func scrape(t *testing.T, d *daemontest.Daemon) string {
	t.Helper()
	m := regexp.MustCompile(`metrics on (http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(d.Stdout())
	if m == nil {
		t.Fatalf("no metrics line in %q", d.Stdout())
	}
	return httpGet(t, m[1])
}

// lint fails the test on any problem promlint finds in a /metrics text.
func lint(t *testing.T, body string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetricsLint: the real daemon, on a provider plugin, exports build
// info, the audit log's records, bytes and fsync latency, the plugin's
// restarts and state, keys per state and quota use, and promlint finds
// no problem in any of its metrics.
func TestMetricsLint(t *testing.T) {
	bin, pin := pinnedPlugin(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	dir := t.TempDir()
	cfg := writeFile(t, dir, "keystored.toml", "unmapped = \"uid\"\n[audit]\nsync = \"every-record\"\n", 0o600)
	d := daemontest.Start(t, daemontest.Options{Dir: dir, Args: []string{"--config", cfg, "--metrics-addr", "127.0.0.1:0",
		"--provider-plugin", bin, "--provider-sha256", pin,
		"--provider-arg", "--kek-file=" + filepath.Join(dir, "plugin-kek")}})
	keys, store, _ := clients(t, d)
	for _, k := range []string{"sig/a", "sig/b"} {
		_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
		mustOK(t, "Create", err)
	}
	_, err := keys.Revoke(t.Context(), &keystorev1.RevokeKeyRequest{Key: "sig/b"})
	mustOK(t, "Revoke", err)
	_, err = store.Put(t.Context(), &keystorev1.PutValueRequest{Name: "v", Value: []byte("abc")})
	mustOK(t, "Put", err)
	body := scrape(t, d)
	lint(t, body)
	app := "uid-" + strconv.Itoa(os.Getuid())
	for _, want := range []string{
		`keystored_build_info{goversion="` + runtime.Version() + `",revision=`,
		// 4 requests, the keys.applied records of the 2 creates and the
		// revoke, and the daemon's own 4 at its first start: the create
		// of its audit key, its keys.applied, the "start" checkpoint and
		// the audit.index record of the index's first snapshot.
		`keystored_audit_records_total 11`,
		`keystored_audit_bytes_total `,
		`keystored_audit_fsync_duration_seconds_count `,
		`keystored_plugin_state{state="running"} 1`,
		`keystored_plugin_state{state="down"} 0`,
		`keystored_plugin_restarts_total 0`,
		`keystored_keys{app="` + app + `",state="active"} 1`,
		`keystored_keys{app="` + app + `",state="revoked"} 1`,
		`keystored_quota_used{app="` + app + `",resource="keys"} 2`,
		`keystored_quota_used{app="` + app + `",resource="store_bytes"} 3`,
		`keystored_quota_limit{app="` + app + `",resource="keys"} 1000`,
		`keystored_requests_total{op="keys.create",result="ok"} 2`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, "keystored_audit_fsync_duration_seconds_count 0\n") {
		t.Error("no audit fsync observed with sync = every-record")
	}
	d.Stop()
}

// TestPromlintCatchesProblems: the lint check can fail: a counter
// without _total is a problem.
func TestPromlintCatchesProblems(t *testing.T) {
	problems, err := promlint.New(strings.NewReader("# HELP x_requests requests\n# TYPE x_requests counter\nx_requests 1\n")).Lint()
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) == 0 {
		t.Error("promlint found no problem in a counter named without _total")
	}
}

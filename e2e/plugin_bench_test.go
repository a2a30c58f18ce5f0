package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/testbin"
)

// BenchmarkDaemonPlugin measures Ed25519 Sign at 64 callers through three
// real daemons, interleaved in short slices so that all see the same
// background load: on the built-in software provider, on the software
// plugin binary (its signatures verified, the default), and on the same
// binary with [provider] verify_signatures = false for its pin. It
// reports each plugin daemon's rate over the in-process one's:
//
//	plugin/inprocess          the default policy
//	plugin-noverify/inprocess verify_signatures = false
//
// Run with: go test -run '^$' -bench DaemonPlugin -benchtime 20x ./e2e/
func BenchmarkDaemonPlugin(b *testing.B) {
	ctx := context.Background()
	bin := testbin.Build(b, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	data, err := os.ReadFile(bin)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	pin := hex.EncodeToString(sum[:])
	pluginArgs := func(dir string) []string {
		return []string{"--provider-plugin", bin, "--provider-sha256", pin, "--provider-arg", "--kek-file=" + filepath.Join(dir, "plugin-kek")}
	}
	// Each daemon's config; BENCH_SCHEDULER_WORKERS sets [scheduler]
	// workers for the plugin daemons (default: the daemon's own).
	sched := ""
	if w := os.Getenv("BENCH_SCHEDULER_WORKERS"); w != "" {
		sched = "[scheduler]\nworkers = " + w + "\n"
	}
	config := func(dir, extra string) string {
		c := filepath.Join(dir, "keystored.toml")
		if err := os.WriteFile(c, []byte("unmapped = \"uid\"\n"+sched+extra), 0o600); err != nil {
			b.Fatal(err)
		}
		return c
	}
	plugDir, noVerifyDir := b.TempDir(), b.TempDir()
	daemons := []struct {
		name string
		opts daemontest.Options
	}{
		{"inprocess", daemontest.Options{}},
		{"plugin", daemontest.Options{Dir: plugDir, Args: append(pluginArgs(plugDir), "--config", config(plugDir, ""))}},
		{"plugin-noverify", daemontest.Options{Dir: noVerifyDir, Args: append(pluginArgs(noVerifyDir), "--config",
			config(noVerifyDir, "[provider]\nverify_signatures = false\ntrusted_plugin_sha256 = \""+pin+"\"\n"))}},
	}
	msg := make([]byte, 32)
	ops := make([]func() error, len(daemons))
	for i, d := range daemons {
		c := dial(b, daemontest.Start(b, d.opts))
		if _, err := c.Create(ctx, "bench/ed", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
			b.Fatalf("%s: %v", d.name, err)
		}
		ops[i] = func() error { _, err := c.Sign(ctx, "bench/ed", msg); return err }
		if n, _, err := runFor(100*time.Millisecond, 64, ops[i]); err != nil || n == 0 { // warm up
			b.Fatalf("%s: %d signs, %v", d.name, n, err)
		}
	}
	const slice = 250 * time.Millisecond
	rate := make([]float64, len(daemons))
	count := make([]int, len(daemons))
	spent := make([]time.Duration, len(daemons))
	for b.Loop() {
		for i := range daemons {
			n, dur, err := runFor(slice, 64, ops[i])
			if err != nil {
				b.Fatalf("%s: %v", daemons[i].name, err)
			}
			count[i] += n
			spent[i] += dur
		}
	}
	for i := range daemons {
		rate[i] = float64(count[i]) / spent[i].Seconds()
		b.ReportMetric(rate[i], daemons[i].name+"-ops/s")
	}
	b.ReportMetric(rate[1]/rate[0], "plugin/inprocess")
	b.ReportMetric(rate[2]/rate[0], "plugin-noverify/inprocess")
}

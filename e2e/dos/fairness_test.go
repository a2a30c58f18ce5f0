package dos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// envFairness selects the full measurement of TestCPUFlood (the figures
// of docs/performance.md); without it the test runs a short flood and
// checks only that the other app's calls succeed.
const envFairness = "KEYSTORED_FAIRNESS"

// envFairnessConfig adds TOML to the daemon's config file (after its
// [apps] table: start with a table, e.g. "[scheduler]\nnice = 0"), to
// measure other settings the same way.
const envFairnessConfig = "KEYSTORED_FAIRNESS_CONFIG"

// callDeadline is each well-behaved call's deadline, as in the issue.
const callDeadline = 10 * time.Second

// batchFlood signs batches of spec.BatchItems messages with a new
// spec.BatchAlgorithm key of its own, spec.Streams calls at a time on each
// of spec.Conns connections, until the process is killed. It prints
// "ready" once the key exists, then one line per finished batch: "ok" or
// the call's reason.
func batchFlood(spec attackSpec) int {
	ctx := context.Background()
	var conns []*client.Client
	for range spec.Conns {
		c, err := client.Dial(ctx, spec.Socket)
		if err != nil {
			fmt.Fprintln(os.Stderr, "attacker:", err)
			return 2
		}
		defer c.Close()
		conns = append(conns, c)
	}
	const key = "flood/k"
	if _, err := conns[0].Create(ctx, key, client.CreateOptions{Algorithm: client.Algorithm(spec.BatchAlgorithm)}); err != nil && !errors.Is(err, client.ErrAlready) {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		return 2
	}
	items := make([]client.SignItem, spec.BatchItems)
	for i := range items {
		items[i] = client.SignItem{Key: key, Message: []byte(fmt.Sprintf("flood message %d", i))}
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(out, s)
		if err := out.Flush(); err != nil {
			os.Exit(3) // the test stopped reading: it is done with us
		}
	}
	say("ready")
	var wg sync.WaitGroup
	for _, c := range conns {
		for range max(spec.Streams, 1) {
			wg.Go(func() {
				for {
					res, err := c.SignBatch(ctx, items)
					reason := "ok"
					switch {
					case err != nil:
						reason = reasonOf(err)
					default:
						for _, r := range res {
							if r.Err != nil {
								reason = "item " + reasonOf(r.Err)
								break
							}
						}
					}
					say(reason)
				}
			})
		}
	}
	wg.Wait()
	return 0
}

func reasonOf(err error) string {
	if c, ok := provider.CodeOf(err); ok {
		return c.String()
	}
	return "untyped: " + err.Error()
}

// latencies is a set of call durations.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (l latencies) String() string {
	return fmt.Sprintf("%d calls, p50 %v, p99 %v, max %v", len(l), l.quantile(0.5).Round(time.Microsecond),
		l.quantile(0.99).Round(time.Microsecond), l.quantile(1).Round(time.Microsecond))
}

// signLoop makes sequential Ed25519 signs, each with callDeadline, until
// n calls or d have passed, and returns their latencies and failures.
func signLoop(ctx context.Context, c *client.Client, n int, d time.Duration) (latencies, []error) {
	var lat latencies
	var failed []error
	msg := []byte("the well-behaved app's message, 64 bytes long, give or take ....")
	end := time.Now().Add(d)
	for i := 0; i < n && time.Now().Before(end); i++ {
		cctx, cancel := context.WithTimeout(ctx, callDeadline)
		t0 := time.Now()
		_, err := c.Sign(cctx, "sig/k", msg)
		lat = append(lat, time.Since(t0))
		cancel()
		if err != nil {
			failed = append(failed, err)
		}
	}
	return lat, failed
}

// daemonTicks is the daemon's CPU time so far, in clock ticks.
func daemonTicks(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	return u + st
}

// waitQuiet waits (bounded) until the daemon uses under 10% of a CPU over
// 300 ms: the stopped flood's batches have drained.
func waitQuiet(t *testing.T, pid int) {
	t.Helper()
	for range 100 {
		a := daemonTicks(t, pid)
		time.Sleep(300 * time.Millisecond)
		if daemonTicks(t, pid)-a <= 3 {
			return
		}
	}
	t.Fatal("the daemon stayed busy 30 s after the flood stopped")
}

// TestCPUFlood is issue 9 item 2: app "attacker" floods SignBatch calls
// of 1,024 ML-DSA-87 items on 8 connections while app "good" signs with
// Ed25519, one call at a time, each with a 10 s deadline. Every call of
// "good" must succeed (nothing times out) and no flood batch may fail.
//
// With KEYSTORED_FAIRNESS=1 it measures the figures of
// docs/performance.md: rounds of an unloaded slice (the flood stopped
// with SIGSTOP and drained) and a loaded slice (SIGCONT), so that the
// machine's background load falls on both; the target (p99 under the
// flood within 5x the unloaded p99) is reported, never asserted: timing
// is not a test's business.
func TestCPUFlood(t *testing.T) {
	full := os.Getenv(envFairness) != ""
	rounds, slice := 1, 3*time.Second
	if full {
		rounds = 8
	} else {
		t.Logf("short run (one loaded slice, nothing measured); %s=1 runs the measurement of docs/performance.md", envFairness)
	}
	f := start(t, "\n"+os.Getenv(envFairnessConfig))
	ctx := t.Context()
	good, err := client.Dial(ctx, f.d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Create(ctx, "sig/k", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if _, failed := signLoop(ctx, good, 200, slice); len(failed) > 0 { // warm-up
		t.Fatalf("unloaded sign: %v", failed[0])
	}

	cmd, out := f.attacker(t, attackerUID, attackSpec{Conns: 8, Streams: 1, BatchItems: 1024, BatchAlgorithm: string(client.MLDSA87)})
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("attacker: %q, %v", line, err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				return
			}
			lines <- strings.TrimSpace(line)
		}
	}()
	batches, reasons := 0, map[string]int{}
	// waitBatches waits for n more finished flood batches.
	waitBatches := func(n int) {
		t.Helper()
		timeout := time.After(2 * time.Minute)
		for range n {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("the attacker exited")
				}
				if l == "ok" {
					batches++
				} else {
					reasons[l]++
				}
			case <-timeout:
				t.Fatal("no flood batch finished in 2 minutes")
			}
		}
	}
	// countBatches counts the batches that finished so far.
	countBatches := func() {
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return
				}
				if l == "ok" {
					batches++
				} else {
					reasons[l]++
				}
			default:
				return
			}
		}
	}

	var before, during latencies
	var failed []error
	var floodTime time.Duration // the flood running: from its (re)start to its stop
	floodStart := time.Now()
	for r := range rounds {
		if full {
			if r > 0 {
				if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				waitQuiet(t, f.d.Pid())
			}
			lat, fail := signLoop(ctx, good, 1<<30, slice)
			before, failed = append(before, lat...), append(failed, fail...)
			if r > 0 {
				if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				floodStart = time.Now()
			}
		}
		// Measure once the flood is in its steady state: a batch of each
		// connection has ended since it started (again).
		waitBatches(8)
		lat, fail := signLoop(ctx, good, 1<<30, slice)
		during, failed = append(during, lat...), append(failed, fail...)
		floodTime += time.Since(floodStart)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	countBatches()
	t.Logf("flood: %d batches of 1024 ML-DSA-87 signatures finished in %v of flooding (%.0f signatures/s), %d failed %v",
		batches, floodTime.Round(time.Millisecond), float64(batches)*1024/floodTime.Seconds(), len(reasons), reasons)
	t.Logf("good, under the flood: %v", during)
	if full {
		ratio := float64(during.quantile(0.99)) / float64(before.quantile(0.99))
		verdict := "met"
		if ratio > 5 {
			verdict = "not met"
		}
		t.Logf("good, unloaded:        %v", before)
		t.Logf("p99 under the flood / unloaded p99 = %.1fx (target 5x: %s); p50 ratio %.1fx; %d of good's calls failed",
			ratio, verdict, float64(during.quantile(0.5))/float64(before.quantile(0.5)), len(failed))
	}
	for _, err := range failed {
		t.Errorf("good's sign: %v", err)
	}
	if len(reasons) > 0 {
		t.Errorf("flood batches failed: %v", reasons)
	}
}

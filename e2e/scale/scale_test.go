// Package scale is the opt-in scale benchmark of keystored: a population
// of many keys through the real daemon (docs/performance.md, "Scale").
//
//	KEYSTORED_SCALE=100000 go test ./e2e/scale -run '^$' -bench Scale -benchtime 1x -timeout 60m -v
//
// Without KEYSTORED_SCALE the benchmark is skipped (it takes minutes).
// The state directory is in the test's temporary directory, which must be
// on the machine's normal filesystem, not tmpfs, for the cold figures to
// mean anything. With KEYSTORED_SCALE_DIR it is <dir>/state-<keys> instead
// and is kept: a later run with the same number of keys reuses the
// population (no create figure then) and measures the rest.
// KEYSTORED_SCALE_CACHE=<keys> sizes the daemon's two caches (by default
// 2^17 keys each).
package scale

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }

const (
	callers   = 64                // concurrent signers
	hotKeys   = 10                // the small working set compared against
	rounds    = 6                 // interleaved rounds of the sign comparison
	slice     = 2 * time.Second   // one side of one round
	creators  = 32                // concurrent creates while populating
	rssSettle = 30 * time.Second  // idle time before VmRSS is read, at least
	rssSteady = 10 * time.Second  // VmRSS unchanged (±0.5 %) this long: settled
	rssMax    = 120 * time.Second // at most this long idle
)

func keyName(i int) string { return fmt.Sprintf("s/k%07d", i) }

func BenchmarkScale(b *testing.B) {
	v := os.Getenv("KEYSTORED_SCALE")
	if v == "" {
		b.Skip("KEYSTORED_SCALE=<keys> is not set: the scale benchmark creates that many keys through the daemon (minutes); " +
			"run: KEYSTORED_SCALE=100000 go test ./e2e/scale -run '^$' -bench Scale -benchtime 1x -timeout 60m -v")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < hotKeys {
		b.Fatalf("KEYSTORED_SCALE=%q: want a number of keys ≥ %d", v, hotKeys)
	}
	dir := b.TempDir()
	reuse := false
	if d := os.Getenv("KEYSTORED_SCALE_DIR"); d != "" {
		dir = filepath.Join(d, "state-"+v)
		if _, err := os.Stat(filepath.Join(dir, "populated")); err == nil {
			reuse = true
		} else if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	// The app's key quota (1000 by default) raised to hold the population,
	// and the per-uid rate limit (20,000/s) out of the way of one caller
	// measuring the daemon's throughput.
	conf := filepath.Join(dir, "keystored.toml")
	body := fmt.Sprintf("operators = [%d]\nunmapped = \"uid\"\n\n[quotas]\nkeys = %d\n\n[limits]\nrate_per_uid = %d\nburst_per_uid = %d\n",
		os.Getuid(), n+hotKeys, 1<<30, 1<<30)
	// KEYSTORED_SCALE_CACHE=<keys> sizes both caches ([cache] keys and
	// unwrapped_keys; the default 2^17 holds less than a population of
	// more than 131,072 keys).
	if c := os.Getenv("KEYSTORED_SCALE_CACHE"); c != "" {
		size, err := strconv.Atoi(c)
		if err != nil || size <= 0 {
			b.Fatalf("KEYSTORED_SCALE_CACHE=%q: want a number of keys", c)
		}
		body += fmt.Sprintf("\n[cache]\nkeys = %d\nunwrapped_keys = %d\n", size, size)
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	opts := daemontest.Options{Dir: dir, State: filepath.Join(dir, "state"), StartTimeout: 10 * time.Minute,
		Args: []string{"--config", conf}}
	ctx := context.Background()
	report := map[string]string{}
	var order []string
	put := func(name, unit string, v float64) {
		b.ReportMetric(v, unit)
		report[name] = strconv.FormatFloat(v, 'g', 4, 64) + " " + unit
		order = append(order, name)
	}

	// 1. The population, created concurrently.
	if reuse {
		b.Logf("reusing the population of %d keys in %s", n, dir)
	} else {
		d := daemontest.Start(b, opts)
		c := dial(b, d)
		t0 := time.Now()
		parallel(b, creators, n, func(i int) error {
			_, err := c.Create(ctx, keyName(i), client.CreateOptions{Algorithm: client.Ed25519})
			return err
		}, func(done int) {
			b.Logf("created %d of %d keys (%.0f/s)", done, n, float64(done)/time.Since(t0).Seconds())
		})
		put("create", "creates/s", float64(n)/time.Since(t0).Seconds())
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		d.Stop()
		if err := os.WriteFile(filepath.Join(dir, "populated"), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	bytes, inodes := diskUse(b, opts.State)
	put("disk", "disk-B/key", float64(bytes)/float64(n))
	put("inodes", "inodes/key", float64(inodes)/float64(n))
	put("audit", "audit-MB", float64(auditBytes(b, opts.State))/1e6)

	// 2. Start-up to the first answered sign, page cache dropped. The
	// daemon's binary is built first: with a reused population no daemon
	// has started yet, and the build (2.3 s) would count as start-up.
	daemontest.Build(b)
	syscall.Sync()
	if os.Geteuid() != 0 {
		b.Log("not root: the page cache is NOT dropped (echo 3 > /proc/sys/vm/drop_caches needs root); the start-up figure is warm")
	} else if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Logf("dropping the page cache failed (%v); the start-up figure is warm", err)
	}
	r := rand.New(rand.NewPCG(uint64(n), 1))
	// This start also serves metrics: the Go runtime's heap figures.
	metricsAddr := freeAddr(b)
	measured := opts
	measured.Args = append(slices.Clone(opts.Args), "--metrics-addr", metricsAddr)
	t0 := time.Now()
	d := daemontest.Start(b, measured)
	serving := time.Since(t0)
	c := dial(b, d)
	if _, err := c.Sign(ctx, keyName(hotKeys+r.IntN(n-hotKeys)), []byte("first")); err != nil {
		b.Fatal(err)
	}
	put("start-serving", "start-serving-ms", float64(serving.Microseconds())/1e3)
	put("start-first-sign", "start-first-sign-ms", float64(time.Since(t0).Microseconds())/1e3)
	// RSS at rest right after the start: the key index, the audit index
	// and the keys read so far, nothing else in the caches.
	startRSS := vmRSS(b, d.Pid())
	put("rss-start-per-key", "rss-start-B/key", float64(startRSS)/float64(n))
	// Where the start's time went: the daemon's log lines, by time.
	b.Logf("cold start began %s; the daemon's log:\n%s", t0.UTC().Format(time.RFC3339Nano), d.Stderr())

	// 3. Warm-up: one pass signing with every key once, in random order
	// (the cold pass: each key's record and handle read from disk, each
	// key unwrapped).
	perm := r.Perm(n)
	t0 = time.Now()
	parallel(b, callers, n, func(i int) error {
		_, err := c.Sign(ctx, keyName(perm[i]), []byte("warm"))
		return err
	}, nil)
	put("cold-pass", "cold-signs/s", float64(n)/time.Since(t0).Seconds())

	// 4. Sign on uniformly random keys vs on 10 keys, interleaved.
	var ratios, randRates, hotRates []float64
	var randLat, hotLat []time.Duration
	for round := range rounds {
		sides := []bool{true, false}
		if round%2 == 1 {
			sides = []bool{false, true}
		}
		for _, random := range sides {
			keys := n
			if !random {
				keys = hotKeys
			}
			var stopPerf func()
			if pd := os.Getenv("KEYSTORED_SCALE_PERF"); pd != "" && round == 0 {
				stopPerf = perfRecord(b, d.Pid(), filepath.Join(pd, fmt.Sprintf("perf-keys%d.data", keys)))
			}
			rate, lat := signFor(b, c, keys, uint64(round))
			if stopPerf != nil {
				stopPerf()
			}
			if random {
				randRates, randLat = append(randRates, rate), append(randLat, lat)
			} else {
				hotRates, hotLat = append(hotRates, rate), append(hotLat, lat)
			}
		}
		ratios = append(ratios, randRates[round]/hotRates[round])
	}
	put("sign-random", "random-signs/s", median(randRates))
	put("sign-10", "10key-signs/s", median(hotRates))
	put("sign-random-p50", "random-p50-ms", float64(medianDur(randLat).Microseconds())/1e3)
	put("sign-10-p50", "10key-p50-ms", float64(medianDur(hotLat).Microseconds())/1e3)
	put("ratio-median", "random/10-median", median(ratios))
	put("ratio-min", "random/10-min", slices.Min(ratios))

	// 5. List every key, all pages (twice: the first builds the index).
	for pass := 1; pass <= 2; pass++ {
		t0 = time.Now()
		got := 0
		o := client.ListOptions{PageSize: 1000}
		for {
			p, err := c.List(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			got += len(p.Keys) + len(p.Unreadable)
			if p.NextPageToken == "" {
				break
			}
			o.PageToken = p.NextPageToken
		}
		if got < n {
			b.Fatalf("list pass %d: %d keys, want %d", pass, got, n)
		}
		put("list-"+strconv.Itoa(pass), "list"+strconv.Itoa(pass)+"-s", time.Since(t0).Seconds())
	}

	// 6. Idle RSS once every key is in memory.
	// The daemon returns free memory to the kernel once idle (one
	// collection, then the release), after its own background work of
	// the burst has ended (with 3×10^5 keys about 25 s: the audit index
	// snapshot's rewrite allocates), so VmRSS is read once it has
	// stopped moving.
	rss := settledRSS(b, d.Pid())
	put("rss", "rss-MiB", float64(rss)/(1<<20))
	put("rss-per-key", "rss-B/key", float64(rss)/float64(n))
	// The live heap at the last collection is the heap goal over
	// 1+GOGC/100 (2 with the default GOGC=100).
	m := scrape(b, metricsAddr)
	put("heap-goal-per-key", "heap-goal-B/key", m["go_memstats_next_gc_bytes"]/float64(n))
	put("heap-alloc-per-key", "heap-alloc-B/key", m["go_memstats_heap_alloc_bytes"]/float64(n))
	// In-use spans over the objects in them (fragmentation), and the
	// heap's free memory still resident (not yet returned to the kernel).
	put("heap-inuse-per-key", "heap-inuse-B/key", m["go_memstats_heap_inuse_bytes"]/float64(n))
	put("heap-free-resident-MiB", "heap-free-resident-MiB", (m["go_memstats_heap_idle_bytes"]-m["go_memstats_heap_released_bytes"])/(1<<20))

	var sb strings.Builder
	fmt.Fprintf(&sb, "scale: %d keys (ratios per round: %.2f)\n", n, ratios)
	for _, k := range order {
		fmt.Fprintf(&sb, "  %-18s %s\n", k, report[k])
	}
	b.Log(sb.String())
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	d.Stop()
}

// parallel runs op(0..n-1) on w goroutines; progress, if set, is called
// about every tenth of the way.
func parallel(b *testing.B, w, n int, op func(i int) error, progress func(done int)) {
	b.Helper()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	step := int64(max(n/10, 1))
	for range w {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := op(int(i)); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("item %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
				if d := done.Add(1); progress != nil && d%step == 0 {
					progress(int(d))
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// signFor signs for one slice at callers goroutines, each on uniformly
// random keys among the first keys; it returns the rate and the median
// latency.
func signFor(b *testing.B, c *client.Client, keys int, seed uint64) (float64, time.Duration) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	var total atomic.Int64
	var once sync.Once
	var firstErr error
	lats := make([][]time.Duration, callers)
	stop := time.Now().Add(slice)
	start := time.Now()
	for g := range callers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			msg := []byte("scale")
			for time.Now().Before(stop) {
				t := time.Now()
				if _, err := c.Sign(ctx, keyName(r.IntN(keys)), msg); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lats[g] = append(lats[g], time.Since(t))
				total.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return float64(total.Load()) / time.Since(start).Seconds(), medianDur(all)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianDur(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// diskUse returns the bytes allocated (st_blocks) and the inodes (files
// and directories) under dir.
func diskUse(b *testing.B, dir string) (bytes, inodes int64) {
	b.Helper()
	err := filepath.WalkDir(dir, func(_ string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			bytes += st.Blocks * 512
		}
		inodes++
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return bytes, inodes
}

// auditBytes returns the size of the audit log's files (audit.jsonl and
// its sealed segments).
func auditBytes(b *testing.B, state string) int64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(state, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !de.IsDir() && strings.HasPrefix(de.Name(), "audit") && strings.Contains(de.Name(), ".jsonl") {
			fi, err := de.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// settledRSS waits rssSettle, then returns pid's VmRSS once it has not
// moved by more than 0.5 % for rssSteady (sampled every second), or
// after rssMax idle.
func settledRSS(b *testing.B, pid int) int64 {
	b.Helper()
	time.Sleep(rssSettle)
	last, since := vmRSS(b, pid), time.Now()
	for waited := rssSettle; waited < rssMax; waited += time.Second {
		time.Sleep(time.Second)
		v := vmRSS(b, pid)
		if d := v - last; d > last/200 || -d > last/200 {
			last, since = v, time.Now()
			continue
		}
		if time.Since(since) >= rssSteady {
			return v
		}
	}
	b.Logf("VmRSS still moving after %s idle; read %d bytes", rssMax, last)
	return last
}

// vmRSS reads VmRSS of pid in bytes.
func vmRSS(b *testing.B, pid int) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func dial(b *testing.B, d *daemontest.Daemon) *client.Client {
	b.Helper()
	c, err := client.Dial(context.Background(), d.Socket)
	if err != nil {
		b.Fatalf("client.Dial(%s): %v\n%s", d.Socket, err, d.Logs())
	}
	return c
}

// perfRecord samples pid with perf (call graphs) until the returned
// function is called: KEYSTORED_SCALE_PERF=<dir> profiles the first
// round's two sides (perf report -i <dir>/perf-keys<N>.data).
func perfRecord(b *testing.B, pid int, out string) func() {
	b.Helper()
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", out)
	if err := cmd.Start(); err != nil {
		b.Logf("perf record: %v (no profile)", err)
		return func() {}
	}
	return func() {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			b.Logf("perf record: %v", err)
		}
		if err := cmd.Wait(); err != nil {
			b.Logf("perf record: %v", err)
		}
	}
}

// freeAddr returns a loopback address with a port free now.
func freeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	return addr
}

// scrape reads the unlabelled samples of the daemon's metrics.
func scrape(b *testing.B, addr string) map[string]float64 {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			b.Error(err)
		}
	}()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = f
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

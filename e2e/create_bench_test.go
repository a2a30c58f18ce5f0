package e2e

import (
	"bufio"
	"context"
	"fmt"
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

// BenchmarkCreates measures key creates through the real daemon (a
// separate process, the default software provider, its state and audit
// log on this machine's filesystem) against the durable-write floor: a
// small file written to a temporary file, fsynced, renamed into a
// directory and the directory fsynced, in the same filesystem as the
// daemon's state. Both run at 1 and at 16 clients (writers), in short
// slices that alternate within each round (b.N rounds), so that other
// work on the machine weighs on both alike; the per-round ratios
// (creates/s ÷ floor writes/s) are reported as their median and minimum.
// Target: >= 0.5 at both.
//
// With strace on PATH (and permission to attach) it then counts the
// fsync and fdatasync calls the daemon makes per create, at 1 and at 16
// clients (at 16, concurrent creates share the audit log's fsyncs).
//
// Run with: go test -run '^$' -bench Creates -benchtime 8x -v ./e2e/
func BenchmarkCreates(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	conf := filepath.Join(dir, "keystored.toml")
	if err := os.WriteFile(conf, []byte("unmapped = \"uid\"\n\n[quotas]\nkeys = 16777216\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	d := daemontest.Start(b, daemontest.Options{Dir: dir, State: filepath.Join(dir, "state"), Args: []string{"--config", conf}})
	c := dial(b, d)
	var seq atomic.Int64
	create := func() error {
		_, err := c.Create(ctx, fmt.Sprintf("create/k%d", seq.Add(1)), client.CreateOptions{Algorithm: client.Ed25519})
		return err
	}
	floor := newFloor(b, filepath.Join(dir, "floor"))
	if err := create(); err != nil { // the app and purpose directories exist from here on
		b.Fatal(err)
	}

	const slice = 400 * time.Millisecond
	clients := []int{1, 16}
	ratios := make([][]float64, len(clients))
	var creates, writes [2]float64
	var spentC, spentW [2]time.Duration
	var daemonCPU [2]time.Duration
	round := 0
	for b.Loop() {
		for i, n := range clients {
			var cr, fr float64
			// Alternate which side goes first, round by round.
			sides := []bool{round%2 == 0, round%2 != 0}
			for _, daemonSide := range sides {
				if daemonSide {
					cpu0 := takeCPU(b, d.Pid())
					k, dur, err := runFor(slice, n, create)
					daemonCPU[i] += takeCPU(b, d.Pid()).sub(cpu0).daemon
					if err != nil {
						b.Fatalf("create at %d clients: %v", n, err)
					}
					creates[i] += float64(k)
					spentC[i] += dur
					cr = float64(k) / dur.Seconds()
				} else {
					k, dur, err := runFor(slice, n, floor.write)
					if err != nil {
						b.Fatalf("floor at %d writers: %v", n, err)
					}
					writes[i] += float64(k)
					spentW[i] += dur
					fr = float64(k) / dur.Seconds()
				}
			}
			ratios[i] = append(ratios[i], cr/fr)
		}
		round++
	}
	b.StopTimer()
	for i, n := range clients {
		r := slices.Clone(ratios[i])
		slices.Sort(r)
		med := r[len(r)/2]
		if len(r)%2 == 0 {
			med = (r[len(r)/2-1] + r[len(r)/2]) / 2
		}
		b.ReportMetric(creates[i]/spentC[i].Seconds(), fmt.Sprintf("creates/s@%d", n))
		b.ReportMetric(float64(daemonCPU[i].Microseconds())/creates[i], fmt.Sprintf("daemon-cpu-µs/create@%d", n))
		b.ReportMetric(writes[i]/spentW[i].Seconds(), fmt.Sprintf("floor/s@%d", n))
		b.ReportMetric(med, fmt.Sprintf("ratio-median@%d", n))
		b.ReportMetric(r[0], fmt.Sprintf("ratio-min@%d", n))
		b.Logf("%d clients: creates %.0f/s, floor %.0f/s; ratio median %.2f, min %.2f over %d rounds (target >= 0.50)",
			n, creates[i]/spentC[i].Seconds(), writes[i]/spentW[i].Seconds(), med, r[0], len(r))
	}

	for _, n := range clients {
		per, err := fsyncsPerCreate(d.Pid(), n, 160, create)
		if err != nil {
			b.Logf("fsyncs per create at %d clients not counted: %v", n, err)
			continue
		}
		b.ReportMetric(per, fmt.Sprintf("fsyncs/create@%d", n))
		b.Logf("%d clients: %.2f fsync/fdatasync calls per create (daemon, strace)", n, per)
	}
}

// floor is the durable-write floor: each write makes a new small file
// (the size of a key's meta.json) the way a careful program does it.
type floor struct {
	tmp, files string
	dir        *os.File // files, for its fsync
	seq        atomic.Int64
	data       []byte
}

func newFloor(b *testing.B, root string) *floor {
	f := &floor{tmp: filepath.Join(root, ".tmp"), files: filepath.Join(root, "files"), data: make([]byte, 900)}
	for _, p := range []string{f.tmp, f.files} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	for i := range f.data {
		f.data[i] = byte('a' + i%26)
	}
	dir, err := os.Open(f.files)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := dir.Close(); err != nil {
			b.Error(err)
		}
	})
	f.dir = dir
	return f
}

// write is one durable write: temp file created, written, fsynced,
// closed, renamed into files/, files/ fsynced.
func (f *floor) write() error {
	name := "f" + strconv.FormatInt(f.seq.Add(1), 10)
	tmp := filepath.Join(f.tmp, name)
	t, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := t.Write(f.data); err != nil {
		return fmt.Errorf("write %s: %w (close: %v)", tmp, err, t.Close())
	}
	if err := t.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w (close: %v)", tmp, err, t.Close())
	}
	if err := t.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(f.files, name)); err != nil {
		return err
	}
	return f.dir.Sync()
}

// fsyncsPerCreate attaches strace to the daemon pid, runs count creates
// from n goroutines, and returns the daemon's fsync and fdatasync calls
// per create.
func fsyncsPerCreate(pid, n, count int, create func() error) (float64, error) {
	path, err := exec.LookPath("strace")
	if err != nil {
		return 0, err
	}
	out, err := os.CreateTemp("", "keystored-strace-*")
	if err != nil {
		return 0, err
	}
	name := out.Name()
	defer func() {
		// A leftover in the temp directory is harmless.
		_ = os.Remove(name)
	}()
	if err := out.Close(); err != nil {
		return 0, err
	}
	cmd := exec.Command(path, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", name, "-p", strconv.Itoa(pid))
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	// strace prints "attached" for each thread once it traces it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "attached") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill() // the attach failed; its error is in stderr
			_ = cmd.Wait()
			return 0, fmt.Errorf("strace did not attach: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // every thread attached
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range n {
		wg.Go(func() {
			for next.Add(1) <= int64(count) {
				if err := create(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	// Let the audit log's interval sync of the last records land.
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		return 0, err
	}
	if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "interrupt") && !strings.Contains(err.Error(), "exit status") {
		return 0, err
	}
	if firstErr != nil {
		return 0, firstErr
	}
	calls, err := straceCalls(name, "fsync", "fdatasync")
	if err != nil {
		return 0, err
	}
	return float64(calls) / float64(count), nil
}

// straceCalls sums the "calls" column of strace -c's summary for the
// named syscalls.
func straceCalls(path string, names ...string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // read-only
	total, found := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// % time, seconds, usecs/call, calls, [errors,] syscall
		if len(fields) < 5 || !slices.Contains(names, fields[len(fields)-1]) {
			continue
		}
		n, err := strconv.Atoi(fields[3])
		if err != nil {
			return 0, fmt.Errorf("strace summary line %q: %w", sc.Text(), err)
		}
		total += n
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no fsync in strace's summary %s", path)
	}
	return total, nil
}

// lockedBuffer is a strings.Builder safe to write from one goroutine and
// read from another.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

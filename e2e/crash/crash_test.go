package crash

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

const (
	// defaultKills is what `go test ./...` (and .ci/run) runs;
	// KEYSTORED_CRASH_KILLS overrides it.
	defaultKills = 100
	// workers is the number of concurrent clients.
	workers = 4
	// maxKillDelay: the SIGKILL comes a random 0 .. maxKillDelay after the
	// workers start, so that it lands in the middle of operations.
	maxKillDelay = 30 * time.Millisecond
	// archiveAt: once the audit log holds this many records (all
	// verified), the daemon is stopped cleanly, the log verified once
	// more and removed, and a new log begins (the daemon started once
	// with --accept-audit-log-change): verifying after every restart
	// stays cheap over 1,000 kills.
	archiveAt = 1000
	// segmentSize is the daemon's audit segment size: small, so that the
	// log is sealed and a new segment started every few dozen records
	// and kills land in the middle of rotations too.
	segmentSize = 8192
)

// crashConfig keeps the daemon's defaults without a config file (uid N is
// app "uid-N", uid 0 an operator) and sets the small segment size.
var crashConfig = "unmapped = \"uid\"\noperators = [0]\n\n[audit]\nsegment_size = " + strconv.Itoa(segmentSize) + "\n"

// envUint reads a positive integer from the environment.
func envUint(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// TestKill9 kills the real daemon with SIGKILL at random instants while
// workers drive it, restarts it on the same state directory, and checks
// after every restart that nothing acknowledged was lost and nothing is
// torn (see the package documentation).
func TestKill9(t *testing.T) {
	kills := int(envUint(t, "KEYSTORED_CRASH_KILLS", defaultKills))
	seed := envUint(t, "KEYSTORED_CRASH_SEED", 1)
	t.Logf("seed %d (KEYSTORED_CRASH_SEED=%d replays its choices), %d kills (KEYSTORED_CRASH_KILLS)", seed, seed, kills)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 0))

	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "kc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(sockDir); err != nil {
			t.Errorf("removing %s: %v", sockDir, err)
		}
	})
	cfg := filepath.Join(dir, "keystored.toml")
	if err := os.WriteFile(cfg, []byte(crashConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := daemontest.Options{Dir: dir, State: filepath.Join(dir, "state"), Socket: filepath.Join(sockDir, "s.sock"), Args: []string{"--config", cfg}}
	logPath := filepath.Join(opts.State, "audit", "audit.jsonl")
	maxSegments := 0 // the most segment files a verified log had
	m := newModel(seed)
	fail := func(cycle int, d *daemontest.Daemon, what string) {
		t.Helper()
		if len(m.errs) == 0 {
			return
		}
		t.Errorf("seed %d, kill %d, %s: %d violation(s):\n%s", seed, cycle+1, what, len(m.errs), strings.Join(m.errs, "\n"))
		t.Logf("last daemon's output:\n%s", d.Logs())
		t.FailNow()
	}

	begin := time.Now()
	d := daemontest.Start(t, opts)
	torn := 0 // torn-tail records in the current audit log
	for cycle := range kills {
		c := dial(t, d)
		var killed, dead atomic.Bool
		var wg sync.WaitGroup
		for i := range workers {
			w := &worker{m: m, c: c, rng: rand.New(rand.NewPCG(seed, uint64(cycle)*workers+uint64(i)+1)), killed: &killed, dead: &dead}
			wg.Go(func() { w.run(ctx) })
		}
		delay := time.Duration(rng.Int64N(int64(maxKillDelay)))
		killedDone := make(chan struct{})
		time.AfterFunc(delay, func() {
			killed.Store(true)
			d.Kill()
			dead.Store(true)
			close(killedDone)
		})
		wg.Wait()
		<-killedDone
		if err := c.Close(); err != nil {
			t.Errorf("closing the client: %v", err)
		}
		m.st.kills++
		fail(cycle, d, "during the workload")

		d = daemontest.Start(t, opts)
		m.st.restarts++
		// Before any request: the daemon has verified the log and cut off
		// a torn last line; the file must verify as a whole.
		records, n, segs := verifyAudit(t, logPath)
		maxSegments = max(maxSegments, segs)
		m.st.tornTails += n - torn
		torn = n
		c = dial(t, d)
		m.check(ctx, c, opts.State, cycle, cycle == kills-1)
		if err := c.Close(); err != nil {
			t.Errorf("closing the client: %v", err)
		}
		fail(cycle, d, "after the restart")
		if records >= archiveAt || cycle == kills-1 {
			d.Stop()
			r, _, _ := verifyAudit(t, logPath)
			m.st.auditChecks += r
			if cycle < kills-1 {
				// The whole log: every segment and the current file.
				if err := os.RemoveAll(filepath.Dir(logPath)); err != nil {
					t.Fatal(err)
				}
				torn = 0
				// The state remembers its log: a start on a removed log
				// is refused unless the operator accepts it (audited;
				// the keys' generations are adopted into the new log).
				archived := opts
				archived.Args = append(slices.Clone(opts.Args), "--accept-audit-log-change")
				d = daemontest.Start(t, archived)
			}
		}
	}
	elapsed := time.Since(begin)

	st := m.st
	var ops []string
	for op, n := range st.acked {
		ops = append(ops, op+" "+strconv.Itoa(n))
	}
	sort.Strings(ops)
	t.Logf("kills %d, restarts %d, operations acknowledged %d (%s), refused as expected %d, in flight at a kill %d (creates among them that took effect: %d), lost %d",
		st.kills, st.restarts, st.ackedTotal(), strings.Join(ops, ", "), st.refused, st.inFlight, st.landed, st.lost)
	t.Logf("keys %d; checks after restarts: %d unseals, %d verifies; audit: %d records verified, %d torn last lines cut off by the daemon, up to %d segment files of %d bytes; wall time %v",
		len(m.order), st.unsealed, st.verified, st.auditChecks, st.tornTails, maxSegments, segmentSize, elapsed.Round(time.Millisecond))
	if maxSegments < 3 {
		t.Errorf("the audit log never had more than %d segment files: the kills did not meet rotations", maxSegments)
	}
	if st.lost != 0 {
		t.Errorf("lost %d acknowledged operations, want 0", st.lost)
	}
	if st.ackedTotal() == 0 || st.kills != kills {
		t.Errorf("kills %d, acknowledged operations %d: the workload did not run", st.kills, st.ackedTotal())
	}
}

// dial connects the typed client to d.
func dial(t *testing.T, d *daemontest.Daemon) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), d.Socket)
	if err != nil {
		t.Fatalf("client.Dial(%s): %v\n%s", d.Socket, err, d.Logs())
	}
	return c
}

// verifyAudit verifies the whole audit log, every segment, and returns its
// record count, the number of torn-tail recoveries in it and the number
// of segment files.
func verifyAudit(t *testing.T, path string) (records, torn, segments int) {
	t.Helper()
	res, err := audit.WalkLog(path, audit.Checkpoint{}, func(r audit.Record) error {
		if r.Op == audit.OpRecoveredTornTail {
			torn++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("audit log %s does not verify after a restart: %v", path, err)
	}
	if res.FirstSeq > 1 {
		t.Fatalf("audit log %s starts at seq %d: segments lost", path, res.FirstSeq)
	}
	return res.Records, torn, res.Segments
}

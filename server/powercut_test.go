package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/powercut"
	"github.com/nexus-os/keystored/internal/tamper"
)

// pcKey signs the power-cut tests' checkpoints and index snapshots (the
// daemon's audit key, without the core).
var pcKey = ed25519.NewKeyFromSeed([]byte("power-cut-test-audit-key-seed-32"))

type pcSigner struct{}

func (pcSigner) KeyRef() string { return "keystored/audit/checkpoint@1" }
func (pcSigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(pcKey, msg), nil
}
func (pcSigner) PublicKey() ed25519.PublicKey { return pcKey.Public().(ed25519.PublicKey) }

// pcCounter is an external counter on the simulated machine: an increment
// is a durability event, refused once the power is off (so its value
// after the run is its value at the cut). It starts missing, as a
// FileCounter does.
type pcCounter struct {
	m       *powercut.Machine
	mu      sync.Mutex
	exists  bool
	v       uint64
	initial bool // made by Create at the first start
}

func (c *pcCounter) Describe() string { return "power-cut test counter" }
func (c *pcCounter) Close() error     { return nil }
func (c *pcCounter) Read(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.exists {
		return 0, tamper.ErrCounterMissing
	}
	return c.v, nil
}
func (c *pcCounter) Create(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exists = true
	return nil
}
func (c *pcCounter) Increment(context.Context) (uint64, error) {
	if err := c.m.Event(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.exists {
		return 0, tamper.ErrCounterMissing
	}
	c.v++
	return c.v, nil
}

// pcDaemon is the daemon's start, as cmd/keystored does it, on a state
// directory (the audit log, its index snapshot) and a Storage: tamper.Open
// with the audit log, Verify, the signer, Start, then server.New with the
// index's generations and the counter's Advance.
type pcDaemon struct {
	srv  *Server
	log  *audit.Log
	tr   *tamper.Tracker
	stop func()
	conn *grpc.ClientConn
}

func pcLogPath(state string) string { return filepath.Join(state, "audit", "audit.jsonl") }

func startPC(t *testing.T, state string, st core.Storage, counter tamper.Counter, observe func(uint64)) (*pcDaemon, error) {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(state, "audit"), 0o700); err != nil {
		return nil, err
	}
	clk := clock.NewFake(testTime)
	d := &pcDaemon{}
	tr, err := tamper.Open(ctx, tamper.Options{
		StateDir: state,
		LogPath:  pcLogPath(state),
		OpenLog: func() (tamper.Log, error) {
			// Only what a state change makes durable counts: the interval
			// fsync never runs within a test.
			opts := []audit.Option{audit.WithSync(audit.SyncInterval(time.Hour)), audit.WithClock(clk)}
			if observe != nil {
				opts = append(opts, audit.WithDurableObserver(observe))
			}
			l, err := audit.Open(pcLogPath(state), opts...)
			if err != nil {
				return nil, err
			}
			d.log = l
			return l, nil
		},
		Counter: counter,
		Clock:   clk.Now,
	})
	if err != nil {
		return nil, err
	}
	d.tr = tr
	fail := func(err error) (*pcDaemon, error) {
		return nil, errors.Join(err, d.log.Close())
	}
	if err := tr.Verify(ctx, pcSigner{}.PublicKey()); err != nil {
		return fail(err)
	}
	if err := d.log.SetSigner(pcSigner{}, 0, 0); err != nil {
		return fail(err)
	}
	if err := tr.Start(ctx, pcSigner{}); err != nil {
		return fail(err)
	}
	srv, err := New(ctx, Config{Storage: st, Provider: newProvider(t, true), Clock: clk, Audit: d.log,
		Identity: aliceIdentity(t), Generations: tr.Index(), Advance: tr.Advance})
	if err != nil {
		return fail(err)
	}
	d.srv = srv
	return d, nil
}

// serve serves d on a Unix socket and dials it.
func (d *pcDaemon) serve(t *testing.T) {
	t.Helper()
	sock := filepath.Join(shortDir(t), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := d.srv.NewGRPCServer()
	served := make(chan error, 1)
	go func() { served <- d.srv.Serve(gs, l) }()
	d.stop = func() {
		gs.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	}
	d.conn = dial(t, sock)
}

// A pcOp is one request of the workload; change says it is a key
// lifecycle change of key (one generation more when acknowledged).
type pcOp struct {
	name   string
	key    string // "alice/..." for keys, the value's name for store ops
	change bool
	run    func(ctx context.Context) error
}

// pcAck is what a worker saw acknowledged before the cut.
type pcAck struct {
	op  pcOp
	gen uint64 // the key's generation after it (changes only)
}

// pcWorkload builds each worker's requests from seed: every worker works
// on keys and values of its own, so the order of its acknowledged changes
// is the order they were made in. Imports are prepared on the test's
// goroutine (GetImportParameters, the HPKE wrap).
func pcWorkload(t *testing.T, seed uint64, workers, perWorker int, keys keystorev1.KeysClient, store keystorev1.StoreClient) [][]pcOp {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 15))
	der := pkcs8(t, edKey)
	out := make([][]pcOp, workers)
	for w := range workers {
		var made []string // the worker's keys, short names
		var sealKeys []string
		n := 0
		newKey := func() string { n++; return fmt.Sprintf("pc/w%dk%d", w, n) }
		for len(out[w]) < perWorker {
			var op pcOp
			pick := rng.IntN(12)
			if len(made) == 0 {
				pick = 0
			}
			var k string
			if len(made) > 0 {
				k = made[rng.IntN(len(made))]
			}
			switch pick {
			case 0, 1:
				k = newKey()
				made = append(made, k)
				op = pcOp{name: "create", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
					return err
				}}
			case 2:
				k = newKey()
				made, sealKeys = append(made, k), append(sealKeys, k)
				op = pcOp{name: "create-aes", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "aes-256-gcm"})
					return err
				}}
			case 3:
				k = newKey()
				p, err := keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: k, Algorithm: "ed25519"})
				if err != nil {
					t.Fatalf("GetImportParameters: %v", err)
				}
				enc, wrapped := hpkeSealTo(t, p.GetKemId(), p.GetKdfId(), p.GetAeadId(), p.GetPublicKey(), p.GetInfo(), nil, der)
				req := &keystorev1.ImportKeyRequest{Key: k, Token: p.GetToken(), Enc: enc, Wrapped: wrapped}
				made = append(made, k)
				op = pcOp{name: "import", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.Import(ctx, req)
					return err
				}}
			case 4, 5:
				op = pcOp{name: "rotate", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: k})
					return err
				}}
			case 6:
				op = pcOp{name: "revoke-version", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: k, Version: 1})
					return err
				}}
			case 7:
				op = pcOp{name: "set-policy", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.SetPolicy(ctx, &keystorev1.SetKeyPolicyRequest{Key: k, Policy: &keystorev1.KeyPolicy{MinDecryptionVersion: 1}})
					return err
				}}
			case 8:
				op = pcOp{name: "revoke", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: k})
					return err
				}}
			case 9:
				op = pcOp{name: "destroy", key: "alice/" + k, change: true, run: func(ctx context.Context) error {
					_, err := keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: k})
					return err
				}}
			case 10:
				if len(sealKeys) == 0 {
					continue
				}
				sk := sealKeys[rng.IntN(len(sealKeys))]
				// The first seal of a version reserves a block of its
				// seal budget in its metadata (no new generation).
				op = pcOp{name: "seal", key: "alice/" + sk, run: func(ctx context.Context) error {
					_, err := keys.Seal(ctx, &keystorev1.SealRequest{Key: sk, Plaintext: []byte("p")})
					return err
				}}
			case 11:
				name := fmt.Sprintf("w%dv%d", w, rng.IntN(3))
				if rng.IntN(3) == 0 {
					op = pcOp{name: "store.delete", key: name, run: func(ctx context.Context) error {
						_, err := store.Delete(ctx, &keystorev1.DeleteValueRequest{Name: name})
						return err
					}}
				} else {
					v := fmt.Appendf(nil, "value %d", len(out[w]))
					op = pcOp{name: "store.put", key: name, run: func(ctx context.Context) error {
						_, err := store.Put(ctx, &keystorev1.PutValueRequest{Name: name, Value: v})
						return err
					}}
				}
			}
			out[w] = append(out[w], op)
		}
	}
	return out
}

// pcRun is one run: a fresh machine, the daemon on it, the workload with
// the power cut before durability event cutAt (0: at the end), the
// image, a restart on it and the checks. It returns the events counted.
func pcRun(t *testing.T, seed uint64, cutAt int, withCounter bool) int {
	t.Helper()
	const workers, perWorker = 4, 14
	ctx := context.Background()
	m := powercut.New()
	state := t.TempDir()
	counter := &pcCounter{m: m}
	if err := counter.Create(ctx); err != nil {
		t.Fatal(err)
	}
	var c tamper.Counter
	if withCounter {
		c = counter
	}
	d, err := startPC(t, state, m.Storage(), c, m.DurableObserver)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	d.serve(t)
	keys, store := keystorev1.NewKeysClient(d.conn), keystorev1.NewStoreClient(d.conn)
	work := pcWorkload(t, seed, workers, perWorker, keys, store)
	// The index snapshot as Start wrote it: the daemon writes the next
	// ones from a timer, which never fires within a test.
	snap, err := os.ReadFile(filepath.Join(state, tamper.SnapshotName))
	if err != nil {
		t.Fatal(err)
	}
	start := m.Events()
	if cutAt > 0 {
		m.CutAt(start + cutAt)
	}

	acks := make([][]pcAck, workers)
	inflight := make([]string, workers) // the op whose reply came after the cut
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gens := map[string]uint64{}
			for _, op := range work[w] {
				err := op.run(ctx)
				if m.Cut() {
					inflight[w] = op.key // the reply (if any) came after the cut
					return
				}
				if err != nil {
					continue // refused (a revoked key's rotation, ...): no change
				}
				a := pcAck{op: op}
				if op.change {
					gens[op.key]++
					a.gen = gens[op.key]
				}
				acks[w] = append(acks[w], a)
			}
		}()
	}
	wg.Wait()
	events := m.Events() - start
	m.CutNow()
	d.stop()
	// The process dies with the machine: nothing of the log's close is
	// durable (the cut froze the image); the tracker is not closed (its
	// Close writes a snapshot, which a dying daemon does not).
	if err := d.log.Close(); err != nil {
		t.Logf("closing the log after the cut: %v", err)
	}

	// The image: storage, the audit log through its last durable record,
	// the index snapshot, the counter.
	_, _, seq := m.Image()
	img := t.TempDir()
	if err := powercut.CopyAuditDir(filepath.Join(state, "audit"), filepath.Join(img, "audit"), "audit.jsonl", seq); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, tamper.SnapshotName), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	mem, err := m.Restore()
	if err != nil {
		t.Fatal(err)
	}
	var durable []audit.Record
	if _, err := audit.WalkLog(pcLogPath(img), audit.Checkpoint{}, func(r audit.Record) error {
		durable = append(durable, r)
		return nil
	}); err != nil {
		t.Fatalf("cut at %d: the durable log does not verify: %v", cutAt, err)
	}

	// The restart: a power cut is not tampering.
	c = nil
	if withCounter {
		c = &pcCounter{m: powercut.New(), exists: true, v: counter.v}
	}
	d2, err := startPC(t, img, mem, c, nil)
	if err != nil {
		t.Fatalf("cut at %d (seq %d durable): the restart refuses the image: %v", cutAt, seq, err)
	}
	defer func() {
		if err := d2.log.Close(); err != nil {
			t.Error(err)
		}
	}()
	nacks := 0
	for _, a := range acks {
		nacks += len(a)
	}
	t.Logf("cut at %d of %d events: %d requests acknowledged, audit durable through seq %d", cutAt, events, nacks, seq)
	ks := d2.srv.Keystore()
	alice := core.Caller{App: "alice"}

	// Every acknowledged change is in the state and has its durable
	// record; no key state has no record.
	intents := map[string]map[uint64]bool{} // key -> generations with a durable intent
	maxGen := map[string]uint64{}
	stored := map[string]bool{} // store names with a durable ok record
	for _, r := range durable {
		if r.Gen > 0 && r.Key != "" {
			if intents[r.Key] == nil {
				intents[r.Key] = map[uint64]bool{}
			}
			intents[r.Key][r.Gen] = true
			maxGen[r.Key] = max(maxGen[r.Key], r.Gen)
		}
		if strings.HasPrefix(r.Op, "store.") && r.Result == "ok" {
			stored[r.Op+" "+r.Key] = true
		}
	}
	seen := map[string]bool{}
	for w := range workers {
		lastGen := map[string]uint64{}
		lastVal := map[string]string{}
		for _, a := range acks[w] {
			switch {
			case a.op.change:
				if !intents[a.op.key][a.gen] {
					t.Errorf("cut at %d: acknowledged %s of %s (gen %d) has no durable audit record", cutAt, a.op.name, a.op.key, a.gen)
				}
				lastGen[a.op.key] = a.gen
			case strings.HasPrefix(a.op.name, "store."):
				if !stored[a.op.name+" "+a.op.key] && !stored[a.op.name+" alice/"+a.op.key] {
					t.Errorf("cut at %d: acknowledged %s of %s has no durable audit record", cutAt, a.op.name, a.op.key)
				}
				lastVal[a.op.key] = a.op.name
			}
			seen[a.op.key] = true
		}
		for key, gen := range lastGen {
			id, err := provider.ParseKeyID(key)
			if err != nil {
				t.Fatal(err)
			}
			md, err := ks.Get(ctx, alice, id)
			if err != nil {
				t.Errorf("cut at %d: acknowledged key %s (gen %d) after restart: %v", cutAt, key, gen, err)
				continue
			}
			if md.Generation < gen {
				t.Errorf("cut at %d: %s is at generation %d after restart, %d were acknowledged", cutAt, key, md.Generation, gen)
			}
		}
		for name, last := range lastVal {
			if name == inflight[w] {
				continue // may have landed too
			}
			_, err := mem.ReadFile(valuePath("alice", name))
			if present := err == nil; present != (last == "store.put") {
				t.Errorf("cut at %d: acknowledged %s of value %s, after restart: present %v (%v)", cutAt, last, name, present, err)
			}
		}
	}
	// Every key the storage holds (acknowledged or not) passes the
	// start scan, and its generation is one the durable log recorded.
	for w := range workers {
		for _, op := range work[w] {
			if !op.change || seen[op.key+"#checked"] {
				continue
			}
			seen[op.key+"#checked"] = true
			id, err := provider.ParseKeyID(op.key)
			if err != nil {
				t.Fatal(err)
			}
			err = ks.CheckKey(ctx, id)
			if errors.Is(err, provider.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Errorf("cut at %d: start scan of %s: %v", cutAt, op.key, err)
				continue
			}
			md, err := ks.Get(ctx, alice, id)
			if err != nil {
				t.Errorf("cut at %d: %s: %v", cutAt, op.key, err)
				continue
			}
			if md.Generation > maxGen[op.key] {
				t.Errorf("cut at %d: %s is at generation %d in storage, the durable log records only %d", cutAt, op.key, md.Generation, maxGen[op.key])
			}
		}
	}
	return events
}

// TestPowerCut runs state-changing requests (create, import, rotate,
// revoke-version, set-policy, revoke, destroy, seal-budget reservations,
// Store put and delete) from four clients at once through the server,
// with a real audit.Log, the audit index (internal/tamper), without and
// with an external counter (whose rounds fsync the log too), over a simulated machine (internal/powercut) that
// keeps only what was made durable; cuts the power before the k-th
// durability event for seeded k; restarts on the image as the daemon does
// and checks that every change acknowledged before the cut is in the
// state with its durable audit record, that no key in storage is at a
// generation the durable log lacks, and that the start checks accept the
// image (a power cut is not tampering). docs/security.md, "Durable audit
// before the reply".
func TestPowerCut(t *testing.T) {
	const seed = 15
	cuts := 16
	if testing.Short() {
		cuts = 8
	}
	for _, withCounter := range []bool{false, true} {
		t.Run(fmt.Sprintf("counter=%v", withCounter), func(t *testing.T) {
			total := pcRun(t, seed, 0, withCounter) // no cut: how many events a run has
			if total == 0 {
				t.Fatal("the workload made nothing durable")
			}
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := range cuts {
				k := 1 + rng.IntN(total)
				if i < 3 {
					k = 1 + i // the first events: the first creates' intents
				}
				t.Run(fmt.Sprintf("cut%d", k), func(t *testing.T) { pcRun(t, seed, k, withCounter) })
			}
		})
	}
}

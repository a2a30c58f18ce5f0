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
	"slices"
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
	"github.com/nexus-os/keystored/providers/software"
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

// pcIdentity maps this process's uid to app "alice", an operator (Sweep).
func pcIdentity(t *testing.T) Identity {
	t.Helper()
	id, err := NewIdentity(map[uint32]string{myUID(): "alice"}, []uint32{myUID()}, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pcDaemon is the daemon's start, as cmd/keystored does it, on a state
// directory (the audit log, its index snapshot) and a Storage: tamper.Open
// with the audit log, Verify, the signer, Start, then server.New with the
// index's generations and the counter's Advance.
type pcDaemon struct {
	srv  *Server
	clk  *clock.Fake
	log  *audit.Log
	tr   *tamper.Tracker
	stop func()
	conn *grpc.ClientConn
}

// pcTempDir returns a temporary directory for a simulated state
// directory's real files (the audit log, the index snapshot, the KEK):
// on tmpfs (/dev/shm) when there is one, where an fsync costs nothing —
// the simulation, not the disk, decides what is durable.
func pcTempDir(t *testing.T) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "keystored-powercut-")
		if err == nil {
			t.Cleanup(func() {
				if err := os.RemoveAll(d); err != nil {
					t.Errorf("removing %s: %v", d, err)
				}
			})
			return d
		}
	}
	return t.TempDir()
}

func pcLogPath(state string) string { return filepath.Join(state, "audit", "audit.jsonl") }

// pcStart is what startPC starts the daemon with.
type pcStart struct {
	state   string // the state directory: audit/, audit-index, kek/
	st      core.Storage
	counter tamper.Counter
	segSize int64
	observe func(uint64) // the audit log's durable observer (nil: none)
	accept  bool         // --accept-audit-log-change
	now     time.Time    // the clock's start (zero: testTime)
}

func startPC(t *testing.T, o pcStart) (*pcDaemon, error) {
	t.Helper()
	state, st, counter, segSize, observe := o.state, o.st, o.counter, o.segSize, o.observe
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(state, "audit"), 0o700); err != nil {
		return nil, err
	}
	if o.now.IsZero() {
		o.now = testTime
	}
	clk := clock.NewFake(o.now)
	d := &pcDaemon{clk: clk}
	tr, err := tamper.Open(ctx, tamper.Options{
		StateDir: state,
		LogPath:  pcLogPath(state),
		OpenLog: func() (tamper.Log, error) {
			// Only what a state change makes durable counts: the interval
			// fsync never runs within a test.
			opts := []audit.Option{audit.WithSync(audit.SyncInterval(time.Hour)), audit.WithClock(clk), audit.WithSegmentSize(segSize)}
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
		Counter:         counter,
		Clock:           clk.Now,
		AcceptLogChange: o.accept,
		HoldsAppKeys:    o.accept,
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
	// The software provider with a KEK file in the state directory, as
	// the daemon's default (a KEK rotation writes it).
	kek := filepath.Join(state, "kek")
	if err := os.MkdirAll(kek, 0o700); err != nil {
		return fail(err)
	}
	p, err := software.New(software.Config{KEKFile: filepath.Join(kek, "kek"), Create: true})
	if err != nil {
		return fail(err)
	}
	srv, err := New(ctx, Config{Storage: st, Provider: p, Clock: clk, Audit: d.log,
		Identity: pcIdentity(t), Generations: tr.Index(), Advance: tr.Advance})
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

// A pcOp is one request of the workload: keys are the full IDs of the
// keys it may change (a sign may auto-rotate its key), value the Store
// name it puts or deletes.
type pcOp struct {
	name  string
	keys  []string
	value string
	run   func(ctx context.Context) error
}

// pcAck is a request acknowledged before the cut, with the generation of
// each of its keys read from the daemon's memory once it returned (only
// this worker's requests and a sweep change them; what memory shows is
// durable, or the claim fails).
type pcAck struct {
	op   pcOp
	gens map[string]uint64
}

// pcWorkload builds each worker's requests from seed. Every worker works
// on keys and values of its own (a sweep, of all); imports are prepared
// on the test's goroutine (GetImportParameters, the HPKE wrap).
func pcWorkload(t *testing.T, seed uint64, workers, perWorker int, d *pcDaemon, prefix string) [][]pcOp {
	t.Helper()
	keys, store := keystorev1.NewKeysClient(d.conn), keystorev1.NewStoreClient(d.conn)
	admin := keystorev1.NewAdminClient(d.conn)
	rng := rand.New(rand.NewPCG(seed, 15))
	der := pkcs8(t, edKey)
	out := make([][]pcOp, workers)
	for w := range workers {
		var made, sealKeys, signKeys []string // short names
		var rotated, revoked, puts []string
		n := 0
		newKey := func() string { n++; return fmt.Sprintf("pc/%sw%dk%d", prefix, w, n) }
		full := func(k ...string) []string {
			var ids []string
			for _, s := range k {
				ids = append(ids, "alice/"+s)
			}
			return ids
		}
		for len(out[w]) < perWorker {
			var op pcOp
			pick := rng.IntN(17)
			if len(made) == 0 {
				pick = 0
			}
			var k string
			if len(made) > 0 {
				k = made[rng.IntN(len(made))]
			}
			switch pick {
			case 0:
				k = newKey()
				made, signKeys = append(made, k), append(signKeys, k)
				op = pcOp{name: "create", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"})
					return err
				}}
			case 1:
				// Rotated automatically when used a minute later.
				k = newKey()
				made, signKeys = append(made, k), append(signKeys, k)
				op = pcOp{name: "create-rotating", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519", Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 60}})
					return err
				}}
			case 2:
				k = newKey()
				made, sealKeys = append(made, k), append(sealKeys, k)
				op = pcOp{name: "create-aes", keys: full(k), run: func(ctx context.Context) error {
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
				op = pcOp{name: "import", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.Import(ctx, req)
					return err
				}}
			case 4:
				rotated = append(rotated, k)
				op = pcOp{name: "rotate", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: k})
					return err
				}}
				if rng.IntN(2) == 0 {
					out[w] = append(out[w], op)
					op = pcOp{name: "revoke-version", keys: full(k), run: func(ctx context.Context) error {
						_, err := keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: k, Version: 1})
						return err
					}}
				}
			case 5:
				if len(rotated) == 0 {
					continue
				}
				k = rotated[rng.IntN(len(rotated))]
				op = pcOp{name: "revoke-version", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: k, Version: 1})
					return err
				}}
			case 6:
				op = pcOp{name: "set-policy", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.SetPolicy(ctx, &keystorev1.SetKeyPolicyRequest{Key: k, Policy: &keystorev1.KeyPolicy{MinDecryptionVersion: 1}})
					return err
				}}
			case 7:
				if rng.IntN(2) == 0 {
					continue // fewer revokes: a revoked key takes no more changes
				}
				made = slices.DeleteFunc(made, func(s string) bool { return s == k })
				revoked = append(revoked, k)
				op = pcOp{name: "revoke", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: k})
					return err
				}}
				if rng.IntN(2) == 0 {
					// Destroyed at once (its handle files removed too).
					out[w] = append(out[w], op)
					op = pcOp{name: "destroy", keys: full(k), run: func(ctx context.Context) error {
						_, err := keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: k})
						return err
					}}
					revoked = revoked[:len(revoked)-1]
				}
			case 8:
				if len(revoked) == 0 {
					continue
				}
				k = revoked[0]
				revoked = revoked[1:]
				op = pcOp{name: "destroy", keys: full(k), run: func(ctx context.Context) error {
					_, err := keys.Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: k})
					return err
				}}
			case 9:
				if len(sealKeys) == 0 {
					continue
				}
				sk := sealKeys[rng.IntN(len(sealKeys))]
				// The first seal of a version reserves a block of its
				// seal budget in its metadata (no new generation).
				op = pcOp{name: "seal", keys: full(sk), run: func(ctx context.Context) error {
					_, err := keys.Seal(ctx, &keystorev1.SealRequest{Key: sk, Plaintext: []byte("p")})
					return err
				}}
			case 10, 11:
				if len(signKeys) == 0 {
					continue
				}
				sk := signKeys[rng.IntN(len(signKeys))]
				op = pcOp{name: "sign", keys: full(sk), run: func(ctx context.Context) error {
					_, err := keys.Sign(ctx, &keystorev1.SignRequest{Key: sk, Message: []byte("m")})
					return err
				}}
			case 12:
				if len(signKeys) < 2 {
					continue
				}
				a, b := signKeys[rng.IntN(len(signKeys))], signKeys[rng.IntN(len(signKeys))]
				// A batch auto-rotates each due key: every rotation has
				// its intent record (the second one "during" the batch).
				op = pcOp{name: "sign-batch", keys: full(a, b), run: func(ctx context.Context) error {
					_, err := keys.SignBatch(ctx, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: a, Message: []byte("m")}, {Key: b, Message: []byte("m")}}})
					return err
				}}
			case 13:
				op = pcOp{name: "tick", run: func(context.Context) error {
					d.clk.Advance(61 * time.Second) // due rotations
					return nil
				}}
			case 14:
				if w == 1 {
					// Every key's handles rewrapped under a new KEK (the
					// provider's KEK file is outside the simulation: the
					// image takes it as it is at the end).
					op = pcOp{name: "admin.kek-rotate", run: func(ctx context.Context) error {
						_, err := admin.RotateWrappingKey(ctx, &keystorev1.RotateWrappingKeyRequest{})
						return err
					}}
					break
				}
				if w != 0 {
					continue
				}
				op = pcOp{name: "sweep", run: func(ctx context.Context) error {
					_, err := keys.Sweep(ctx, &keystorev1.SweepKeysRequest{})
					return err
				}}
			default:
				name := fmt.Sprintf("%sw%dv%d", prefix, w, rng.IntN(3))
				if len(puts) > 0 && rng.IntN(3) == 0 {
					name = puts[rng.IntN(len(puts))]
					puts = slices.DeleteFunc(puts, func(s string) bool { return s == name })
					op = pcOp{name: "store.delete", value: name, run: func(ctx context.Context) error {
						_, err := store.Delete(ctx, &keystorev1.DeleteValueRequest{Name: name})
						return err
					}}
				} else {
					puts = append(puts, name)
					v := fmt.Appendf(nil, "value %d", len(out[w]))
					op = pcOp{name: "store.put", value: name, run: func(ctx context.Context) error {
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

// pcConfig is what a pass of TestPowerCut varies.
type pcConfig struct {
	counter bool  // an external counter (its rounds fsync the log too)
	segSize int64 // the audit log's segment size (0: the default)
}

// pcCut is where one round's power cut falls: before durability event at
// (0: at the end of the round's workload), keeping tail bytes of unsynced
// audit records in the image.
type pcCut struct{ at, tail int }

// pcRound is what one round of a run left to check at every later start.
type pcRound struct {
	work     [][]pcOp
	acks     [][]pcAck
	inflight []string // per worker, the value whose request's reply came after the cut
}

// pcRun is one run of rounds: a fresh machine and the daemon on it; in
// each round the workload, the power cut, the image, and a restart on it
// that must accept it, with the checks over every round so far; the next
// round runs on the restarted daemon. It returns the durability events of
// each round.
func pcRun(t *testing.T, seed uint64, cfg pcConfig, cuts ...pcCut) []int {
	t.Helper()
	const workers, perWorker = 4, 20
	ctx := context.Background()
	alice := core.Caller{App: "alice"}
	m := powercut.New()
	state := pcTempDir(t)
	counter := &pcCounter{m: m, exists: true}
	now := testTime
	var rounds []pcRound
	var events []int
	var durable []audit.Record // the last image's log
	for r := 0; ; r++ {
		var c tamper.Counter
		if cfg.counter {
			c = counter
		}
		d, err := startPC(t, pcStart{state: state, st: m.Storage(), counter: c, segSize: cfg.segSize, observe: m.DurableObserver, now: now})
		if err != nil {
			if r == 0 {
				t.Fatalf("first start: %v", err)
			}
			t.Fatalf("cuts %v, after round %d: the restart refuses the image: %v", cuts, r, err)
		}
		if r > 0 {
			pcCheck(t, fmt.Sprintf("cuts %v, after round %d", cuts, r), d, m, rounds, durable)
		}
		if r == len(cuts) {
			if err := d.log.Close(); err != nil {
				t.Error(err)
			}
			return events
		}
		d.serve(t)
		prefix := fmt.Sprintf("r%d", r)
		work := pcWorkload(t, seed+uint64(r), workers, perWorker, d, prefix)
		// The index snapshot as Start wrote it: the daemon writes the next
		// ones from a timer, which never fires within a test.
		snap, err := os.ReadFile(filepath.Join(state, tamper.SnapshotName))
		if err != nil {
			t.Fatal(err)
		}
		start := m.Events()
		if cuts[r].at > 0 {
			m.CutAt(start + cuts[r].at)
		}
		rd := pcRound{work: work, acks: make([][]pcAck, workers), inflight: make([]string, workers)}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, op := range work[w] {
					err := op.run(ctx)
					if m.Cut() {
						rd.inflight[w] = op.value // its change may have landed
						return
					}
					if err != nil {
						continue // refused (a revoked key's rotation, ...): no change
					}
					a := pcAck{op: op, gens: map[string]uint64{}}
					for _, key := range op.keys {
						id, err := provider.ParseKeyID(key)
						if err != nil {
							t.Error(err)
							return
						}
						if md, err := d.srv.Keystore().Get(ctx, alice, id); err == nil {
							a.gens[key] = md.Generation
						}
					}
					if m.Cut() {
						// Memory may show a change made after the cut.
						a.gens = nil
					}
					rd.acks[w] = append(rd.acks[w], a)
				}
			}()
		}
		wg.Wait()
		events = append(events, m.Events()-start)
		m.CutNow()
		d.stop()
		now = d.clk.Now()
		// The process dies with the machine: nothing of the log's close
		// is durable (the cut froze the image); the tracker is not closed
		// (its Close writes a snapshot, which a dying daemon does not).
		if err := d.log.Close(); err != nil {
			t.Logf("closing the log after the cut: %v", err)
		}
		rounds = append(rounds, rd)
		if cuts[r].at == 0 && r == 0 {
			pcSummary(t, rd, state)
		}

		// The image: storage, the audit log through its last durable
		// record, the index snapshot, the KEK file, the counter.
		_, _, seq := m.Image()
		img := pcTempDir(t)
		if err := powercut.CopyAuditDir(filepath.Join(state, "audit"), filepath.Join(img, "audit"), "audit.jsonl", seq, cuts[r].tail); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(img, tamper.SnapshotName), snap, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := copyFiles(filepath.Join(state, "kek"), filepath.Join(img, "kek")); err != nil {
			t.Fatal(err)
		}
		durable = durable[:0]
		if _, err := audit.WalkLog(pcLogPath(img), audit.Checkpoint{}, func(r audit.Record) error {
			durable = append(durable, r)
			return nil
		}); err != nil && cuts[r].tail == 0 {
			// (With a tail, a torn last line, which the restart's
			// audit.Open cuts off.)
			t.Fatalf("cuts %v, round %d: the durable log does not verify: %v", cuts, r, err)
		}
		t.Logf("round %d: cut at %d of %d events, tail %d: audit durable through seq %d", r, cuts[r].at, events[r], cuts[r].tail, seq)
		next, err := m.Reboot()
		if err != nil {
			t.Fatal(err)
		}
		counter = &pcCounter{m: next, exists: true, v: counter.v}
		m, state = next, img
	}
}

// pcSummary logs what a round exercised (its mix is fixed by the seed).
func pcSummary(t *testing.T, rd pcRound, state string) {
	t.Helper()
	byOp := map[string]int{}
	for _, acks := range rd.acks {
		for _, a := range acks {
			byOp[a.op.name]++
		}
	}
	files, err := os.ReadDir(filepath.Join(state, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("acknowledged: %v; %d files in the audit directory", byOp, len(files))
}

// pcCheck checks the restarted daemon d on machine m against every round
// so far and the durable log: every acknowledged change is in the state
// with its durable record; no key in storage is at a generation the log
// lacks; every key passes the start scan and every active signing key
// signs.
func pcCheck(t *testing.T, what string, d *pcDaemon, m *powercut.Machine, rounds []pcRound, durable []audit.Record) {
	t.Helper()
	ctx := context.Background()
	alice := core.Caller{App: "alice"}
	ks := d.srv.Keystore()
	intents := map[string]map[uint64]bool{} // key -> generations with a durable intent record
	maxGen := map[string]uint64{}
	stored := map[string]bool{} // "op key" of the durable ok Store and KEK rotation records
	for _, r := range durable {
		if r.Gen > 0 && r.Key != "" && r.Op != tamper.OpCounter {
			if intents[r.Key] == nil {
				intents[r.Key] = map[uint64]bool{}
			}
			intents[r.Key][r.Gen] = true
			maxGen[r.Key] = max(maxGen[r.Key], r.Gen)
		}
		if (strings.HasPrefix(r.Op, "store.") || r.Op == "admin.kek-rotate") && r.Result == "ok" {
			stored[r.Op+" "+r.Key] = true
		}
	}
	acked := map[string]uint64{} // key -> highest generation acknowledged
	for _, rd := range rounds {
		for w, acks := range rd.acks {
			lastVal := map[string]string{}
			for _, a := range acks {
				for key, gen := range a.gens {
					acked[key] = max(acked[key], gen)
				}
				if a.op.name == "admin.kek-rotate" && !stored["admin.kek-rotate "] {
					t.Errorf("%s: acknowledged KEK rotation has no durable audit record", what)
				}
				if a.op.value != "" {
					if !stored[a.op.name+" "+a.op.value] && !stored[a.op.name+" alice/"+a.op.value] {
						t.Errorf("%s: acknowledged %s of %s has no durable audit record", what, a.op.name, a.op.value)
					}
					lastVal[a.op.value] = a.op.name
				}
			}
			for name, last := range lastVal {
				if name == rd.inflight[w] {
					continue // a later change of it may have landed too
				}
				_, err := m.Storage().ReadFile(valuePath("alice", name))
				if present := err == nil; present != (last == "store.put") {
					t.Errorf("%s: acknowledged %s of value %s, after restart: present %v (%v)", what, last, name, present, err)
				}
			}
		}
	}
	for key, gen := range acked {
		for g := uint64(1); g <= gen; g++ {
			if !intents[key][g] {
				t.Errorf("%s: %s was at generation %d before a cut, but generation %d has no durable audit record", what, key, gen, g)
			}
		}
		id, err := provider.ParseKeyID(key)
		if err != nil {
			t.Fatal(err)
		}
		md, err := ks.Get(ctx, alice, id)
		if err != nil {
			t.Errorf("%s: acknowledged key %s (gen %d) after restart: %v", what, key, gen, err)
			continue
		}
		if md.Generation < gen {
			t.Errorf("%s: %s is at generation %d after restart, %d was acknowledged", what, key, md.Generation, gen)
		}
	}
	// No key state without its record: every key the storage holds
	// (acknowledged or not) passes the start scan, its generation is one
	// the durable log recorded, and its material unwraps.
	checked := map[string]bool{}
	for _, rd := range rounds {
		for _, ops := range rd.work {
			for _, op := range ops {
				for _, key := range op.keys {
					if checked[key] {
						continue
					}
					checked[key] = true
					id, err := provider.ParseKeyID(key)
					if err != nil {
						t.Fatal(err)
					}
					err = ks.CheckKey(ctx, id)
					if errors.Is(err, provider.ErrNotFound) {
						continue
					}
					if err != nil {
						t.Errorf("%s: start scan of %s: %v", what, key, err)
						continue
					}
					md, err := ks.Get(ctx, alice, id)
					if err != nil {
						t.Errorf("%s: %s: %v", what, key, err)
						continue
					}
					if md.Generation > maxGen[key] {
						t.Errorf("%s: %s is at generation %d in storage, the durable log records only %d", what, key, md.Generation, maxGen[key])
					}
					if md.State == core.StateActive && md.Algorithm == provider.Ed25519 && md.Policy.RotationPeriod == 0 {
						if _, err := ks.Sign(ctx, alice, id, []byte("after the cut")); err != nil {
							t.Errorf("%s: sign with %s (v%d) after restart: %v", what, key, md.Current, err)
						}
					}
				}
			}
		}
	}
}

// copyFiles copies the regular files of directory src into dst.
func copyFiles(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// TestPowerCut runs state-changing requests (create, import, rotate,
// revoke-version, set-policy, revoke, destroy, signs and sign batches that
// rotate due keys, a sweep, seal-budget reservations, Store put and
// delete, a KEK rotation) from four clients at once through the server,
// with a real audit.Log and the audit index (internal/tamper) — without
// and with an external counter (whose rounds fsync the log too), and with
// 4 KiB audit segments (rotations during the run) — over a simulated
// machine (internal/powercut) that keeps only what was made durable. It
// cuts the power before a seeded durability event (keeping, in half the
// cuts, a torn tail of unsynced audit records), restarts on the image as
// the daemon does, runs more requests there and cuts again; after each
// restart it checks that every change acknowledged (or visible in
// memory) before a cut is in the state with its durable audit record,
// that no key in storage is at a generation the durable log lacks, that
// every key passes the start scan and signs, and that the start checks
// accept the image (a power cut is not tampering). docs/security.md,
// "Guarantees and the tests that prove them".
func TestPowerCut(t *testing.T) {
	const seed = 15
	runs := 4
	if testing.Short() {
		runs = 3
	}
	for _, cfg := range []pcConfig{{}, {counter: true}, {segSize: audit.MinSegmentSize}} {
		t.Run(fmt.Sprintf("counter=%v,segment=%d", cfg.counter, cfg.segSize), func(t *testing.T) {
			total := pcRun(t, seed, cfg, pcCut{})[0] // no cut: how many events a round has
			if total == 0 {
				t.Fatal("the workload made nothing durable")
			}
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := range runs {
				// Two rounds: a cut, a restart that must accept the
				// image, more requests on it, a second cut, a restart.
				var cs []pcCut
				for r := range 2 {
					c := pcCut{at: 1 + rng.IntN(total)}
					if i == 0 {
						c.at = 1 + r // the first events: the first creates' intents
					}
					if (i+r)%2 == 1 {
						c.tail = rng.IntN(600) // unsynced records that reached the disk, torn
					}
					cs = append(cs, c)
				}
				t.Run(fmt.Sprintf("cuts%v", cs), func(t *testing.T) { pcRun(t, seed, cfg, cs...) })
			}
		})
	}
}

// After an accepted audit log change (--accept-audit-log-change) the
// daemon takes the stored keys' generations into the new log
// (keys.adopted) and serves them: a power cut right after must find
// those records durable, or the next start refuses the keys as not in
// the log — a power cut reported as tampering.
func TestPowerCutAfterAdoption(t *testing.T) {
	ctx := context.Background()
	m := powercut.New()
	// A first daemon makes keys; its log is then lost.
	state1 := pcTempDir(t)
	d1, err := startPC(t, pcStart{state: state1, st: m.Storage()})
	if err != nil {
		t.Fatal(err)
	}
	d1.serve(t)
	keys := keystorev1.NewKeysClient(d1.conn)
	for _, k := range []string{"pc/a", "pc/b"} {
		if _, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := keys.Rotate(ctx, &keystorev1.RotateKeyRequest{Key: "pc/b"}); err != nil {
		t.Fatal(err)
	}
	d1.stop()
	if err := d1.log.Close(); err != nil {
		t.Fatal(err)
	}

	// The operator accepts a new log; the daemon adopts the keys, as
	// cmd/keystored does after Start, and the power goes.
	state := pcTempDir(t)
	if err := copyFiles(filepath.Join(state1, "kek"), filepath.Join(state, "kek")); err != nil {
		t.Fatal(err)
	}
	d2, err := startPC(t, pcStart{state: state, st: m.Storage(), observe: m.DurableObserver, accept: true})
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := d2.srv.Keystore().AdoptGenerations(ctx, d2.tr.Adoptable)
	if err != nil || len(adopted) != 2 {
		t.Fatalf("adopted %v, %v; want both keys", adopted, err)
	}
	m.CutNow()
	snap, err := os.ReadFile(filepath.Join(state, tamper.SnapshotName))
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.log.Close(); err != nil {
		t.Logf("closing the log after the cut: %v", err)
	}
	_, _, seq := m.Image()
	img := pcTempDir(t)
	if err := powercut.CopyAuditDir(filepath.Join(state, "audit"), filepath.Join(img, "audit"), "audit.jsonl", seq, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, tamper.SnapshotName), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyFiles(filepath.Join(state, "kek"), filepath.Join(img, "kek")); err != nil {
		t.Fatal(err)
	}
	mem, err := m.Restore()
	if err != nil {
		t.Fatal(err)
	}
	d3, err := startPC(t, pcStart{state: img, st: mem})
	if err != nil {
		t.Fatalf("the restart after the power cut refuses the image: %v", err)
	}
	defer func() {
		if err := d3.log.Close(); err != nil {
			t.Error(err)
		}
	}()
	for _, k := range []string{"alice/pc/a", "alice/pc/b"} {
		id, err := provider.ParseKeyID(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := d3.srv.Keystore().CheckKey(ctx, id); err != nil {
			t.Errorf("%s after the power cut: %v", k, err)
		}
	}
}

package crash

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/nexus-os/keystored/client"
)

// sealedItem is an acknowledged seal: what Unseal must give back.
type sealedItem struct {
	version   uint32
	data, aad []byte
	plaintext []byte
}

// signedItem is an acknowledged signature: Verify must accept it.
type signedItem struct {
	version  uint32
	msg, sig []byte
}

// keepItems bounds the seals and signatures kept per key once they have
// been checked after a restart (a random one is replaced when full), so
// that the checks stay bounded over 1,000 kills. Every acknowledged seal
// and signature is checked after the restart that follows it.
const keepItems = 4

// keyModel is what the test knows about one key whose existence is
// acknowledged (its create returned, or a restart showed it).
type keyModel struct {
	name string // "<purpose>/<name>", as requests name it
	id   string // the full ID
	alg  client.Algorithm
	sign bool
	idx  int // position in model.order

	// Known durable: acknowledged since the last check, or observed at it.
	versions uint32          // lower bound of the current version
	state    client.KeyState // lower bound: active < revoked < destroyed
	revokedV map[uint32]bool // versions known revoked (or destroyed)

	// Since the last check: the version count observed then, and the
	// attempts that may have taken effect (acknowledged, or cut off by
	// the kill). Attempts that failed with a daemon error are taken back.
	base        uint32
	rotations   int
	revokes     int
	destroys    int
	revokeTries map[uint32]int
	dirty       bool

	seals, newSeals []sealedItem // kept ones; acknowledged since the last check
	sigs, newSigs   []signedItem
}

// keepNew moves the items checked after a restart into the kept ones
// (m.mu held).
func (k *keyModel) keepNew(rng *rand.Rand) {
	for _, s := range k.newSeals {
		if len(k.seals) < keepItems {
			k.seals = append(k.seals, s)
		} else {
			k.seals[rng.IntN(keepItems)] = s
		}
	}
	for _, s := range k.newSigs {
		if len(k.sigs) < keepItems {
			k.sigs = append(k.sigs, s)
		} else {
			k.sigs[rng.IntN(keepItems)] = s
		}
	}
	k.newSeals, k.newSigs = nil, nil
}

// observed makes info, seen after a restart, the new baseline.
func (k *keyModel) observed(info client.KeyInfo) {
	k.versions, k.base = info.CurrentVersion, info.CurrentVersion
	k.state = info.State
	k.revokedV = map[uint32]bool{}
	for _, v := range info.Versions {
		if v.State == client.VersionRevoked || v.State == client.VersionDestroyed {
			k.revokedV[v.Version] = true
		}
	}
	k.rotations, k.revokes, k.destroys = 0, 0, 0
	k.revokeTries = map[uint32]int{}
	k.dirty = false
}

// stats are the figures the test reports.
type stats struct {
	kills       int
	restarts    int
	acked       map[string]int // acknowledged operations by kind
	refused     int            // operations the daemon refused as expected (EKEYREVOKED, EALREADY)
	inFlight    int            // operations cut off by a kill: outcome unknown
	landed      int            // creates cut off by a kill whose key exists after the restart
	lost        int            // acknowledged operations missing after a restart: must be 0
	unsealed    int            // checks of acknowledged seals after restarts
	verified    int            // checks of acknowledged signatures after restarts
	tornTails   int            // audit logs whose torn last line the daemon cut off
	auditChecks int            // audit records verified, in all
}

func (s *stats) ackedTotal() int {
	n := 0
	for _, v := range s.acked {
		n += v
	}
	return n
}

// model is the shared knowledge of the workers and the checker.
type model struct {
	mu    sync.Mutex
	keys  map[string]*keyModel        // by name
	order []*keyModel                 // in creation order (deterministic picks)
	maybe map[string]client.Algorithm // creates cut off by a kill, by name
	// abandoned names a create cut off by a kill that did not happen:
	// nothing of it stays (its temporary file is swept at the restart);
	// an older version's left its key directory, without meta.json.
	abandoned map[string]bool
	next      int // next key number
	st        stats
	errs      []string // violations and unexpected errors of this cycle
	scan      scanner  // checks the state directory after each restart
	rng       *rand.Rand
}

func newModel(seed uint64) *model {
	return &model{rng: rand.New(rand.NewPCG(seed, 1<<32)), keys: map[string]*keyModel{}, maybe: map[string]client.Algorithm{}, abandoned: map[string]bool{}, st: stats{acked: map[string]int{}}}
}

// failf records a violation (called with m.mu held).
func (m *model) failf(format string, args ...any) {
	m.errs = append(m.errs, fmt.Sprintf(format, args...))
}

// newName returns a key name never used before (called with m.mu held).
func (m *model) newName() string {
	m.next++
	return "crash/k" + strconv.Itoa(m.next)
}

// add records a key whose existence is acknowledged (m.mu held).
func (m *model) add(name string, info client.KeyInfo) *keyModel {
	k := &keyModel{name: name, id: info.ID, alg: info.Algorithm, sign: isSign(info.Algorithm), idx: len(m.order)}
	k.observed(info)
	k.dirty = true
	m.keys[name] = k
	m.order = append(m.order, k)
	return k
}

// pick returns a random key among those f accepts, or nil (m.mu held).
func (m *model) pick(rng *rand.Rand, f func(*keyModel) bool) *keyModel {
	var c []*keyModel
	for _, k := range m.order {
		if f(k) {
			c = append(c, k)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[rng.IntN(len(c))]
}

// countActive returns the number of keys known active (m.mu held).
func (m *model) countActive() int {
	n := 0
	for _, k := range m.order {
		if k.state == client.KeyActive {
			n++
		}
	}
	return n
}

func isSign(a client.Algorithm) bool {
	switch a {
	case client.Ed25519, client.Ed448, client.MLDSA44, client.MLDSA65, client.MLDSA87:
		return true
	}
	return false
}

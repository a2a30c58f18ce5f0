package crash

import (
	"context"
	"math/rand/v2"
	"sync/atomic"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// outcome is how one call ended, for the model.
type outcome int

const (
	acked   outcome = iota // success: the effect is durable
	refused                // a daemon error the operation allows here: no effect
	unknown                // cut off by the kill: either outcome is allowed
	broken                 // any other error: a violation
)

// classify maps a call's error to its outcome; allowed are the codes the
// daemon may legitimately answer (a concurrent revoke, ...).
func classify(err error, allowed ...provider.Code) outcome {
	if err == nil {
		return acked
	}
	code, ok := client.CodeOf(err)
	if !ok {
		return broken
	}
	if code == provider.EUNAVAILABLE {
		return unknown
	}
	for _, a := range allowed {
		if code == a {
			return refused
		}
	}
	return broken
}

// minActive is the number of active keys the workload keeps around.
const minActive = 8

// algorithms the workload creates keys with, with their weights.
var algorithms = []struct {
	alg    client.Algorithm
	weight int
}{
	{client.Ed25519, 35},
	{client.XChaCha20Poly1305, 35},
	{client.AES256GCM, 20},
	{client.MLDSA44, 10},
}

// worker drives random operations until the daemon is gone.
type worker struct {
	m      *model
	c      *client.Client
	rng    *rand.Rand
	killed *atomic.Bool // set just before the SIGKILL: start no more calls
	dead   *atomic.Bool // set once the daemon is reaped: calls started later were never seen
}

// run does operations until one is cut off or the kill has been decided.
func (w *worker) run(ctx context.Context) {
	for !w.killed.Load() {
		if !w.step(ctx) {
			return
		}
	}
}

// step does one random operation; false when its outcome is unknown (the
// daemon is gone).
func (w *worker) step(ctx context.Context) bool {
	w.m.mu.Lock()
	r := w.rng.IntN(100)
	create := w.m.countActive() < minActive
	w.m.mu.Unlock()
	switch {
	case create || r < 6:
		return w.create(ctx)
	case r < 36:
		return w.sign(ctx)
	case r < 66:
		return w.seal(ctx)
	case r < 84:
		return w.rotate(ctx)
	case r < 89:
		return w.revokeVersion(ctx)
	case r < 92:
		return w.revoke(ctx)
	case r < 95:
		return w.destroy(ctx)
	default:
		return w.get(ctx)
	}
}

// end books an outcome that needs no model update beyond the counters
// (m.mu held) and reports whether the worker goes on.
func (w *worker) end(o outcome, op string, key string, err error, deadBefore bool) bool {
	switch o {
	case acked:
		w.m.st.acked[op]++
	case refused:
		w.m.st.refused++
	case unknown:
		if !deadBefore {
			w.m.st.inFlight++
		}
		return false
	case broken:
		w.m.failf("%s %s: unexpected error: %v", op, key, err)
	}
	return true
}

func (w *worker) create(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	name := m.newName()
	n := w.rng.IntN(100)
	alg := algorithms[0].alg
	for _, a := range algorithms {
		if n < a.weight {
			alg = a.alg
			break
		}
		n -= a.weight
	}
	m.maybe[name] = alg
	m.mu.Unlock()

	dead := w.dead.Load()
	info, err := w.c.Create(ctx, name, client.CreateOptions{Algorithm: alg})

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err)
	switch o {
	case acked:
		delete(m.maybe, name)
		if info.CurrentVersion != 1 || info.State != client.KeyActive || info.Algorithm != alg {
			m.failf("create %s: got version %d state %v algorithm %s, want 1 active %s", name, info.CurrentVersion, info.State, info.Algorithm, alg)
		}
		m.add(name, info)
	case broken:
		delete(m.maybe, name)
	}
	return w.end(o, "create", name, err, dead)
}

func randBytes(rng *rand.Rand, lo, hi int) []byte {
	b := make([]byte, lo+rng.IntN(hi-lo+1))
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// pickUse picks a key for sign (sign true) or seal: an active one, or
// now and then one known revoked, which must refuse.
func (w *worker) pickUse(sign bool) *keyModel {
	revoked := w.rng.IntN(20) == 0
	return w.m.pick(w.rng, func(k *keyModel) bool {
		if k.sign != sign {
			return false
		}
		if revoked {
			return k.state != client.KeyActive
		}
		return k.state == client.KeyActive
	})
}

// refusedAsRevoked checks that an EKEYREVOKED answer has a revoke behind
// it (m.mu held).
func (w *worker) refusedAsRevoked(op string, k *keyModel) {
	if k.state == client.KeyActive && k.revokes == 0 {
		w.m.failf("%s %s: EKEYREVOKED, but no revoke was ever attempted", op, k.id)
	}
}

func (w *worker) sign(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	k := w.pickUse(true)
	if k == nil {
		m.mu.Unlock()
		return true
	}
	wasRevoked := k.state != client.KeyActive
	k.dirty = true
	msg := randBytes(w.rng, 1, 64)
	m.mu.Unlock()

	dead := w.dead.Load()
	sig, err := w.c.Sign(ctx, k.name, msg)

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err, provider.EKEYREVOKED)
	switch o {
	case acked:
		if wasRevoked {
			m.failf("sign %s succeeded after its revoke was acknowledged", k.id)
		}
		if sig.Version == 0 || sig.Version > k.base+uint32(k.rotations) {
			m.failf("sign %s: version %d, but at most %d versions can exist", k.id, sig.Version, k.base+uint32(k.rotations))
		}
		k.versions = max(k.versions, sig.Version)
		k.newSigs = append(k.newSigs, signedItem{version: sig.Version, msg: msg, sig: sig.Signature})
	case refused:
		w.refusedAsRevoked("sign", k)
	}
	return w.end(o, "sign", k.id, err, dead)
}

func (w *worker) seal(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	k := w.pickUse(false)
	if k == nil {
		m.mu.Unlock()
		return true
	}
	wasRevoked := k.state != client.KeyActive
	k.dirty = true // a seal may write a seal-budget reservation
	pt := randBytes(w.rng, 0, 256)
	aad := randBytes(w.rng, 0, 32)
	m.mu.Unlock()

	dead := w.dead.Load()
	s, err := w.c.Seal(ctx, k.name, pt, aad)

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err, provider.EKEYREVOKED)
	switch o {
	case acked:
		if wasRevoked {
			m.failf("seal %s succeeded after its revoke was acknowledged", k.id)
		}
		if s.Version == 0 || s.Version > k.base+uint32(k.rotations) {
			m.failf("seal %s: version %d, but at most %d versions can exist", k.id, s.Version, k.base+uint32(k.rotations))
		}
		k.versions = max(k.versions, s.Version)
		k.newSeals = append(k.newSeals, sealedItem{version: s.Version, data: s.Data, aad: aad, plaintext: pt})
	case refused:
		w.refusedAsRevoked("seal", k)
	}
	return w.end(o, "seal", k.id, err, dead)
}

func (w *worker) rotate(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	k := m.pick(w.rng, func(k *keyModel) bool { return k.state == client.KeyActive })
	if k == nil {
		m.mu.Unlock()
		return true
	}
	k.rotations++
	k.dirty = true
	m.mu.Unlock()

	dead := w.dead.Load()
	info, err := w.c.Rotate(ctx, k.name)

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err, provider.EKEYREVOKED)
	switch o {
	case acked:
		if info.State != client.KeyActive {
			m.failf("rotate %s succeeded but the key is %v", k.id, info.State)
		}
		if p := primaries(info); len(p) != 1 || p[0] != info.CurrentVersion {
			m.failf("rotate %s: primary versions %v, want exactly [%d]", k.id, p, info.CurrentVersion)
		}
		k.versions = max(k.versions, info.CurrentVersion)
	case refused:
		k.rotations--
		w.refusedAsRevoked("rotate", k)
	}
	return w.end(o, "rotate", k.id, err, dead)
}

func (w *worker) revokeVersion(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	var v uint32
	k := m.pick(w.rng, func(k *keyModel) bool {
		return k.state == client.KeyActive && k.versions >= 2 && len(k.revokedV) < int(k.versions-1)
	})
	if k != nil {
		var c []uint32
		for i := uint32(1); i < k.versions; i++ {
			if !k.revokedV[i] {
				c = append(c, i)
			}
		}
		v = c[w.rng.IntN(len(c))]
		k.revokeTries[v]++
		k.dirty = true
	}
	m.mu.Unlock()
	if k == nil {
		return true
	}

	dead := w.dead.Load()
	_, err := w.c.RevokeVersion(ctx, k.name, v)

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err, provider.EALREADY, provider.EKEYREVOKED)
	switch o {
	case acked:
		k.revokedV[v] = true
	case refused:
		k.revokeTries[v]--
	}
	return w.end(o, "revoke-version", k.id, err, dead)
}

func (w *worker) revoke(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	k := m.pick(w.rng, func(k *keyModel) bool { return k.state == client.KeyActive })
	if k == nil {
		m.mu.Unlock()
		return true
	}
	k.revokes++
	k.dirty = true
	m.mu.Unlock()

	dead := w.dead.Load()
	info, err := w.c.Revoke(ctx, k.name)

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err, provider.EALREADY)
	switch o {
	case acked:
		if info.State != client.KeyRevoked || len(primaries(info)) != 0 {
			m.failf("revoke %s: state %v, primaries %v; want revoked, none", k.id, info.State, primaries(info))
		}
		k.state = max(k.state, client.KeyRevoked)
	case refused:
		k.revokes--
	}
	return w.end(o, "revoke", k.id, err, dead)
}

func (w *worker) destroy(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	k := m.pick(w.rng, func(k *keyModel) bool { return k.state == client.KeyRevoked })
	if k == nil {
		m.mu.Unlock()
		return true
	}
	k.destroys++
	k.dirty = true
	m.mu.Unlock()

	dead := w.dead.Load()
	info, err := w.c.Destroy(ctx, k.name)

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err, provider.EALREADY)
	switch o {
	case acked:
		if info.State != client.KeyDestroyed {
			m.failf("destroy %s: state %v, want destroyed", k.id, info.State)
		}
		k.state = client.KeyDestroyed
	case refused:
		k.destroys--
	}
	return w.end(o, "destroy", k.id, err, dead)
}

// get reads a key: what it shows never goes back behind what was known
// when the call started.
func (w *worker) get(ctx context.Context) bool {
	m := w.m
	m.mu.Lock()
	k := m.pick(w.rng, func(*keyModel) bool { return true })
	if k == nil {
		m.mu.Unlock()
		return true
	}
	versions, state := k.versions, k.state
	m.mu.Unlock()

	dead := w.dead.Load()
	info, err := w.c.Get(ctx, k.name)

	m.mu.Lock()
	defer m.mu.Unlock()
	o := classify(err)
	if o == acked && (info.CurrentVersion < versions || info.State < state) {
		m.failf("get %s: version %d state %v, behind the known version %d state %v", k.id, info.CurrentVersion, info.State, versions, state)
	}
	return w.end(o, "get", k.id, err, dead)
}

// primaries lists the primary versions of info.
func primaries(info client.KeyInfo) []uint32 {
	var p []uint32
	for _, v := range info.Versions {
		if v.State == client.VersionPrimary {
			p = append(p, v.Version)
		}
	}
	return p
}

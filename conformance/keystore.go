package conformance

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// RunKeystore runs the keystore-level suite over providers from
// newProvider: a core.Keystore on in-memory storage with a fake clock
// over each provider, one subtest per host behaviour the keystore needs
// (create, sign and verify, rotate, revoke, seal and unseal, destroy,
// reopen, determinism). docs/providers.md lists each subtest and what it
// checks.
func RunKeystore(t *testing.T, newProvider Factory, opts ...Option) {
	t.Helper()
	for _, c := range ksChecks() {
		t.Run(c.name, func(t *testing.T) { c.run(t, newProvider) })
	}
}

// ksCheck is one subtest of RunKeystore.
type ksCheck struct {
	name string
	run  func(t *testing.T, newProvider Factory)
}

// ksChecks lists RunKeystore's subtests in order.
func ksChecks() []ksCheck {
	onFresh := func(f func(*testing.T, *ksEnv)) func(*testing.T, Factory) {
		return func(t *testing.T, newProvider Factory) { f(t, newKSEnv(t, newProvider(t))) }
	}
	return []ksCheck{
		{"CreateSignVerify", onFresh(ksCreateSignVerify)},
		{"Rotate", onFresh(ksRotate)},
		{"Revoke", onFresh(ksRevoke)},
		{"SealUnseal", onFresh(ksSealUnseal)},
		{"Destroy", onFresh(ksDestroy)},
		{"Reopen", func(t *testing.T, newProvider Factory) { ksReopen(t, newProvider(t)) }},
		{"Deterministic", ksDeterministic},
	}
}

var ksCaller = core.Caller{App: "conformance"}

type ksEnv struct {
	ks    *core.Keystore
	st    *storage.Memory
	p     provider.Provider
	info  provider.Info
	clock *clock.Fake
	audit *ksAudit
}

type ksAudit struct {
	mu sync.Mutex
	n  int
}

func (a *ksAudit) Ready(context.Context) error { return nil }

func (a *ksAudit) Commit(context.Context, core.Event) error { return nil }
func (a *ksAudit) Record(context.Context, core.Event) error {
	a.mu.Lock()
	a.n++
	a.mu.Unlock()
	return nil
}

func newKSEnv(t *testing.T, p provider.Provider) *ksEnv {
	t.Helper()
	return newKSEnvOn(t, p, storage.NewMemory())
}

func newKSEnvOn(t *testing.T, p provider.Provider, st *storage.Memory) *ksEnv {
	t.Helper()
	e := &ksEnv{st: st, p: p, clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), audit: &ksAudit{}}
	ks, err := core.Open(t.Context(), core.Config{Storage: st, Provider: p, Clock: e.clock, Audit: e.audit})
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	e.ks, e.info = ks, ks.ProviderInfo()
	return e
}

func (e *ksEnv) algs(use provider.Use) []provider.Algorithm {
	var out []provider.Algorithm
	for _, a := range e.info.Algorithms {
		if s, err := defaultRegistry().Lookup(a); err == nil && s.Use == use {
			out = append(out, a)
		}
	}
	return out
}

func (e *ksEnv) create(t *testing.T, name string, a provider.Algorithm) core.KeyID {
	t.Helper()
	id, err := provider.NewKeyID(ksCaller.App, "suite", name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Create(t.Context(), ksCaller, id, core.CreateOptions{Algorithm: a}); err != nil {
		t.Fatalf("create %s (%s): %v", id, a, err)
	}
	return id
}

func ksWant(t *testing.T, what string, err error, want provider.Code) {
	t.Helper()
	got, ok := provider.CodeOf(err)
	if err == nil || !ok || got != want {
		t.Fatalf("%s: got %v, want an error with code %v", what, err, want)
	}
}

func ksCreateSignVerify(t *testing.T, e *ksEnv) {
	algs := e.algs(provider.UseSign)
	if len(algs) == 0 {
		t.Skip("provider announces no signature algorithm")
	}
	for _, a := range algs {
		t.Run(string(a), func(t *testing.T) {
			id := e.create(t, "sig-"+string(a), a)
			msg := []byte("conformance message")
			sig, err := e.ks.Sign(t.Context(), ksCaller, id, msg)
			if err != nil || sig.Version != 1 {
				t.Fatalf("sign: version %d, %v", sig.Version, err)
			}
			if err := e.ks.Verify(t.Context(), ksCaller, id, 1, msg, sig.Signature); err != nil {
				t.Fatalf("verify: %v", err)
			}
			ksWant(t, "verify another message", e.ks.Verify(t.Context(), ksCaller, id, 1, append(msg, '!'), sig.Signature), provider.EBADMSG)
			pk, err := e.ks.PublicKey(t.Context(), ksCaller, id, 1)
			if err != nil {
				t.Fatal(err)
			}
			v, err := verifier(a)
			if err != nil {
				t.Skip(err.Error())
			}
			if !v(pk.Key, msg, sig.Signature) {
				t.Fatal("signature does not verify with an independent implementation")
			}
		})
	}
}

func ksRotate(t *testing.T, e *ksEnv) {
	algs := e.algs(provider.UseSign)
	if len(algs) == 0 {
		t.Skip("provider announces no signature algorithm")
	}
	a := algs[0]
	id := e.create(t, "rotate", a)
	old, err := e.ks.Sign(t.Context(), ksCaller, id, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	pk1, err := e.ks.PublicKey(t.Context(), ksCaller, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.ks.Rotate(t.Context(), ksCaller, id)
	if err != nil || m.Current != 2 {
		t.Fatalf("rotate: %v", err)
	}
	if err := e.ks.Verify(t.Context(), ksCaller, id, 1, []byte("before"), old.Signature); err != nil {
		t.Fatalf("historical signature after rotation: %v", err)
	}
	v, verr := verifier(a)
	if verr == nil && !v(pk1.Key, []byte("before"), old.Signature) {
		t.Fatal("old public key does not verify the historical signature")
	}
	s2, err := e.ks.Sign(t.Context(), ksCaller, id, []byte("after"))
	if err != nil || s2.Version != 2 {
		t.Fatalf("new signature: version %d, %v", s2.Version, err)
	}
	pk2, err := e.ks.PublicKey(t.Context(), ksCaller, id, 2)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(pk1.Key, pk2.Key) {
		t.Fatal("rotation kept the same public key")
	}
	if err := e.ks.Verify(t.Context(), ksCaller, id, 2, []byte("after"), s2.Signature); err != nil {
		t.Fatalf("new signature: %v", err)
	}
	if verr == nil && !v(pk2.Key, []byte("after"), s2.Signature) {
		t.Fatal("new public key does not verify the new signature")
	}
}

func ksRevoke(t *testing.T, e *ksEnv) {
	var sid, did core.KeyID
	var sig core.Signature
	var sealed []byte
	var err error
	if s := e.algs(provider.UseSign); len(s) > 0 {
		sid = e.create(t, "revoke-sig", s[0])
		if sig, err = e.ks.Sign(t.Context(), ksCaller, sid, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if d := e.algs(provider.UseDecrypt); len(d) > 0 {
		did = e.create(t, "revoke-dec", d[0])
		s, err := e.ks.Seal(t.Context(), ksCaller, did, []byte("p"), []byte("a"))
		if err != nil {
			t.Fatal(err)
		}
		sealed = s.Data
	}
	for _, id := range []core.KeyID{sid, did} {
		if id.IsZero() {
			continue
		}
		if _, err := e.ks.Revoke(t.Context(), ksCaller, id); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if !sid.IsZero() {
			_, err := e.ks.Sign(t.Context(), ksCaller, sid, []byte("m"))
			ksWant(t, "sign after revoke", err, provider.EKEYREVOKED)
			ksWant(t, "verify after revoke", e.ks.Verify(t.Context(), ksCaller, sid, 1, []byte("m"), sig.Signature), provider.EKEYREVOKED)
			_, err = e.ks.Rotate(t.Context(), ksCaller, sid)
			ksWant(t, "rotate after revoke", err, provider.EKEYREVOKED)
		}
		if !did.IsZero() {
			_, err := e.ks.Seal(t.Context(), ksCaller, did, []byte("p"), nil)
			ksWant(t, "seal after revoke", err, provider.EKEYREVOKED)
			_, err = e.ks.Unseal(t.Context(), ksCaller, did, sealed, []byte("a"))
			ksWant(t, "unseal after revoke", err, provider.EKEYREVOKED)
		}
	}
}

func ksSealUnseal(t *testing.T, e *ksEnv) {
	algs := e.algs(provider.UseDecrypt)
	if len(algs) == 0 {
		t.Skip("provider announces no AEAD algorithm")
	}
	for _, a := range algs {
		t.Run(string(a), func(t *testing.T) {
			id := e.create(t, "seal-"+string(a), a)
			s, err := e.ks.Seal(t.Context(), ksCaller, id, []byte("conformance plaintext"), []byte("aad"))
			if err != nil || s.Version != 1 {
				t.Fatalf("seal: v%d, %v", s.Version, err)
			}
			sealed := s.Data
			u, err := e.ks.Unseal(t.Context(), ksCaller, id, sealed, []byte("aad"))
			if err != nil || u.Version != 1 || string(u.Plaintext) != "conformance plaintext" {
				t.Fatalf("unseal: %q v%d, %v", u.Plaintext, u.Version, err)
			}
			_, err = e.ks.Unseal(t.Context(), ksCaller, id, sealed, []byte("aaD"))
			ksWant(t, "wrong AAD", err, provider.EBADMSG)
			for i := range sealed {
				b := append([]byte(nil), sealed...)
				b[i] ^= 0x80
				pt, err := e.ks.Unseal(t.Context(), ksCaller, id, b, []byte("aad"))
				if pt.Plaintext != nil {
					t.Fatalf("byte %d flipped: plaintext returned", i)
				}
				ksWant(t, "flipped byte", err, provider.EBADMSG)
			}
			for n := 0; n < len(sealed); n += max(1, len(sealed)/16) {
				_, err := e.ks.Unseal(t.Context(), ksCaller, id, sealed[:n], []byte("aad"))
				ksWant(t, "truncated", err, provider.EBADMSG)
			}
		})
	}
}

func ksDestroy(t *testing.T, e *ksEnv) {
	all := append(e.algs(provider.UseSign), e.algs(provider.UseDecrypt)...)
	if len(all) == 0 {
		t.Skip("provider announces no algorithm")
	}
	id := e.create(t, "destroy", all[0])
	_, err := e.ks.Destroy(t.Context(), ksCaller, id)
	ksWant(t, "destroy an active key", err, provider.EPERM)
	if _, err := e.ks.Revoke(t.Context(), ksCaller, id); err != nil {
		t.Fatal(err)
	}
	m, err := e.ks.Destroy(t.Context(), ksCaller, id)
	if err != nil || m.State != core.StateDestroyed {
		t.Fatalf("destroy: %v", err)
	}
	for path := range e.st.Snapshot() {
		if bytes.HasSuffix([]byte(path), []byte(".handle")) && bytes.Contains([]byte(path), []byte("/destroy/")) {
			t.Fatalf("handle file %s survives destruction", path)
		}
	}
	_, err = e.ks.Sign(t.Context(), ksCaller, id, []byte("m"))
	ksWant(t, "use after destroy", err, provider.EKEYREVOKED)
	_, err = e.ks.Create(t.Context(), ksCaller, id, core.CreateOptions{Algorithm: all[0]})
	ksWant(t, "re-create a destroyed ID", err, provider.EALREADY)
}

func ksReopen(t *testing.T, p provider.Provider) {
	e := newKSEnv(t, p)
	var ids []core.KeyID
	var sealedBy = map[core.KeyID][]byte{}
	for _, a := range e.ks.ProviderInfo().Algorithms {
		id := e.create(t, "reopen-"+string(a), a)
		if _, err := e.ks.Rotate(t.Context(), ksCaller, id); err != nil {
			t.Fatal(err)
		}
		if s, _ := defaultRegistry().Lookup(a); s != nil && s.Use == provider.UseDecrypt {
			b, err := e.ks.Seal(t.Context(), ksCaller, id, []byte("kept"), nil)
			if err != nil {
				t.Fatal(err)
			}
			sealedBy[id] = b.Data
		}
		ids = append(ids, id)
	}
	if len(ids) > 1 {
		if _, err := e.ks.Revoke(t.Context(), ksCaller, ids[len(ids)-1]); err != nil {
			t.Fatal(err)
		}
	}
	var before []core.Metadata
	for _, id := range ids {
		m, err := e.ks.Get(t.Context(), ksCaller, id)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, m)
	}
	e2 := newKSEnvOn(t, p, e.st)
	for i, id := range ids {
		m, err := e2.ks.Get(t.Context(), ksCaller, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.State != before[i].State || m.Current != before[i].Current || len(m.Versions) != len(before[i].Versions) {
			t.Fatalf("%s after reopen: %+v, want %+v", id, m, before[i])
		}
		for j := range m.Versions {
			if m.Versions[j].State != before[i].Versions[j].State || !bytes.Equal(m.Versions[j].PublicKey, before[i].Versions[j].PublicKey) {
				t.Fatalf("%s version %d differs after reopen", id, j+1)
			}
		}
	}
	for id, b := range sealedBy {
		pt, err := e2.ks.Unseal(t.Context(), ksCaller, id, b, nil)
		if m, _ := e2.ks.Get(t.Context(), ksCaller, id); m.State == core.StateRevoked {
			ksWant(t, "unseal with a revoked key after reopen", err, provider.EKEYREVOKED)
			continue
		}
		if err != nil || string(pt.Plaintext) != "kept" {
			t.Fatalf("unseal %s after reopen: %q, %v", id, pt, err)
		}
	}
}

func ksDeterministic(t *testing.T, newProvider Factory) {
	p1 := newProvider(t)
	info, err := p1.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !info.Deterministic {
		t.Skip("provider does not announce Deterministic: nothing to compare")
	}
	e1, e2 := newKSEnv(t, p1), newKSEnv(t, newProvider(t))
	algs := e1.ks.ProviderInfo().Algorithms
	outputs := func(e *ksEnv, order []provider.Algorithm) map[string][]byte {
		out := map[string][]byte{}
		for _, a := range order {
			e.create(t, "det-"+string(a), a)
		}
		for _, a := range algs {
			id, _ := provider.NewKeyID(ksCaller.App, "suite", "det-"+string(a))
			s, _ := defaultRegistry().Lookup(a)
			if s.Use == provider.UseSign {
				pk, err := e.ks.PublicKey(t.Context(), ksCaller, id, 1)
				if err != nil {
					t.Fatal(err)
				}
				sig, err := e.ks.Sign(t.Context(), ksCaller, id, []byte("determinism"))
				if err != nil {
					t.Fatal(err)
				}
				out["pub/"+string(a)], out["sig/"+string(a)] = pk.Key, sig.Signature
			} else {
				b, err := e.ks.Seal(t.Context(), ksCaller, id, []byte("determinism"), []byte("aad"))
				if err != nil {
					t.Fatal(err)
				}
				out["sealed/"+string(a)] = b.Data
			}
		}
		return out
	}
	rev := append([]provider.Algorithm(nil), algs...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	o1, o2 := outputs(e1, algs), outputs(e2, rev)
	if len(o1) == 0 {
		t.Fatal("no outputs to compare")
	}
	for k, v := range o1 {
		if !bytes.Equal(v, o2[k]) {
			t.Errorf("%s differs between two fresh keystores", k)
		}
	}
	// Handle files too.
	s1, s2 := e1.st.Snapshot(), e2.st.Snapshot()
	for path, b := range s1 {
		if bytes.HasSuffix([]byte(path), []byte(".handle")) && !bytes.Equal(b, s2[path]) {
			t.Errorf("%s differs between two fresh keystores", path)
		}
	}
}

// ksRegistry is the algorithm registry the keystore suite reads sizes and
// uses from.
var ksRegistry = alg.Default()

func defaultRegistry() *alg.Registry { return ksRegistry }

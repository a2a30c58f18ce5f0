package conformance

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
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
// (create, sign and verify messages and digests, sign with a named
// version, MAC and verify, rotate, revoke, seal and unseal, data keys,
// HPKE decryption, key import, destroy, reopen, determinism). docs/providers.md lists each subtest and what it
// checks. Of the options only WithFreshKeys applies: without it a key of
// an algorithm that is slow to generate (RSA) is not rotated where the
// check does not need it.
func RunKeystore(t *testing.T, newProvider Factory, opts ...Option) {
	t.Helper()
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	for _, c := range ksChecks() {
		t.Run(c.name, func(t *testing.T) { c.run(t, newProvider, o) })
	}
}

// ksCheck is one subtest of RunKeystore.
type ksCheck struct {
	name string
	run  func(t *testing.T, newProvider Factory, o options)
}

// ksChecks lists RunKeystore's subtests in order.
func ksChecks() []ksCheck {
	onFresh := func(f func(*testing.T, *ksEnv)) func(*testing.T, Factory, options) {
		return func(t *testing.T, newProvider Factory, o options) {
			e := newKSEnv(t, newProvider(t))
			e.fresh = o.freshKeys
			e.imports = o.imports
			f(t, e)
		}
	}
	return []ksCheck{
		{"CreateSignVerify", onFresh(ksCreateSignVerify)},
		{"SignWithVersion", onFresh(ksSignWithVersion)},
		{"MACVerify", onFresh(ksMACVerify)},
		{"Rotate", onFresh(ksRotate)},
		{"Revoke", onFresh(ksRevoke)},
		{"SealUnseal", onFresh(ksSealUnseal)},
		{"DataKeys", onFresh(ksDataKeys)},
		{"HPKEDecrypt", onFresh(ksHPKEDecrypt)},
		{"Import", onFresh(ksImport)},
		{"Destroy", onFresh(ksDestroy)},
		{"Reopen", func(t *testing.T, newProvider Factory, o options) { ksReopen(t, newProvider(t), o) }},
		{"Deterministic", ksDeterministic},
	}
}

var ksCaller = core.Caller{App: "conformance"}

type ksEnv struct {
	ks      *core.Keystore
	st      *storage.Memory
	p       provider.Provider
	info    provider.Info
	clock   *clock.Fake
	audit   *ksAudit
	fresh   bool        // WithFreshKeys
	imports *importRule // WithImport
}

type ksAudit struct {
	mu sync.Mutex
	n  int
}

func (a *ksAudit) Ready(context.Context) error { return nil }

func (a *ksAudit) Commit(context.Context, core.Event) error { return nil }

// Note implements core.AuditSink: notes are not call records, so they
// are not counted.
func (a *ksAudit) Note(context.Context, core.Event) error { return nil }
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

// expensive reports whether keys of a are slow to generate (RSA), so that
// a check rotates them only where it must.
func (e *ksEnv) expensive(a provider.Algorithm) bool {
	s, err := defaultRegistry().Lookup(a)
	return !e.fresh && err == nil && s.GenerateCost >= provExpensiveGenerate
}

// sample returns algs without their expensive algorithms (RSA) but the
// one quickest to make: checks of the keystore's own behaviour (storage,
// determinism of what it adds) need one of them, not each; every
// algorithm is signed with in CreateSignVerify.
func (e *ksEnv) sample(algs []provider.Algorithm) []provider.Algorithm {
	var out []provider.Algorithm
	var best provider.Algorithm
	bestCost := -1.0
	for _, a := range algs {
		s, err := defaultRegistry().Lookup(a)
		if err != nil || !e.expensive(a) {
			out = append(out, a)
			continue
		}
		if bestCost < 0 || s.GenerateCost < bestCost {
			best, bestCost = a, s.GenerateCost
		}
	}
	if bestCost >= 0 {
		out = append(out, best)
	}
	return out
}

// cheapest returns the algorithm of use whose keys are quickest to make,
// preferring one that signs digests when hash is set.
func (e *ksEnv) cheapest(use provider.Use, hash bool) (provider.Algorithm, bool) {
	var best provider.Algorithm
	bestCost := -1.0
	for _, a := range e.algs(use) {
		s, err := defaultRegistry().Lookup(a)
		if err != nil {
			continue
		}
		cost := s.GenerateCost
		if hash && s.Hash == 0 {
			cost += 1e9 // any with a hash first
		}
		if bestCost < 0 || cost < bestCost {
			best, bestCost = a, cost
		}
	}
	return best, bestCost >= 0
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
			ksDigests(t, e, id, a, pk.Key, msg, sig.Signature)
		})
	}
}

// ksDigests signs and verifies digests through the keystore with key id
// of algorithm a: the digest of msg (whose signature by Sign is sig) and
// that of a 1 MiB message, verified by VerifyWith and independently;
// Verify and VerifyWith agree on either form; a digest of the wrong size
// is EINVAL, another hash EINVAL, and an algorithm that signs whole
// messages only is EPERM.
func ksDigests(t *testing.T, e *ksEnv, id core.KeyID, a provider.Algorithm, pub, msg, sig []byte) {
	t.Helper()
	ctx := t.Context()
	s, err := defaultRegistry().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hash == 0 {
		_, err := e.ks.SignWith(ctx, ksCaller, id, 0, core.SignInput{Digest: digestOf(crypto.SHA256, msg), Hash: crypto.SHA256})
		ksWant(t, "sign a digest with an algorithm that signs whole messages only", err, provider.EPERM)
		return
	}
	d, ok := digestVerifiers[a]
	if !ok {
		t.Skipf("the suite has no independent digest verifier for %q", a)
	}
	for _, m := range [][]byte{msg, pseudo("keystore/digest", 1<<20)} {
		in := core.SignInput{Digest: digestOf(s.Hash, m), Hash: s.Hash}
		ds, err := e.ks.SignWith(ctx, ksCaller, id, 0, in)
		if err != nil || ds.Version != 1 {
			t.Fatalf("sign a %d-byte message's digest: version %d, %v", len(m), ds.Version, err)
		}
		if !d.verify(pub, in.Digest, ds.Signature) {
			t.Fatalf("the signature of a %d-byte message's digest does not verify independently", len(m))
		}
		if err := e.ks.VerifyWith(ctx, ksCaller, id, 1, in, ds.Signature); err != nil {
			t.Fatalf("verify the signature of a %d-byte message's digest: %v", len(m), err)
		}
		other := core.SignInput{Digest: bytes.Clone(in.Digest), Hash: s.Hash}
		other.Digest[0] ^= 1
		ksWant(t, "verify another digest", e.ks.VerifyWith(ctx, ksCaller, id, 1, other, ds.Signature), provider.EBADMSG)
		if len(m) <= provider.MaxSignMessage {
			if err := e.ks.Verify(ctx, ksCaller, id, 1, m, ds.Signature); err != nil {
				t.Fatalf("verify the digest's signature as one of the message: %v", err)
			}
		}
	}
	in := core.SignInput{Digest: digestOf(s.Hash, msg), Hash: s.Hash}
	if err := e.ks.VerifyWith(ctx, ksCaller, id, 1, in, sig); err != nil {
		t.Fatalf("verify the message's signature as one of its digest: %v", err)
	}
	_, err = e.ks.SignWith(ctx, ksCaller, id, 0, core.SignInput{Digest: in.Digest[1:], Hash: s.Hash})
	ksWant(t, "sign a digest one byte short", err, provider.EINVAL)
	ksWant(t, "verify a digest one byte short", e.ks.VerifyWith(ctx, ksCaller, id, 1, core.SignInput{Digest: in.Digest[1:], Hash: s.Hash}, sig), provider.EINVAL)
	for _, h := range provDigestHashes {
		if h != s.Hash {
			_, err := e.ks.SignWith(ctx, ksCaller, id, 0, core.SignInput{Digest: digestOf(h, msg), Hash: h})
			ksWant(t, "sign a "+hashName(h)+" digest with a key that signs "+hashName(s.Hash)+" digests", err, provider.EINVAL)
		}
	}
}

// ksSignWithVersion: SignWith names a version: the primary and a retired
// one sign, each under its own public key (independently verified), for
// a message and, where the algorithm signs digests, for a digest;
// version 0 is the primary; a version the key never had is ENOENT; once
// the retired version is revoked it is EKEYREVOKED while the primary
// still signs; once the key is revoked every version is EKEYREVOKED.
func ksSignWithVersion(t *testing.T, e *ksEnv) {
	a, ok := e.cheapest(provider.UseSign, true)
	if !ok {
		t.Skip("provider announces no signature algorithm")
	}
	ctx := t.Context()
	s, err := defaultRegistry().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	v, verr := verifier(a)
	id := e.create(t, "sign-with-"+string(a), a)
	if _, err := e.ks.Rotate(ctx, ksCaller, id); err != nil {
		t.Fatal(err)
	}
	msg := []byte("conformance: signed by a named version")
	inputs := []core.SignInput{{Message: msg}}
	if s.Hash != 0 {
		inputs = append(inputs, core.SignInput{Digest: digestOf(s.Hash, msg), Hash: s.Hash})
	}
	for _, c := range []struct{ ask, want core.Version }{{1, 1}, {2, 2}, {0, 2}} {
		pk, err := e.ks.PublicKey(ctx, ksCaller, id, c.want)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range inputs {
			sig, err := e.ks.SignWith(ctx, ksCaller, id, c.ask, in)
			if err != nil || sig.Version != c.want {
				t.Fatalf("SignWith version %d (digest %v): version %d, %v; want version %d", c.ask, in.Hash != 0, sig.Version, err, c.want)
			}
			if err := e.ks.VerifyWith(ctx, ksCaller, id, c.want, in, sig.Signature); err != nil {
				t.Fatalf("VerifyWith version %d of SignWith's signature: %v", c.want, err)
			}
			if verr == nil && !v(pk.Key, msg, sig.Signature) {
				t.Fatalf("SignWith version %d: the signature does not verify independently under version %d's public key", c.ask, c.want)
			}
		}
	}
	_, err = e.ks.SignWith(ctx, ksCaller, id, 3, core.SignInput{Message: msg})
	ksWant(t, "SignWith a version the key never had", err, provider.ENOENT)
	if _, err := e.ks.RevokeVersion(ctx, ksCaller, id, 1); err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		_, err := e.ks.SignWith(ctx, ksCaller, id, 1, in)
		ksWant(t, "SignWith a revoked version", err, provider.EKEYREVOKED)
		if sig, err := e.ks.SignWith(ctx, ksCaller, id, 2, in); err != nil || sig.Version != 2 {
			t.Fatalf("SignWith the primary after another version's revocation: version %d, %v", sig.Version, err)
		}
	}
	if _, err := e.ks.Revoke(ctx, ksCaller, id); err != nil {
		t.Fatal(err)
	}
	for _, ask := range []core.Version{0, 1, 2} {
		_, err := e.ks.SignWith(ctx, ksCaller, id, ask, core.SignInput{Message: msg})
		ksWant(t, fmt.Sprintf("SignWith version %d of a revoked key", ask), err, provider.EKEYREVOKED)
	}
}

// ksMACVerify: for every announced MAC algorithm, MAC gives a full tag
// with version 1 that VerifyMAC accepts; another message, a flipped,
// truncated, extended or empty tag is EBADMSG (EMSGSIZE over MaxMAC); version 0 is EINVAL; a
// message over MaxMACMessage is EMSGSIZE; after a rotation MAC gives
// version 2 and another tag, the old tag still verifies against the
// retired version 1 but not version 2; a sign or decrypt key refuses MAC
// (EPERM); once version 1 is revoked its tags are EKEYREVOKED, and once
// the key is revoked every MAC and VerifyMAC is.
func ksMACVerify(t *testing.T, e *ksEnv) {
	algs := e.algs(provider.UseMAC)
	if len(algs) == 0 {
		t.Skip("provider announces no MAC algorithm")
	}
	ctx := t.Context()
	for _, a := range algs {
		t.Run(string(a), func(t *testing.T) {
			s, err := defaultRegistry().Lookup(a)
			if err != nil {
				t.Fatal(err)
			}
			id := e.create(t, "mac-"+string(a), a)
			msg := []byte("conformance: message to MAC")
			m1, err := e.ks.MAC(ctx, ksCaller, id, msg)
			if err != nil || m1.Version != 1 || len(m1.Tag) != s.MACSize {
				t.Fatalf("MAC: version %d, %d-byte tag, %v; want version 1 and %d bytes", m1.Version, len(m1.Tag), err, s.MACSize)
			}
			if err := e.ks.VerifyMAC(ctx, ksCaller, id, 1, msg, m1.Tag); err != nil {
				t.Fatalf("VerifyMAC: %v", err)
			}
			flipped := bytes.Clone(m1.Tag)
			flipped[len(flipped)-1] ^= 1
			for _, c := range []struct {
				what     string
				msg, tag []byte
			}{
				{"another message", append(bytes.Clone(msg), '!'), m1.Tag},
				{"a flipped tag", msg, flipped},
				{"a truncated tag", msg, m1.Tag[:len(m1.Tag)-1]},
				{"an extended tag", msg, append(bytes.Clone(m1.Tag), 0)},
				{"an empty tag", msg, nil},
			} {
				want := provider.EBADMSG
				if len(c.tag) > provider.MaxMAC {
					want = provider.EMSGSIZE // HMAC-SHA-512's tag and a byte
				}
				ksWant(t, "VerifyMAC of "+c.what, e.ks.VerifyMAC(ctx, ksCaller, id, 1, c.msg, c.tag), want)
			}
			ksWant(t, "VerifyMAC without a version", e.ks.VerifyMAC(ctx, ksCaller, id, 0, msg, m1.Tag), provider.EINVAL)
			_, err = e.ks.MAC(ctx, ksCaller, id, make([]byte, provider.MaxMACMessage+1))
			ksWant(t, "MAC of MaxMACMessage+1 bytes", err, provider.EMSGSIZE)
			big := pseudo("keystore/mac", provider.MaxMACMessage)
			mb, err := e.ks.MAC(ctx, ksCaller, id, big)
			if err != nil {
				t.Fatalf("MAC of MaxMACMessage bytes: %v", err)
			}
			if err := e.ks.VerifyMAC(ctx, ksCaller, id, 1, big, mb.Tag); err != nil {
				t.Fatalf("VerifyMAC of MaxMACMessage bytes: %v", err)
			}

			if _, err := e.ks.Rotate(ctx, ksCaller, id); err != nil {
				t.Fatal(err)
			}
			m2, err := e.ks.MAC(ctx, ksCaller, id, msg)
			if err != nil || m2.Version != 2 || bytes.Equal(m2.Tag, m1.Tag) {
				t.Fatalf("MAC after a rotation: version %d, same tag %v, %v; want version 2 and another tag", m2.Version, bytes.Equal(m2.Tag, m1.Tag), err)
			}
			if err := e.ks.VerifyMAC(ctx, ksCaller, id, 1, msg, m1.Tag); err != nil {
				t.Fatalf("VerifyMAC against the retired version 1: %v", err)
			}
			if err := e.ks.VerifyMAC(ctx, ksCaller, id, 2, msg, m2.Tag); err != nil {
				t.Fatalf("VerifyMAC against version 2: %v", err)
			}
			ksWant(t, "VerifyMAC of version 1's tag against version 2", e.ks.VerifyMAC(ctx, ksCaller, id, 2, msg, m1.Tag), provider.EBADMSG)

			if _, err := e.ks.RevokeVersion(ctx, ksCaller, id, 1); err != nil {
				t.Fatal(err)
			}
			ksWant(t, "VerifyMAC against a revoked version", e.ks.VerifyMAC(ctx, ksCaller, id, 1, msg, m1.Tag), provider.EKEYREVOKED)
			if err := e.ks.VerifyMAC(ctx, ksCaller, id, 2, msg, m2.Tag); err != nil {
				t.Fatalf("VerifyMAC against version 2 after version 1's revocation: %v", err)
			}
			if _, err := e.ks.Revoke(ctx, ksCaller, id); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				_, err := e.ks.MAC(ctx, ksCaller, id, msg)
				ksWant(t, "MAC with a revoked key", err, provider.EKEYREVOKED)
				ksWant(t, "VerifyMAC with a revoked key", e.ks.VerifyMAC(ctx, ksCaller, id, 2, msg, m2.Tag), provider.EKEYREVOKED)
			}
		})
	}
	for _, use := range []provider.Use{provider.UseSign, provider.UseDecrypt} {
		a, ok := e.cheapest(use, false)
		if !ok {
			continue
		}
		id := e.create(t, "mac-with-"+use.String(), a)
		_, err := e.ks.MAC(ctx, ksCaller, id, []byte("m"))
		ksWant(t, "MAC with a "+use.String()+" key", err, provider.EPERM)
		ksWant(t, "VerifyMAC with a "+use.String()+" key", e.ks.VerifyMAC(ctx, ksCaller, id, 1, []byte("m"), make([]byte, 32)), provider.EPERM)
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
	var sid, did, mid core.KeyID
	var sig core.Signature
	var tag core.MACTag
	var sealed []byte
	var err error
	if a, ok := e.cheapest(provider.UseMAC, false); ok {
		mid = e.create(t, "revoke-mac", a)
		if tag, err = e.ks.MAC(t.Context(), ksCaller, mid, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if a, ok := e.cheapest(provider.UseSign, false); ok {
		sid = e.create(t, "revoke-sig", a)
		if sig, err = e.ks.Sign(t.Context(), ksCaller, sid, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if a, ok := e.cheapest(provider.UseDecrypt, false); ok {
		did = e.create(t, "revoke-dec", a)
		s, err := e.ks.Seal(t.Context(), ksCaller, did, []byte("p"), []byte("a"))
		if err != nil {
			t.Fatal(err)
		}
		sealed = s.Data
	}
	for _, id := range []core.KeyID{sid, did, mid} {
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
		if !mid.IsZero() {
			_, err := e.ks.MAC(t.Context(), ksCaller, mid, []byte("m"))
			ksWant(t, "mac after revoke", err, provider.EKEYREVOKED)
			ksWant(t, "verify-mac after revoke", e.ks.VerifyMAC(t.Context(), ksCaller, mid, 1, []byte("m"), tag.Tag), provider.EKEYREVOKED)
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
	var all []provider.Algorithm
	for _, u := range provUses {
		if a, ok := e.cheapest(u, false); ok {
			all = append(all, a)
		}
	}
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

func ksReopen(t *testing.T, p provider.Provider, o options) {
	e := newKSEnv(t, p)
	e.fresh = o.freshKeys
	var ids []core.KeyID
	var sealedBy = map[core.KeyID][]byte{}
	var sentTo = map[core.KeyID]ksHPKE{}
	var taggedBy = map[core.KeyID]core.MACTag{}
	var signedBy = map[core.KeyID]core.Signature{}
	msg := []byte("kept")
	for _, a := range e.sample(e.ks.ProviderInfo().Algorithms) {
		id := e.create(t, "reopen-"+string(a), a)
		// A key of an expensive algorithm (RSA) keeps its one version.
		if !e.expensive(a) {
			if _, err := e.ks.Rotate(t.Context(), ksCaller, id); err != nil {
				t.Fatal(err)
			}
		}
		s, _ := defaultRegistry().Lookup(a)
		switch {
		case s == nil:
		case s.Use == provider.UseDecrypt:
			b, err := e.ks.Seal(t.Context(), ksCaller, id, msg, nil)
			if err != nil {
				t.Fatal(err)
			}
			sealedBy[id] = b.Data
		case s.Use == provider.UseMAC:
			m, err := e.ks.MAC(t.Context(), ksCaller, id, msg)
			if err != nil {
				t.Fatal(err)
			}
			taggedBy[id] = m
		case s.Use == provider.UseSign:
			sig, err := e.ks.Sign(t.Context(), ksCaller, id, msg)
			if err != nil {
				t.Fatal(err)
			}
			signedBy[id] = sig
		case s.Use == provider.UseAsymmetricDecrypt:
			if _, ok := hpkeSuites[a]; ok {
				sentTo[id] = e.hpkeSend(t, id, 1, msg)
			}
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
	revoked := map[core.KeyID]bool{}
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
		revoked[id] = m.State == core.StateRevoked
	}
	for id, b := range sealedBy {
		pt, err := e2.ks.Unseal(t.Context(), ksCaller, id, b, nil)
		if revoked[id] {
			ksWant(t, "unseal with a revoked key after reopen", err, provider.EKEYREVOKED)
			continue
		}
		if err != nil || !bytes.Equal(pt.Plaintext, msg) {
			t.Fatalf("unseal %s after reopen: %q, %v", id, pt.Plaintext, err)
		}
	}
	for id, m := range sentTo {
		d, err := e2.ks.Decrypt(t.Context(), ksCaller, id, 1, m.msg)
		if revoked[id] {
			ksWant(t, "decrypt with a revoked key after reopen", err, provider.EKEYREVOKED)
			continue
		}
		if err != nil || d.Version != 1 || !bytes.Equal(d.Plaintext, msg) {
			t.Fatalf("decrypt %s after reopen: version %d, %q, %v", id, d.Version, d.Plaintext, err)
		}
	}
	for id, m := range taggedBy {
		err := e2.ks.VerifyMAC(t.Context(), ksCaller, id, m.Version, msg, m.Tag)
		if revoked[id] {
			ksWant(t, "verify-mac with a revoked key after reopen", err, provider.EKEYREVOKED)
			continue
		}
		if err != nil {
			t.Fatalf("verify-mac %s after reopen: %v", id, err)
		}
		again, err := e2.ks.MAC(t.Context(), ksCaller, id, msg)
		if err != nil || again.Version != m.Version || !bytes.Equal(again.Tag, m.Tag) {
			t.Fatalf("mac %s after reopen: version %d, same tag %v, %v; want the tag made before", id, again.Version, bytes.Equal(again.Tag, m.Tag), err)
		}
	}
	for id, sig := range signedBy {
		err := e2.ks.Verify(t.Context(), ksCaller, id, sig.Version, msg, sig.Signature)
		if revoked[id] {
			ksWant(t, "verify with a revoked key after reopen", err, provider.EKEYREVOKED)
			continue
		}
		if err != nil {
			t.Fatalf("verify %s after reopen: %v", id, err)
		}
		if _, err := e2.ks.Sign(t.Context(), ksCaller, id, msg); err != nil {
			t.Fatalf("sign %s after reopen: %v", id, err)
		}
	}
}

func ksDeterministic(t *testing.T, newProvider Factory, o options) {
	p1 := newProvider(t)
	info, err := p1.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !info.Deterministic {
		t.Skip("provider does not announce Deterministic: nothing to compare")
	}
	e1, e2 := newKSEnv(t, p1), newKSEnv(t, newProvider(t))
	e1.fresh, e2.fresh = o.freshKeys, o.freshKeys
	algs := e1.sample(e1.ks.ProviderInfo().Algorithms)
	msg := []byte("determinism")
	outputs := func(e *ksEnv, order []provider.Algorithm) map[string][]byte {
		out := map[string][]byte{}
		for _, a := range order {
			e.create(t, "det-"+string(a), a)
		}
		for _, a := range algs {
			id, err := provider.NewKeyID(ksCaller.App, "suite", "det-"+string(a))
			if err != nil {
				t.Fatal(err)
			}
			s, err := defaultRegistry().Lookup(a)
			if err != nil {
				continue // an algorithm the suite does not know: created, not compared
			}
			switch s.Use {
			case provider.UseSign:
				pk, err := e.ks.PublicKey(t.Context(), ksCaller, id, 1)
				if err != nil {
					t.Fatal(err)
				}
				sig, err := e.ks.Sign(t.Context(), ksCaller, id, msg)
				if err != nil {
					t.Fatal(err)
				}
				out["pub/"+string(a)], out["sig/"+string(a)] = pk.Key, sig.Signature
				if s.Hash != 0 {
					ds, err := e.ks.SignWith(t.Context(), ksCaller, id, 0, core.SignInput{Digest: digestOf(s.Hash, msg), Hash: s.Hash})
					if err != nil {
						t.Fatal(err)
					}
					out["digest-sig/"+string(a)] = ds.Signature
				}
			case provider.UseMAC:
				m, err := e.ks.MAC(t.Context(), ksCaller, id, msg)
				if err != nil {
					t.Fatal(err)
				}
				out["tag/"+string(a)] = m.Tag
			case provider.UseAsymmetricDecrypt:
				out["pub/"+string(a)] = e.hpkePublicKey(t, id, 1).Key
			default:
				b, err := e.ks.Seal(t.Context(), ksCaller, id, msg, []byte("aad"))
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

package core_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/testseed"
)

// logGens is core.Generations over a recorder, as the daemon's index is
// over its audit log: a committed event with a generation is an intent
// record, an OpApplied note of that generation marks it applied.
type logGens struct{ r *recorder }

func (g logGens) Expected(id string) (gen uint64, applied, found bool) {
	g.r.mu.Lock()
	defer g.r.mu.Unlock()
	for _, c := range g.r.commits {
		if c.Key == id && c.Gen > 0 {
			gen, found = c.Gen, true
		}
	}
	for _, n := range g.r.notes {
		if found && n.Op == core.OpApplied && n.Key == id && n.Gen == gen {
			applied = true
		}
	}
	return gen, applied, found
}

// mapGens is a fixed core.Generations: what a log says, by key.
type mapGens map[string]struct {
	gen     uint64
	applied bool
}

func (m mapGens) Expected(id string) (uint64, bool, bool) {
	g, ok := m[id]
	return g.gen, g.applied, ok
}

// newGenEnv is newEnv with generations taken from its own recorder.
func newGenEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	return e.restart(t, logGens{e.audit})
}

// restart opens a new keystore over e's storage and provider with the same
// audit recorder (a daemon restarted on the same state and log) and gens.
func (e *env) restart(t *testing.T, gens core.Generations) *env {
	t.Helper()
	ne := &env{st: e.st, audit: e.audit, clock: e.clock, p: e.p}
	ks, err := core.Open(ctx, core.Config{Storage: e.st, Provider: e.p, Clock: e.clock, Audit: e.audit, Generations: gens})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	ne.ks = ks
	return ne
}

func metaFile(id core.KeyID) string { return core.MetaPath(id) }

func handleFile(id core.KeyID, v int) string {
	return "keystore/" + id.String() + "/v" + string(rune('0'+v)) + ".handle"
}

func (e *env) readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := e.st.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := e.st.WriteFile(path, b); err != nil {
		t.Fatal(err)
	}
}

func (e *env) gen(t *testing.T, id core.KeyID) uint64 {
	t.Helper()
	m, err := e.ks.Get(ctx, operator, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return m.Generation
}

// wantRefused checks that err is the EIO of a refused key wrapping want,
// naming the key and both generations.
func wantRefused(t *testing.T, what string, err, want error, id core.KeyID, gens ...string) {
	t.Helper()
	if codeOf(err) != provider.EIO || !errors.Is(err, want) {
		t.Fatalf("%s: %v, want EIO wrapping %q", what, err, want)
	}
	for _, s := range append([]string{id.String()}, gens...) {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("%s: %q does not say %q", what, err, s)
		}
	}
}

// TestGenerationPerLifecycleChange: every lifecycle change sets
// generation = old + 1, in meta.json, on its Commit and Record events and
// in its OpApplied note; seal reservations do not change it.
func TestGenerationPerLifecycleChange(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	steps := []struct {
		name string
		op   core.Op
		run  func() error
	}{
		{"rotate", core.OpRotate, func() error { _, err := e.ks.Rotate(ctx, appA, id); return err }},
		{"set-policy", core.OpSetPolicy, func() error {
			_, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{MinDecryptionVersion: 1})
			return err
		}},
		{"revoke-version", core.OpRevokeVersion, func() error { _, err := e.ks.RevokeVersion(ctx, appA, id, 1); return err }},
		{"revoke", core.OpRevoke, func() error { _, err := e.ks.Revoke(ctx, appA, id); return err }},
		{"destroy", core.OpDestroy, func() error { _, err := e.ks.Destroy(ctx, appA, id); return err }},
	}
	if g := e.gen(t, id); g != 1 {
		t.Fatalf("after create: generation %d, want 1", g)
	}
	for i, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		want := uint64(i + 2)
		if g := e.gen(t, id); g != want {
			t.Fatalf("after %s: generation %d, want %d", s.name, g, want)
		}
		c := e.audit.commits[len(e.audit.commits)-1]
		var rec core.Event
		for _, ev := range e.audit.all() {
			if ev.Op == s.op {
				rec = ev
			}
		}
		n := e.audit.notesOf(core.OpApplied)
		last := n[len(n)-1]
		if c.Op != s.op || c.Gen != want || rec.Gen != want || last.Key != id.String() || last.Gen != want || len(n) != i+2 {
			t.Fatalf("%s: commit %+v, record %+v, applied notes %+v: want generation %d everywhere", s.name, c, rec, n, want)
		}
	}
	// The generation is in meta.json: a restart reads it back.
	if g := e.restart(t, logGens{e.audit}).gen(t, id); g != 6 {
		t.Fatalf("after a restart: generation %d, want 6", g)
	}

	// A seal reservation rewrites meta.json without a lifecycle change.
	did := e.create(t, appA, "app-a/d/k", provider.XChaCha20Poly1305)
	before := e.readFile(t, metaFile(did))
	if _, err := e.ks.Seal(ctx, appA, did, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, e.readFile(t, metaFile(did))) {
		t.Fatal("the first seal wrote no reservation")
	}
	if g := e.restart(t, logGens{e.audit}).gen(t, did); g != 1 {
		t.Fatalf("after a seal reservation: generation %d, want 1", g)
	}

	// An automatic rotation is a lifecycle change too; the sign that
	// triggered it carries the generation.
	aid := e.create(t, appA, "app-a/s/auto", provider.Ed25519)
	if _, err := e.ks.SetPolicy(ctx, appA, aid, core.Policy{RotationPeriod: core.MinRotationPeriod}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(core.MinRotationPeriod)
	if _, err := e.ks.Sign(ctx, appA, aid, []byte("m")); err != nil {
		t.Fatal(err)
	}
	c, rec := e.audit.commits[len(e.audit.commits)-1], e.audit.last(t)
	if g := e.gen(t, aid); g != 3 || c.Detail != "auto-rotated" || c.Gen != 3 || rec.Op != core.OpSign || rec.Gen != 3 {
		t.Fatalf("auto-rotation: generation %d, commit %+v, sign record %+v; want 3", g, c, rec)
	}
}

// TestGenerationImport: an import that creates a key is generation 1, an
// import into it +1.
func TestGenerationImport(t *testing.T) {
	e := newGenEnv(t)
	id := mustID(t, "app-a/imp/ed")
	der := func(b byte) []byte {
		d, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for want := uint64(1); want <= 2; want++ {
		m, err := e.ks.Import(ctx, appA, id, e.importRequest(t, appA, id, provider.Ed25519, der(byte(want))))
		if err != nil {
			t.Fatal(err)
		}
		n := e.audit.notesOf(core.OpApplied)
		if m.Generation != want || e.audit.last(t).Gen != want || n[len(n)-1].Gen != want {
			t.Fatalf("import %d: generation %d, record %+v, notes %+v", want, m.Generation, e.audit.last(t), n)
		}
	}
}

// TestRollbackRevokedToActive: meta.json restored from before a revoke
// (the key active again) is refused after a restart, EIO "rolled back",
// noted once; other keys are unaffected; the refusal is remembered, so
// even putting the right file back does not make the key readable before
// the next start.
func TestRollbackRevokedToActive(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	other := e.create(t, appA, "app-a/s/other", provider.Ed25519)
	old := e.readFile(t, metaFile(id))
	if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	current := e.readFile(t, metaFile(id))
	e.writeFile(t, metaFile(id), old)
	e2 := e.restart(t, logGens{e.audit})

	_, err := e2.ks.Sign(ctx, appA, id, []byte("m"))
	wantRefused(t, "sign with the restored key", err, core.ErrRolledBack, id, "rolled back", "generation 1", "says 2")
	_, err = e2.ks.Get(ctx, appA, id)
	wantRefused(t, "get", err, core.ErrRolledBack, id)
	if _, err := e2.ks.Sign(ctx, appA, other, []byte("m")); err != nil {
		t.Fatalf("another key: %v", err)
	}
	notes := e.audit.notesOf(core.OpRollbackDetected)
	if len(notes) != 1 || notes[0].Key != id.String() || notes[0].Result != provider.EIO || notes[0].Detail != "rolled back: generation 1, log says 2" {
		t.Fatalf("rollback notes = %+v, want one for %s", notes, id)
	}

	page, err := e2.ks.List(ctx, operator, core.ListOptions{App: "app-a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Unreadable) != 1 || page.Unreadable[0].ID != id || !errors.Is(page.Unreadable[0].Err, core.ErrRolledBack) ||
		len(page.Keys) != 1 || page.Keys[0].ID != other {
		t.Fatalf("list: keys %v, unreadable %v; want %s unreadable (rolled back), %s listed", page.Keys, page.Unreadable, id, other)
	}

	// The refusal is cached: the right file back changes nothing in this
	// process, and no second note is written.
	e2.writeFile(t, metaFile(id), current)
	_, err = e2.ks.Get(ctx, appA, id)
	wantRefused(t, "get after the file was put back", err, core.ErrRolledBack, id)
	wantRefused(t, "CheckKey", e2.ks.CheckKey(ctx, id), core.ErrRolledBack, id)
	if n := len(e.audit.notesOf(core.OpRollbackDetected)); n != 1 {
		t.Fatalf("%d rollback notes, want 1", n)
	}
	// The next start reads the file again.
	e3 := e.restart(t, logGens{e.audit})
	if _, err := e3.ks.Sign(ctx, appA, id, []byte("m")); codeOf(err) != provider.EKEYREVOKED {
		t.Fatalf("sign after the file was put back and a restart: %v, want EKEYREVOKED", err)
	}
}

// TestRollbackDestroyedToPresent: meta.json (with its inline handle)
// restored from before a revoke and destroy is refused.
func TestRollbackDestroyedToPresent(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	meta := e.readFile(t, metaFile(id))
	if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Destroy(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if b := e.readFile(t, metaFile(id)); bytes.Contains(b, []byte(`"handle"`)) {
		t.Fatalf("meta.json of a destroyed key holds a handle: %s", b)
	}
	e.writeFile(t, metaFile(id), meta)
	e2 := e.restart(t, logGens{e.audit})
	_, err := e2.ks.Sign(ctx, appA, id, []byte("m"))
	wantRefused(t, "sign with the restored key", err, core.ErrRolledBack, id, "generation 1", "says 3")
	wantRefused(t, "CheckKey", e2.ks.CheckKey(ctx, id), core.ErrRolledBack, id)
}

// TestRollbackDeletedMeta: a key whose meta.json is gone, that the log
// knows, is rolled back (generation "none"), and a create of its ID is
// refused the same way rather than making a new key under a known ID.
func TestRollbackDeletedMeta(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if err := e.st.Remove(metaFile(id)); err != nil {
		t.Fatal(err)
	}
	e2 := e.restart(t, logGens{e.audit})
	_, err := e2.ks.Get(ctx, appA, id)
	wantRefused(t, "get", err, core.ErrRolledBack, id, "generation none", "says 1")
	_, err = e2.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519})
	wantRefused(t, "create", err, core.ErrRolledBack, id)
	wantRefused(t, "CheckKey", e2.ks.CheckKey(ctx, id), core.ErrRolledBack, id)
	// An ID the log does not know is simply absent.
	wantCode(t, "CheckKey of an unknown key", e2.ks.CheckKey(ctx, mustID(t, "app-a/s/none")), provider.ENOENT)
}

// TestMetaFromTheFuture: a generation above the log's, or a key the log
// does not know with a generation, is ErrNotInLog.
func TestMetaFromTheFuture(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	for range 3 {
		if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
	}
	e2 := e.restart(t, mapGens{id.String(): {gen: 2, applied: true}})
	_, err := e2.ks.Get(ctx, appA, id)
	wantRefused(t, "generation 4, log says 2", err, core.ErrNotInLog, id, "generation 4", "says 2")
	e3 := e.restart(t, mapGens{})
	_, err = e3.ks.Get(ctx, appA, id)
	wantRefused(t, "generation 4, unknown to the log", err, core.ErrNotInLog, id, "generation 4", "does not know")
}

// TestLegacyMeta: a meta.json from before generations (0) is fine while
// the log does not know the key, and its next change is generation 1; once
// the log knows the key, generation 0 is a rollback (but for the
// interrupted first change).
func TestLegacyMeta(t *testing.T) {
	e := newEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if err := core.RewriteGeneration(e.st, id, 0); err != nil {
		t.Fatal(err)
	}
	e2 := e.restart(t, mapGens{})
	if g := e2.gen(t, id); g != 0 {
		t.Fatalf("legacy key: generation %d, want 0", g)
	}
	if m, err := e2.ks.Rotate(ctx, appA, id); err != nil || m.Generation != 1 {
		t.Fatalf("rotate of a legacy key: %+v, %v; want generation 1", m, err)
	}
	if err := core.RewriteGeneration(e.st, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.restart(t, mapGens{id.String(): {gen: 1, applied: false}}).ks.CheckKey(ctx, id); err != nil {
		t.Fatalf("legacy key, first change interrupted: %v", err)
	}
	err := e.restart(t, mapGens{id.String(): {gen: 1, applied: true}}).ks.CheckKey(ctx, id)
	wantRefused(t, "legacy key, log says 1", err, core.ErrRolledBack, id, "generation 0", "says 1")
}

// TestInterruptedChange: a change whose intent is on record but whose
// meta.json write failed (crash between the two) leaves the key at the
// old generation, which the rule accepts (generation I-1, not applied);
// the next change takes generation I again. Two generations behind is a
// rollback.
func TestInterruptedChange(t *testing.T) {
	mem := storage.NewMemory()
	e := newEnvWith(t, mem, newEnv(t).p)
	e = e.restart(t, logGens{e.audit})
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	var armed atomic.Bool
	mem.SetHook(func(_ storage.Step, path string) error {
		if armed.Load() && path == metaFile(id) {
			return errInjected
		}
		return nil
	})
	armed.Store(true)
	_, err := e.ks.Rotate(ctx, appA, id)
	wantCode(t, "rotate with meta.json unwritable", err, provider.EIO)
	armed.Store(false)
	if g, a, f := (logGens{e.audit}).Expected(id.String()); g != 2 || a || !f {
		t.Fatalf("log: generation %d applied %v found %v; want 2, not applied", g, a, f)
	}
	e2 := e.restart(t, logGens{e.audit})
	if g := e2.gen(t, id); g != 1 {
		t.Fatalf("after the interrupted rotation: generation %d, want 1", g)
	}
	if m, err := e2.ks.Rotate(ctx, appA, id); err != nil || m.Generation != 2 {
		t.Fatalf("rotate again: %+v, %v; want generation 2", m, err)
	}
	err = e.restart(t, mapGens{id.String(): {gen: 4, applied: false}}).ks.CheckKey(ctx, id)
	wantRefused(t, "two generations behind", err, core.ErrRolledBack, id, "generation 2", "says 4")
}

// TestAppliedNoteFails: a change whose applied note cannot be written
// fails EIO and stays.
func TestAppliedNoteFails(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	e.audit.failNotes = true
	_, err := e.ks.Revoke(ctx, appA, id)
	wantCode(t, "revoke without the applied note", err, provider.EIO)
	if !strings.Contains(err.Error(), "changed (generation 2) but the audit log failed") {
		t.Fatalf("error %q does not say the change stayed", err)
	}
	e.audit.failNotes = false
	if m, err := e.ks.Get(ctx, appA, id); err != nil || m.State != core.StateRevoked || m.Generation != 2 {
		t.Fatalf("after the failed note: %+v, %v; want revoked, generation 2", m, err)
	}
}

// TestRollbackNoteRetried: a rollback note that the sink refuses is
// written at the key's next refusal, and then only once.
func TestRollbackNoteRetried(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if err := e.st.Remove(metaFile(id)); err != nil {
		t.Fatal(err)
	}
	e2 := e.restart(t, logGens{e.audit})
	e.audit.failNotes = true
	wantRefused(t, "first refusal", e2.ks.CheckKey(ctx, id), core.ErrRolledBack, id)
	e.audit.failNotes = false
	for range 2 {
		_, err := e2.ks.Get(ctx, appA, id)
		wantRefused(t, "later refusal", err, core.ErrRolledBack, id)
	}
	if n := e.audit.notesOf(core.OpRollbackDetected); len(n) != 1 || n[0].Detail != "rolled back: generation none, log says 1" {
		t.Fatalf("rollback notes = %+v, want one", n)
	}
}

// TestRestoredHandleNeverUsed: meta.json is the authority over handles.
// A handle file (as older versions wrote them) restored after a destroy,
// or of a revoked version, is never used; nor is a handle file planted
// beside a version whose handle is inline.
func TestRestoredHandleNeverUsed(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if err := core.LegacyHandles(e.st, id); err != nil {
		t.Fatal(err)
	}
	e = e.restart(t, logGens{e.audit})
	h1 := e.readFile(t, handleFile(id, 1))
	if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Destroy(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ReadFile(handleFile(id, 1)); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("handle after destroy: %v, want gone", err)
	}
	e.writeFile(t, handleFile(id, 1), h1)
	e2 := e.restart(t, logGens{e.audit})
	_, err := e2.ks.Sign(ctx, appA, id, []byte("m"))
	wantCode(t, "sign with a restored handle of a destroyed key", err, provider.EKEYREVOKED)

	// Rotate, revoke version 1, restore its handle: version 1 stays refused.
	rid := e2.create(t, appA, "app-a/s/r", provider.Ed25519)
	if err := core.LegacyHandles(e2.st, rid); err != nil {
		t.Fatal(err)
	}
	e2 = e2.restart(t, logGens{e.audit})
	r1 := e2.readFile(t, handleFile(rid, 1))
	sig, err := e2.ks.Sign(ctx, appA, rid, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2.ks.Rotate(ctx, appA, rid); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.ks.RevokeVersion(ctx, appA, rid, 1); err != nil {
		t.Fatal(err)
	}
	e2.writeFile(t, handleFile(rid, 1), r1)
	e3 := e.restart(t, logGens{e.audit})
	_, err = e3.ks.SignWith(ctx, appA, rid, 1, core.SignInput{Message: []byte("m")})
	wantCode(t, "sign with revoked version 1's restored handle", err, provider.EKEYREVOKED)
	wantCode(t, "verify with revoked version 1", e3.ks.Verify(ctx, appA, rid, 1, []byte("m"), sig.Signature), provider.EKEYREVOKED)
	if s, err := e3.ks.Sign(ctx, appA, rid, []byte("m")); err != nil || s.Version != 2 {
		t.Fatalf("sign: %+v, %v; want version 2", s, err)
	}

	// Version 2 (made by a rotate: inline) ignores a handle file planted
	// beside it: version 1's, which would sign as another key.
	e3.writeFile(t, handleFile(rid, 2), r1)
	e4 := e.restart(t, logGens{e.audit})
	s, err := e4.ks.Sign(ctx, appA, rid, []byte("m"))
	if err != nil || s.Version != 2 {
		t.Fatalf("sign with a planted v2.handle: %+v, %v; want version 2", s, err)
	}
	m, err := e4.ks.Get(ctx, appA, rid)
	if err != nil {
		t.Fatal(err)
	}
	if err := e4.ks.Verify(ctx, appA, rid, 2, []byte("m"), s.Signature); err != nil {
		t.Fatalf("signature of v2 does not verify under v2's public key %x: %v", m.Versions[1].PublicKey, err)
	}
}

// TestRestoredHandleAfterKEKRotation: a handle file from before a KEK
// rotation, or a meta.json with the inline handle from before it, fails
// to unwrap once the old KEK is retired.
func TestRestoredHandleAfterKEKRotation(t *testing.T) {
	kekPath := t.TempDir() + "/kek"
	st := storage.NewMemory()
	e := newEnvWith(t, st, softFile(t, kekPath))
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	inl := e.create(t, appA, "app-a/s/inline", provider.Ed25519)
	oldMeta := e.readFile(t, metaFile(inl))
	if err := core.LegacyHandles(st, id); err != nil {
		t.Fatal(err)
	}
	e = newEnvWith(t, st, softFile(t, kekPath))
	old := e.readFile(t, handleFile(id, 1))
	if _, err := e.ks.RotateKEK(ctx, operator); err != nil {
		t.Fatal(err)
	}
	if g := e.gen(t, id); g != 1 {
		t.Fatalf("a KEK rotation changed the generation to %d", g)
	}
	if g := e.gen(t, inl); g != 1 {
		t.Fatalf("a KEK rotation changed the generation of a key with an inline handle to %d", g)
	}
	if bytes.Equal(e.readFile(t, metaFile(inl)), oldMeta) {
		t.Fatal("the KEK rotation left the inline handle as it was")
	}
	e.writeFile(t, handleFile(id, 1), old)
	e.writeFile(t, metaFile(inl), oldMeta)
	e2 := newEnvWith(t, st, softFile(t, kekPath))
	if _, err := e2.ks.Sign(ctx, appA, id, []byte("m")); err == nil {
		t.Fatal("a handle from before the KEK rotation still signs")
	}
	if _, err := e2.ks.Sign(ctx, appA, inl, []byte("m")); err == nil {
		t.Fatal("an inline handle from before the KEK rotation still signs")
	}
}

// TestReservedApp: keys of app "keystored" are the daemon's own: no
// caller changes or uses them; an operator may get, list, read the public
// key and verify.
func TestReservedApp(t *testing.T) {
	e := newGenEnv(t)
	s, err := e.ks.AuditSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := mustID(t, core.AuditSignerKey)
	ksApp := core.Caller{App: core.ReservedApp}
	ksOp := core.Caller{App: core.ReservedApp, Operator: true}
	msg := []byte("checkpoint")
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []core.Caller{operator, ksOp} {
		if _, err := e.ks.Get(ctx, c, id); err != nil {
			t.Errorf("%s get: %v", c, err)
		}
		if _, err := e.ks.PublicKey(ctx, c, id, 0); err != nil {
			t.Errorf("%s public key: %v", c, err)
		}
		if err := e.ks.Verify(ctx, c, id, 1, msg, sig); err != nil {
			t.Errorf("%s verify: %v", c, err)
		}
		if p, err := e.ks.List(ctx, c, core.ListOptions{App: core.ReservedApp}); err != nil || len(p.Keys) != 1 {
			t.Errorf("%s list: %+v, %v", c, p, err)
		}
	}
	refused := map[string]func(c core.Caller) error{
		"create": func(c core.Caller) error {
			_, err := e.ks.Create(ctx, c, mustID(t, "keystored/x/y"), core.CreateOptions{Algorithm: provider.Ed25519})
			return err
		},
		"sign":   func(c core.Caller) error { _, err := e.ks.Sign(ctx, c, id, msg); return err },
		"rotate": func(c core.Caller) error { _, err := e.ks.Rotate(ctx, c, id); return err },
		"revoke": func(c core.Caller) error { _, err := e.ks.Revoke(ctx, c, id); return err },
		"revoke-version": func(c core.Caller) error {
			_, err := e.ks.RevokeVersion(ctx, c, id, 1)
			return err
		},
		"destroy": func(c core.Caller) error { _, err := e.ks.Destroy(ctx, c, id); return err },
		"set-policy": func(c core.Caller) error {
			_, err := e.ks.SetPolicy(ctx, c, id, core.Policy{})
			return err
		},
		"import-parameters": func(c core.Caller) error {
			_, err := e.ks.ImportParameters(ctx, c, mustID(t, "keystored/x/imp"), core.ImportOptions{Algorithm: provider.Ed25519})
			return err
		},
	}
	for name, f := range refused {
		for _, c := range []core.Caller{operator, ksOp, ksApp} {
			wantCode(t, c.String()+" "+name, f(c), provider.EPERM)
		}
	}
	for _, c := range []core.Caller{ksApp, appA} {
		_, err := e.ks.Get(ctx, c, id)
		wantCode(t, c.String()+" get", err, provider.EPERM)
		_, err = e.ks.List(ctx, c, core.ListOptions{App: core.ReservedApp})
		wantCode(t, c.String()+" list", err, provider.EPERM)
	}
	_, err = e.ks.List(ctx, ksApp, core.ListOptions{})
	wantCode(t, "list by app keystored", err, provider.EPERM)
	if m, err := e.ks.Get(ctx, operator, id); err != nil || m.State != core.StateActive || m.Generation != 1 {
		t.Fatalf("signing key after the refusals: %+v, %v", m, err)
	}
}

// TestAuditSigner: the first call creates the key (audited, the
// keystore's own caller, generation 1), later calls and a restart load
// it; its signatures verify under its public key; it writes no event.
func TestAuditSigner(t *testing.T) {
	e := newGenEnv(t)
	s, err := e.ks.AuditSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyRef() != "keystored/audit/checkpoint@1" {
		t.Fatalf("key ref %q", s.KeyRef())
	}
	c := e.audit.commits[len(e.audit.commits)-1]
	rec := e.audit.last(t)
	if c.Op != core.OpCreate || c.Key != core.AuditSignerKey || c.Gen != 1 || c.Caller.App != core.ReservedApp || !c.Caller.Operator ||
		rec.Op != core.OpCreate || !rec.OK() || len(e.audit.notesOf(core.OpApplied)) != 1 {
		t.Fatalf("create of the signing key: commit %+v, record %+v", c, rec)
	}
	events := len(e.audit.all())
	msg := []byte("keystored-audit-checkpoint-v1\n1\nabc\n")
	sig, err := s.Sign(ctx, msg)
	if err != nil || !ed25519.Verify(s.PublicKey(), msg, sig) {
		t.Fatalf("Sign: %v, or the signature does not verify", err)
	}
	if n := len(e.audit.all()); n != events {
		t.Fatalf("Sign wrote %d audit events, want none", n-events)
	}
	pk, err := e.ks.PublicKey(ctx, operator, mustID(t, core.AuditSignerKey), 0)
	if err != nil || !bytes.Equal(pk.Key, s.PublicKey()) {
		t.Fatalf("public key: %v", err)
	}
	s2, err := e.ks.AuditSigner(ctx)
	if err != nil || !s2.PublicKey().Equal(s.PublicKey()) {
		t.Fatalf("second AuditSigner: %v, or another key", err)
	}
	e2 := e.restart(t, logGens{e.audit})
	s3, err := e2.ks.AuditSigner(ctx)
	if err != nil || !s3.PublicKey().Equal(s.PublicKey()) || s3.KeyRef() != s.KeyRef() {
		t.Fatalf("AuditSigner after a restart: %v, or another key", err)
	}
	if creates := slices.IndexFunc(e.audit.commits, func(c core.Event) bool { return c.Key == core.AuditSignerKey && c.Op == core.OpCreate }); creates < 0 {
		t.Fatal("no create of the signing key committed")
	}
	// The signing key is subject to the generation rule.
	_, err = e.restart(t, mapGens{core.AuditSignerKey: {gen: 3, applied: true}}).ks.AuditSigner(ctx)
	wantRefused(t, "rolled-back signing key", err, core.ErrRolledBack, mustID(t, core.AuditSignerKey))
}

// badSigner is a provider whose signatures do not verify.
type badSigner struct {
	provider.Provider
	bad atomic.Bool
}

func (b *badSigner) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	sig, err := b.Provider.Sign(ctx, ref, h, msg)
	if err == nil && b.bad.Load() {
		sig[0] ^= 1
	}
	return sig, err
}

// TestAuditSignerVerifies: a signature that does not verify under the
// stored public key is withheld.
func TestAuditSignerVerifies(t *testing.T) {
	base := newEnv(t)
	p := &badSigner{Provider: base.p}
	e := newEnvWith(t, storage.NewMemory(), p)
	s, err := e.ks.AuditSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.bad.Store(true)
	sig, err := s.Sign(ctx, []byte("m"))
	if codeOf(err) != provider.EIO || sig != nil {
		t.Fatalf("Sign with a faulty provider: %x, %v; want EIO and nothing", sig, err)
	}
	p.bad.Store(false)
	if _, err := s.Sign(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
}

// Guard against a test helper that always passes: logGens must see what
// the recorder saw.
func TestLogGensSeesTheLog(t *testing.T) {
	e := newGenEnv(t)
	id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	if g, a, f := (logGens{e.audit}).Expected(id.String()); g != 1 || !a || !f {
		t.Fatalf("Expected = %d %v %v, want 1 applied", g, a, f)
	}
	e.clock.Advance(time.Second)
	if _, _, f := (logGens{e.audit}).Expected("app-a/s/none"); f {
		t.Fatal("an unknown key is found")
	}
}

// adoptGens is mapGens that takes in the OpAdopted notes of a recorder,
// as the daemon's index takes in the log's keys.adopted records.
type adoptGens struct {
	m mapGens
	r *recorder
}

func (g adoptGens) Expected(id string) (uint64, bool, bool) {
	gen, applied, found := g.m.Expected(id)
	g.r.mu.Lock()
	defer g.r.mu.Unlock()
	for _, n := range g.r.notes {
		if n.Op == core.OpAdopted && n.Key == id {
			gen, applied, found = n.Gen, false, true
		}
	}
	return gen, applied, found
}

// TestAdoptGenerations: after an accepted log change, keys whose
// generation the log lacks (newer than it, or unknown to it) are adopted
// with a note and serve again; a key the log proves rolled back is not.
func TestAdoptGenerations(t *testing.T) {
	e := newGenEnv(t)
	newer := e.create(t, appA, "app-a/s/newer", provider.Ed25519)
	if _, err := e.ks.Rotate(ctx, appA, newer); err != nil {
		t.Fatal(err)
	}
	unknown := e.create(t, appA, "app-a/s/unknown", provider.Ed25519)
	old := e.create(t, appA, "app-a/s/old", provider.Ed25519)
	// The accepted log: it saw newer at 1, old at 5, and not unknown.
	g := adoptGens{m: mapGens{newer.String(): {gen: 1, applied: true}, old.String(): {gen: 5, applied: true}}, r: e.audit}
	e2 := e.restart(t, g)
	_, err := e2.ks.Get(ctx, appA, newer)
	wantRefused(t, "before adoption", err, core.ErrNotInLog, newer)
	adopted, err := e2.ks.AdoptGenerations(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(adopted, []core.KeyID{newer, unknown}) {
		t.Fatalf("adopted %v, want %v and %v", adopted, newer, unknown)
	}
	for _, id := range adopted {
		if _, err := e2.ks.Get(ctx, appA, id); err != nil {
			t.Errorf("get %s after adoption: %v", id, err)
		}
	}
	_, err = e2.ks.Get(ctx, appA, old)
	wantRefused(t, "a rolled-back key is not adopted", err, core.ErrRolledBack, old)
	var notes int
	for _, n := range e.audit.notes {
		if n.Op == core.OpAdopted {
			notes++
			if n.Result != 0 || n.Gen == 0 || !n.Caller.Operator {
				t.Errorf("adopted note %+v", n)
			}
		}
	}
	if notes != 2 {
		t.Errorf("%d adopted notes, want 2", notes)
	}
}

// TestOperatorListSkipsReservedApp: an operator's listing of every app
// leaves out the daemon's own keys; naming the app lists them.
func TestOperatorListSkipsReservedApp(t *testing.T) {
	e := newGenEnv(t)
	if _, err := e.ks.AuditSigner(ctx); err != nil {
		t.Fatal(err)
	}
	e.create(t, appA, "app-a/s/k", provider.Ed25519)
	op := core.Caller{UID: 0, Operator: true}
	all, err := e.ks.List(ctx, op, core.ListOptions{})
	if err != nil || len(all.Keys) != 1 || all.Keys[0].ID.App() != "app-a" {
		t.Fatalf("operator list: %+v, %v", all, err)
	}
	own, err := e.ks.List(ctx, op, core.ListOptions{App: core.ReservedApp})
	if err != nil || len(own.Keys) != 1 || own.Keys[0].ID.String() != core.AuditSignerKey {
		t.Fatalf("operator list of %s: %+v, %v", core.ReservedApp, own, err)
	}
}

// A key refused because its file (or its legacy directory) is gone is
// still named by an operator's listing (on its last page), with its
// reason.
func TestListNamesRefusedKeysWithoutFiles(t *testing.T) {
	dir := t.TempDir()
	st, err := storage.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, st, p)
	e = e.restart(t, logGens{e.audit})
	gone := e.create(t, appA, "app-a/s/gone", provider.Ed25519)
	legacy := e.create(t, appA, "app-a/s/legacy", provider.Ed25519)
	e.create(t, appA, "app-a/s/kept", provider.Ed25519)
	if err := core.LegacyHandles(st, legacy); err != nil {
		t.Fatal(err)
	}
	// A key file removed, a legacy key's directory removed.
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(core.MetaPath(gone)))); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "keystore", "app-a", "s", "legacy")); err != nil {
		t.Fatal(err)
	}
	e2 := e.restart(t, logGens{e.audit})
	wantRefused(t, "CheckKey", e2.ks.CheckKey(ctx, gone), core.ErrRolledBack, gone)
	wantRefused(t, "CheckKey", e2.ks.CheckKey(ctx, legacy), core.ErrRolledBack, legacy)
	op := core.Caller{UID: 0, Operator: true}
	page, err := e2.ks.List(ctx, op, core.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Keys) != 1 || len(page.Unreadable) != 2 || page.Unreadable[0].ID != gone || !errors.Is(page.Unreadable[0].Err, core.ErrRolledBack) ||
		page.Unreadable[1].ID != legacy || !errors.Is(page.Unreadable[1].Err, core.ErrRolledBack) {
		t.Fatalf("listing %+v, want app-a/s/kept, and app-a/s/gone and app-a/s/legacy refused", page)
	}
}

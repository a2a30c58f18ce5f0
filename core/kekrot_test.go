package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/software"
)

// softFile returns a software provider over the KEK file at path (made
// when missing), as a restarted daemon makes it.
func softFile(t *testing.T, path string) provider.Provider {
	t.Helper()
	p, err := software.New(software.Config{KEKFile: path, Create: true})
	if err != nil {
		t.Fatalf("software.New(%s): %v", path, err)
	}
	return p
}

// rotKeys is the set of keys a rotation test makes: signing and sealing
// keys of two apps, one with two versions, a revoked and a destroyed one.
type rotKeys struct {
	sign, seal, other, revoked, destroyed core.KeyID
	sealed                                []byte // sealed by seal@1
}

func makeRotKeys(t *testing.T, e *env) rotKeys {
	t.Helper()
	k := rotKeys{
		sign:      e.create(t, appA, "app-a/s/sign", provider.Ed25519),
		seal:      e.create(t, appA, "app-a/d/seal", provider.XChaCha20Poly1305),
		other:     e.create(t, appB, "app-b/s/other", provider.Ed25519),
		revoked:   e.create(t, appB, "app-b/s/revoked", provider.Ed25519),
		destroyed: e.create(t, appB, "app-b/s/destroyed", provider.Ed25519),
	}
	b, err := e.ks.Seal(ctx, appA, k.seal, []byte("before"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	k.sealed = b.Data
	if _, err := e.ks.Rotate(ctx, appA, k.seal); err != nil {
		t.Fatal(err)
	}
	for _, id := range []core.KeyID{k.revoked, k.destroyed} {
		if _, err := e.ks.Revoke(ctx, appB, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.ks.Destroy(ctx, appB, k.destroyed); err != nil {
		t.Fatal(err)
	}
	return k
}

// rotKeyHandles is the number of handles makeRotKeys leaves: sign,
// seal@1, seal@2, other, revoked.
const rotKeyHandles = 5

// usable reports "" when every live key of k signs or seals and unseals
// (data sealed before too) and the revoked key is still revoked, else
// what failed.
func (k rotKeys) usable(e *env) string {
	for _, c := range []struct {
		who core.Caller
		id  core.KeyID
	}{{appA, k.sign}, {appB, k.other}} {
		if _, err := e.ks.Sign(ctx, c.who, c.id, []byte("m")); err != nil {
			return fmt.Sprintf("sign with %s: %v", c.id, err)
		}
	}
	pt, err := e.ks.Unseal(ctx, appA, k.seal, k.sealed, []byte("aad"))
	if err != nil || string(pt.Plaintext) != "before" {
		return fmt.Sprintf("unseal of data sealed before: %v", err)
	}
	b, err := e.ks.Seal(ctx, appA, k.seal, []byte("now"), nil)
	if err != nil {
		return fmt.Sprintf("seal: %v", err)
	}
	if _, err := e.ks.Unseal(ctx, appA, k.seal, b.Data, nil); err != nil {
		return fmt.Sprintf("unseal: %v", err)
	}
	if _, err := e.ks.Sign(ctx, appB, k.revoked, []byte("m")); codeOf(err) != provider.EKEYREVOKED {
		return fmt.Sprintf("revoked key signs: %v", err)
	}
	return ""
}

func kekStatus(t *testing.T, e *env) core.KEKStatus {
	t.Helper()
	s, err := e.ks.KEKStatus(ctx, operator)
	if err != nil {
		t.Fatalf("KEKStatus: %v", err)
	}
	return s
}

// TestRotateKEK: an operator's rotation rewraps every handle of every
// app under a new KEK, records it in the MANIFEST and the audit log, and
// leaves every key usable, also after a restart with the rotated KEK
// file; the old KEK file's content no longer opens the state. Apps may
// neither rotate nor read the status.
func TestRotateKEK(t *testing.T) {
	dir := t.TempDir()
	kekPath := filepath.Join(dir, "kek")
	st := storage.NewMemory()
	e := newEnvWith(t, st, softFile(t, kekPath))
	k := makeRotKeys(t, e)
	before := kekStatus(t, e)
	if before.Current == "" || before.Pending != "" || !slices.Equal(before.ProviderKEKs, []string{before.Current}) || !before.Rotatable {
		t.Fatalf("status before = %+v", before)
	}
	oldKEK, err := os.ReadFile(kekPath)
	if err != nil {
		t.Fatal(err)
	}

	_, err = e.ks.RotateKEK(ctx, appA)
	wantCode(t, "rotation by an app", err, provider.EPERM)
	_, err = e.ks.KEKStatus(ctx, appA)
	wantCode(t, "status by an app", err, provider.EPERM)

	r, err := e.ks.RotateKEK(ctx, operator)
	if err != nil {
		t.Fatalf("RotateKEK: %v", err)
	}
	want := core.KEKRotation{From: before.Current, To: r.To, Keys: 5, Rewrapped: rotKeyHandles, Committed: true}
	if r != want || r.To == "" || r.To == r.From {
		t.Fatalf("rotation = %+v, want %+v", r, want)
	}
	if s := kekStatus(t, e); s.Current != r.To || s.Pending != "" || !slices.Equal(s.ProviderKEKs, []string{r.To}) {
		t.Fatalf("status after = %+v, want current %s only", s, r.To)
	}
	if msg := k.usable(e); msg != "" {
		t.Fatalf("after the rotation: %s", msg)
	}
	ev := e.audit.all()
	var rec *core.Event
	for i := range ev {
		if ev[i].Op == core.OpKEKRotate && ev[i].OK() {
			rec = &ev[i]
		}
	}
	if rec == nil || !strings.Contains(rec.Detail, r.From+" -> "+r.To) || !strings.Contains(rec.Detail, "5 handles rewrapped") {
		t.Fatalf("audit of the rotation: %+v", rec)
	}
	if !slices.ContainsFunc(e.audit.commits, func(c core.Event) bool { return c.Op == core.OpKEKRotate }) {
		t.Error("the rotation was not committed to the audit sink before it changed state")
	}

	newKEK, err := os.ReadFile(kekPath)
	if err != nil || bytes.Equal(newKEK, oldKEK) {
		t.Fatalf("KEK file after the rotation: same content as before (%v)", err)
	}
	// Restart: a fresh provider on the same KEK file.
	e2 := newEnvWith(t, st, softFile(t, kekPath))
	if msg := k.usable(e2); msg != "" {
		t.Fatalf("after a restart: %s", msg)
	}
	// The old KEK no longer opens the state.
	oldPath := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(oldPath, oldKEK, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = openWith(st, softFile(t, oldPath))
	wantCode(t, "open with the old KEK", err, provider.EIO)

	// A second rotation rotates again.
	r2, err := e2.ks.RotateKEK(ctx, operator)
	if err != nil || r2.From != r.To || r2.Rewrapped != rotKeyHandles {
		t.Fatalf("second rotation = %+v, %v", r2, err)
	}
}

// TestRotateKEKNotSupported: providers without provider.KEKRotator (the
// insecure testseed provider, the software provider over KEK bytes) give
// ENOTSUP, audited, and change nothing.
func TestRotateKEKNotSupported(t *testing.T) {
	p, _ := softWithKEK(t, 0xa1)
	for name, e := range map[string]*env{"testseed": newEnv(t), "KEK bytes": newEnvWith(t, storage.NewMemory(), p)} {
		e.create(t, appA, "app-a/s/k", provider.Ed25519)
		before := e.st.(*storage.Memory).Snapshot()
		_, err := e.ks.RotateKEK(ctx, operator)
		wantCode(t, name, err, provider.ENOTSUP)
		if ev := e.audit.last(t); ev.Op != core.OpKEKRotate || ev.Result != provider.ENOTSUP {
			t.Errorf("%s: audit %+v", name, ev)
		}
		if after := e.st.(*storage.Memory).Snapshot(); len(after) != len(before) {
			t.Errorf("%s: refused rotation changed the state", name)
		}
		if s := kekStatus(t, e); s.Rotatable {
			t.Errorf("%s: status says rotatable", name)
		}
	}
}

// TestRotateKEKStopsOnUnreadableKey: a key whose handle cannot be read
// stops the rotation before the commit (the old KEK stays, so nothing is
// orphaned); once it is destroyed, a rerun resumes the same rotation and
// commits.
func TestRotateKEKStopsOnUnreadableKey(t *testing.T) {
	kekPath := filepath.Join(t.TempDir(), "kek")
	st := storage.NewMemory()
	e := newEnvWith(t, st, softFile(t, kekPath))
	k := makeRotKeys(t, e)
	bad := e.create(t, appA, "app-a/s/bad", provider.Ed25519)
	if err := core.LegacyHandles(st, bad); err != nil { // a handle file, as older versions wrote
		t.Fatal(err)
	}
	hp := "keystore/app-a/s/bad/v1.handle"
	if err := st.WriteFile(hp, []byte("KSH\x01 not a handle file at all, 36+ bytes long......")); err != nil {
		t.Fatal(err)
	}
	e = newEnvWith(t, st, softFile(t, kekPath)) // forget the cached handle
	r, err := e.ks.RotateKEK(ctx, operator)
	wantCode(t, "rotation over a corrupted handle", err, provider.EIO)
	if r.Committed || !strings.Contains(err.Error(), "app-a/s/bad@1") || !strings.Contains(err.Error(), "run the rotation again") {
		t.Fatalf("rotation = %+v, %v", r, err)
	}
	s := kekStatus(t, e)
	if s.Pending != r.To || s.Current != r.From || len(s.ProviderKEKs) != 2 {
		t.Fatalf("status after a stopped rotation = %+v", s)
	}
	if msg := k.usable(e); msg != "" {
		t.Fatalf("after a stopped rotation: %s", msg)
	}
	if _, err := e.ks.Revoke(ctx, appA, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Destroy(ctx, appA, bad); err != nil {
		t.Fatal(err)
	}
	r2, err := e.ks.RotateKEK(ctx, operator)
	if err != nil || r2.To != r.To || !r2.Committed || r2.Unchanged != rotKeyHandles || r2.Rewrapped != 0 {
		t.Fatalf("rerun = %+v, %v; want the same rotation resumed, every handle already rewrapped", r2, err)
	}
	if msg := k.usable(newEnvWith(t, st, softFile(t, kekPath))); msg != "" {
		t.Fatalf("after the rerun and a restart: %s", msg)
	}
}

// TestRotateKEKConcurrentCreates: keys created while a rotation runs are
// all usable after it (none is left under the old KEK).
func TestRotateKEKConcurrentCreates(t *testing.T) {
	kekPath := filepath.Join(t.TempDir(), "kek")
	st := storage.NewMemory()
	e := newEnvWith(t, st, softFile(t, kekPath))
	makeRotKeys(t, e)
	const n = 40
	done := make(chan error, 1)
	go func() {
		for i := range n {
			id, err := provider.NewKeyID("app-a", "c", fmt.Sprintf("k%d", i))
			if err == nil {
				_, err = e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519})
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if _, err := e.ks.RotateKEK(ctx, operator); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e2 := newEnvWith(t, st, softFile(t, kekPath))
	for i := range n {
		id := mustID(t, fmt.Sprintf("app-a/c/k%d", i))
		if _, err := e2.ks.Sign(ctx, appA, id, []byte("m")); err != nil {
			t.Fatalf("key created during the rotation: %v", err)
		}
	}
}

// TestManifestKEKRotationStates: core.Open over the MANIFEST states a
// rotation passes through: a provider holding both KEKs opens (to
// resume); one holding only the next KEK opens and the MANIFEST is
// finished; one holding only the old KEK while the MANIFEST records a
// pending rotation is refused, naming the KEK to restore.
func TestManifestKEKRotationStates(t *testing.T) {
	pA, fpA := softWithKEK(t, 0xa1)
	pB, fpB := softWithKEK(t, 0xb2)
	write := func(t *testing.T, st core.Storage, kek, next string) {
		t.Helper()
		m, err := core.EncodeManifestRotating("software", true, kek, next)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.WriteFile("keystore/MANIFEST", m); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("both", func(t *testing.T) {
		st := storage.NewMemory()
		write(t, st, fpA, fpB)
		if _, err := openWith(st, kekList{pA, []string{fpB, fpA}}); err != nil {
			t.Fatal(err)
		}
		if si := inspect(t, st); si.KEK != fpA {
			t.Errorf("KEK = %s, want %s (unchanged)", si.KEK, fpA)
		}
	})
	t.Run("next only", func(t *testing.T) {
		st := storage.NewMemory()
		write(t, st, fpA, fpB)
		if _, err := openWith(st, pB); err != nil {
			t.Fatal(err)
		}
		e := newEnvWith(t, st, pB)
		if s := kekStatus(t, e); s.Current != fpB || s.Pending != "" {
			t.Errorf("status = %+v, want the rotation finished at %s", s, fpB)
		}
	})
	t.Run("pending but not recorded", func(t *testing.T) {
		// A Begin took effect and the kek_next write did not (or its
		// reply was lost): the provider wraps under fpB, the MANIFEST
		// names fpA only. Open records fpB, so that a later start without
		// it is refused instead of losing the keys made under it.
		st := storage.NewMemory()
		write(t, st, fpA, "")
		if _, err := openWith(st, kekList{pA, []string{fpB, fpA}}); err != nil {
			t.Fatal(err)
		}
		_, err := openWith(st, pA)
		wantCode(t, "open without the pending KEK", err, provider.EIO)
	})
	t.Run("old only", func(t *testing.T) {
		st := storage.NewMemory()
		write(t, st, fpA, fpB)
		_, err := openWith(st, pA)
		wantCode(t, "open", err, provider.EIO)
		if !strings.Contains(err.Error(), "restore the next KEK") || !strings.Contains(err.Error(), fpB) {
			t.Errorf("refusal %q does not name the KEK to restore", err)
		}
	})
	t.Run("neither", func(t *testing.T) {
		st := storage.NewMemory()
		write(t, st, fpA, fpB)
		pC, _ := softWithKEK(t, 0xc3)
		_, err := openWith(st, pC)
		wantCode(t, "open", err, provider.EIO)
	})
	t.Run("malformed", func(t *testing.T) {
		for _, bad := range [][2]string{{fpA, fpA}, {"", fpB}, {fpA, "XYZ"}} {
			st := storage.NewMemory()
			write(t, st, bad[0], bad[1])
			if _, err := core.Inspect(context.Background(), st); codeOf(err) != provider.EIO {
				t.Errorf("MANIFEST kek %q kek_next %q: Inspect = %v, want EIO", bad[0], bad[1], err)
			}
		}
	})
}

// crashAt makes a KEKRotator fail like a kill right after its Begin or
// its Commit took effect (durably).
type crashAt struct {
	provider.Provider
	afterBegin, afterCommit bool
}

var errKilled = errors.New("killed")

func (p crashAt) BeginKEKRotation(ctx context.Context) (string, error) {
	fp, err := p.Provider.(provider.KEKRotator).BeginKEKRotation(ctx)
	if err == nil && p.afterBegin {
		return "", provider.Errorf(provider.EIO, "after begin: %w", errKilled)
	}
	return fp, err
}

func (p crashAt) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return p.Provider.(provider.KEKRotator).RewrapHandle(ctx, ref, h)
}

func (p crashAt) CommitKEKRotation(ctx context.Context) error {
	err := p.Provider.(provider.KEKRotator).CommitKEKRotation(ctx)
	if err == nil && p.afterCommit {
		return provider.Errorf(provider.EIO, "after commit: %w", errKilled)
	}
	return err
}

// TestCrashDuringKEKRotation fails, and separately crashes at, every
// storage step of a KEK rotation over several keys, and kills it right
// after the provider's Begin and right after its Commit. After each, a
// restart (fresh storage adapter and a fresh provider on the same KEK
// file) finds every key usable, and a rerun of the rotation completes;
// after another restart every key is still usable under the new KEK only.
func TestCrashDuringKEKRotation(t *testing.T) {
	type setup struct {
		dir, kekPath string
		keys         rotKeys
	}
	prepare := func(t *testing.T) setup {
		s := setup{dir: t.TempDir(), kekPath: filepath.Join(t.TempDir(), "kek")}
		e := openSoftDir(t, s.dir, s.kekPath, nil, nil)
		s.keys = makeRotKeys(t, e)
		closeDirEnv(t, e)
		// A mixed state: two keys with handle files (as older versions
		// wrote them), the others with their handles in meta.json.
		legacyDir(t, s.dir, s.keys.sign, s.keys.seal)
		return s
	}
	// afterwards restarts, checks, reruns, restarts and checks again.
	afterwards := func(t *testing.T, s setup, what string) {
		e := openSoftDir(t, s.dir, s.kekPath, nil, nil)
		if msg := s.keys.usable(e); msg != "" {
			t.Fatalf("after %s: %s", what, msg)
		}
		r, err := e.ks.RotateKEK(ctx, operator)
		if err != nil || !r.Committed {
			t.Fatalf("rerun after %s: %+v, %v", what, r, err)
		}
		closeDirEnv(t, e)
		e = openSoftDir(t, s.dir, s.kekPath, nil, nil)
		defer closeDirEnv(t, e)
		if st := kekStatus(t, e); st.Current != r.To || st.Pending != "" || !slices.Equal(st.ProviderKEKs, []string{r.To}) {
			t.Fatalf("status after the rerun of %s: %+v, want %s only", what, st, r.To)
		}
		if msg := s.keys.usable(e); msg != "" {
			t.Fatalf("after the rerun of %s: %s", what, msg)
		}
		if _, err := os.Lstat(s.kekPath + software.NextKEKSuffix); !os.IsNotExist(err) {
			t.Fatalf("after the rerun of %s: next KEK file left: %v", what, err)
		}
	}

	count := &faults{at: -1}
	{
		s := prepare(t)
		e := openSoftDir(t, s.dir, s.kekPath, count.hook, nil)
		if _, err := e.ks.RotateKEK(ctx, operator); err != nil {
			t.Fatalf("rotation without faults: %v", err)
		}
		closeDirEnv(t, e)
	}
	// Two MANIFEST writes, three handle files (sign, seal@1, seal@2) and
	// two meta.json (other, revoked), five steps each.
	if count.n < 7*5 {
		t.Fatalf("the rotation took only %d storage steps: %v", count.n, count.steps)
	}
	for _, crash := range []bool{false, true} {
		mode := "fail"
		if crash {
			mode = "crash"
		}
		for k := 0; k < count.n; k++ {
			what := fmt.Sprintf("a %s at step %d (%s)", mode, k, count.steps[k])
			t.Run(fmt.Sprintf("%s/%d-%s", mode, k, count.steps[k]), func(t *testing.T) {
				s := prepare(t)
				f := &faults{at: k, crash: crash}
				e := openSoftDir(t, s.dir, s.kekPath, f.hook, nil)
				_, err := e.ks.RotateKEK(ctx, operator)
				if err != nil && !errors.Is(err, provider.ErrIO) {
					t.Fatalf("failed rotation: %v, want EIO", err)
				}
				closeDirEnv(t, e)
				afterwards(t, s, what)
			})
		}
	}
	for _, c := range []crashAt{{afterBegin: true}, {afterCommit: true}} {
		what := "a kill after the provider's Begin"
		if c.afterCommit {
			what = "a kill after the provider's Commit"
		}
		t.Run(what, func(t *testing.T) {
			s := prepare(t)
			e := openSoftDir(t, s.dir, s.kekPath, nil, func(p provider.Provider) provider.Provider {
				c.Provider = p
				return c
			})
			if _, err := e.ks.RotateKEK(ctx, operator); !errors.Is(err, errKilled) {
				t.Fatalf("rotation = %v, want the injected kill", err)
			}
			closeDirEnv(t, e)
			afterwards(t, s, what)
		})
	}
}

// failOnce makes a KEKRotator's first Begin or Commit fail after it took
// effect (durably), as a provider plugin killed before its reply does;
// later calls pass through.
type failOnce struct {
	provider.Provider
	afterBegin, afterCommit bool
	failed                  *bool
}

func (p failOnce) fail(when bool, what string) error {
	if !when || *p.failed {
		return nil
	}
	*p.failed = true
	return provider.Errorf(provider.EUNAVAILABLE, "lost the reply to %s: %w", what, errKilled)
}

func (p failOnce) BeginKEKRotation(ctx context.Context) (string, error) {
	fp, err := p.Provider.(provider.KEKRotator).BeginKEKRotation(ctx)
	if err == nil {
		err = p.fail(p.afterBegin, "begin")
	}
	return fp, err
}

func (p failOnce) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return p.Provider.(provider.KEKRotator).RewrapHandle(ctx, ref, h)
}

func (p failOnce) CommitKEKRotation(ctx context.Context) error {
	err := p.Provider.(provider.KEKRotator).CommitKEKRotation(ctx)
	if err == nil {
		err = p.fail(p.afterCommit, "commit")
	}
	return err
}

// TestRotateKEKRerunWhileRunning: a rotation whose provider took its
// Begin or its Commit but whose reply was lost (a plugin killed and
// restarted by its client, the daemon still running) is completed by a
// rerun in the same keystore, without a restart: after a lost Commit the
// provider holds only the next KEK and the rerun records it; after a lost
// Begin the rerun resumes the pending KEK. Keys work throughout, and after
// a restart.
func TestRotateKEKRerunWhileRunning(t *testing.T) {
	for _, c := range []failOnce{{afterBegin: true}, {afterCommit: true}} {
		what := "begin"
		if c.afterCommit {
			what = "commit"
		}
		t.Run(what, func(t *testing.T) {
			dir, kekPath := t.TempDir(), filepath.Join(t.TempDir(), "kek")
			c.failed = new(bool)
			e := openSoftDir(t, dir, kekPath, nil, func(p provider.Provider) provider.Provider {
				c.Provider = p
				return c
			})
			keys := makeRotKeys(t, e)
			if _, err := e.ks.RotateKEK(ctx, operator); !errors.Is(err, errKilled) {
				t.Fatalf("rotation = %v, want the injected lost reply", err)
			}
			if msg := keys.usable(e); msg != "" {
				t.Fatalf("after the lost reply to %s: %s", what, msg)
			}
			r, err := e.ks.RotateKEK(ctx, operator)
			if err != nil || !r.Committed || r.To == "" || r.To == r.From {
				t.Fatalf("rerun after the lost reply to %s: %+v, %v", what, r, err)
			}
			if st := kekStatus(t, e); st.Current != r.To || st.Pending != "" || !slices.Equal(st.ProviderKEKs, []string{r.To}) {
				t.Fatalf("status after the rerun: %+v, want %s only", st, r.To)
			}
			if msg := keys.usable(e); msg != "" {
				t.Fatalf("after the rerun: %s", msg)
			}
			closeDirEnv(t, e)
			e = openSoftDir(t, dir, kekPath, nil, nil)
			defer closeDirEnv(t, e)
			if st := kekStatus(t, e); st.Current != r.To || st.Pending != "" {
				t.Fatalf("status after a restart: %+v, want %s", st, r.To)
			}
			if msg := keys.usable(e); msg != "" {
				t.Fatalf("after a restart: %s", msg)
			}
		})
	}
}

// openSoftDir opens the directory state dir with a fresh software
// provider over the KEK file kekPath (wrapped by wrap, if given).
func openSoftDir(t *testing.T, dir, kekPath string, hook storage.Hook, wrap func(provider.Provider) provider.Provider) *env {
	t.Helper()
	var opts []storage.Option
	if hook != nil {
		opts = append(opts, storage.WithHook(hook))
	}
	st, err := storage.OpenDir(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p := softFile(t, kekPath)
	if wrap != nil {
		p = wrap(p)
	}
	return newEnvWith(t, st, p)
}

// A rotation whose Begin took effect but whose kek_next record failed
// leaves the keystore refusing every change (a key made now would be
// under a KEK the state does not name) until a rerun records it and
// completes.
func TestRotateKEKUnrecordedPendingKEK(t *testing.T) {
	dir := t.TempDir()
	kekPath := filepath.Join(t.TempDir(), "kek")
	var failManifest atomic.Bool
	hook := func(step storage.Step, path string) error {
		if failManifest.Load() && step == storage.StepCreateTemp && path == "keystore/MANIFEST" {
			failManifest.Store(false)
			return errors.New("injected: MANIFEST write failed")
		}
		return nil
	}
	e := openSoftDir(t, dir, kekPath, hook, nil)
	id := e.create(t, appA, "app-a/s/before", provider.Ed25519)
	op := core.Caller{Operator: true}
	failManifest.Store(true)
	if _, err := e.ks.RotateKEK(ctx, op); err == nil {
		t.Fatal("RotateKEK succeeded although its kek_next record failed")
	}
	if _, err := e.ks.Create(ctx, appA, mustID(t, "app-a/s/during"), core.CreateOptions{Algorithm: provider.Ed25519}); codeOf(err) != provider.EIO {
		t.Fatalf("Create with an unrecorded pending KEK = %v, want EIO", err)
	}
	if _, err := e.ks.Sign(ctx, appA, id, []byte("m")); err != nil {
		t.Fatalf("Sign (no change of state) refused: %v", err)
	}
	r, err := e.ks.RotateKEK(ctx, op)
	if err != nil || !r.Committed {
		t.Fatalf("rerun: %+v, %v", r, err)
	}
	e.create(t, appA, "app-a/s/after", provider.Ed25519)
}

// noCommit is a KEKRotator whose Commit reports success but does nothing
// (a plugin restarted without its pending KEK looks like this).
type noCommit struct {
	provider.Provider
	rot provider.KEKRotator
}

func (p noCommit) BeginKEKRotation(ctx context.Context) (string, error) {
	return p.rot.BeginKEKRotation(ctx)
}
func (p noCommit) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return p.rot.RewrapHandle(ctx, ref, h)
}
func (p noCommit) CommitKEKRotation(context.Context) error { return nil }

// The MANIFEST takes the new KEK only when the provider holds it alone
// after Commit.
func TestRotateKEKCommitChecked(t *testing.T) {
	dir := t.TempDir()
	kekPath := filepath.Join(t.TempDir(), "kek")
	e := openSoftDir(t, dir, kekPath, nil, func(p provider.Provider) provider.Provider {
		return noCommit{Provider: p, rot: p.(provider.KEKRotator)}
	})
	e.create(t, appA, "app-a/s/k", provider.Ed25519)
	r, err := e.ks.RotateKEK(ctx, core.Caller{Operator: true})
	if codeOf(err) != provider.EIO || r.Committed {
		t.Fatalf("RotateKEK over a Commit that did nothing = %+v, %v; want EIO, not committed", r, err)
	}
	if s := kekStatus(t, e); s.Current != r.From || s.Pending != r.To {
		t.Errorf("status %+v: want the rotation still recorded as pending (%s -> %s)", s, r.From, r.To)
	}
}

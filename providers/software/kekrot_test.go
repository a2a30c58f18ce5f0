package software

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

func rotator(t *testing.T, p provider.Provider) provider.KEKRotator {
	t.Helper()
	r, ok := p.(provider.KEKRotator)
	if !ok {
		t.Fatalf("software provider over a KEK file does not implement provider.KEKRotator")
	}
	return r
}

func keksOf(t *testing.T, p provider.Provider) []string {
	t.Helper()
	i, err := p.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return i.KEKs
}

// TestKEKFileRotation walks a rotation of a KEK file through restarts:
// Begin makes "<kek>.next" (0600) and wraps new handles under it while old
// ones still unwrap; a restart in the middle holds both KEKs and resumes;
// Commit renames it over the KEK file, after which a handle not rewrapped
// fails as "wrong KEK" (even when its key was cached) and rewrapped ones
// work, also after a restart.
func TestKEKFileRotation(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kek")
	next := path + NextKEKSuffix
	p := newTest(t, Config{KEKFile: path, Create: true})
	oldFP := keksOf(t, p)
	oldBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	refA := testRef(t, "a", provider.Ed25519)
	gA, err := p.Generate(ctx, refA)
	if err != nil {
		t.Fatal(err)
	}
	if err := signWith(t, p, refA, gA); err != nil { // caches A
		t.Fatal(err)
	}

	fp, err := rotator(t, p).BeginKEKRotation(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if want := []string{fp, oldFP[0]}; !slices.Equal(keksOf(t, p), want) {
		t.Fatalf("KEKs after Begin = %v, want %v", keksOf(t, p), want)
	}
	fi, err := os.Lstat(next)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("next KEK file: %v, mode %v; want 0600", err, fi)
	}
	if again, err := rotator(t, p).BeginKEKRotation(ctx); err != nil || again != fp {
		t.Fatalf("second Begin = %q, %v; want %s (resumed)", again, err, fp)
	}
	refB := testRef(t, "b", provider.Ed25519)
	gB, err := p.Generate(ctx, refB)
	if err != nil {
		t.Fatal(err)
	}
	if err := signWith(t, p, refA, gA); err != nil {
		t.Fatalf("old handle after Begin: %v", err)
	}
	if hb, err := rotator(t, p).RewrapHandle(ctx, refB, gB.Handle); err != nil || !bytes.Equal(hb, gB.Handle) {
		t.Fatalf("rewrap of a handle made after Begin changed it (%v)", err)
	}
	if _, err := rotator(t, p).RewrapHandle(ctx, refB, gA.Handle); codeOf(err) != provider.EIO {
		t.Fatalf("rewrap of A's handle as B = %v, want EIO", err)
	}

	// Restart in the middle: both KEKs, same pending one.
	p2 := newTest(t, Config{KEKFile: path})
	if want := []string{fp, oldFP[0]}; !slices.Equal(keksOf(t, p2), want) {
		t.Fatalf("KEKs after a restart in the middle = %v, want %v", keksOf(t, p2), want)
	}
	if again, err := rotator(t, p2).BeginKEKRotation(ctx); err != nil || again != fp {
		t.Fatalf("Begin after a restart = %q, %v; want %s (resumed)", again, err, fp)
	}
	nextBytes, err := os.ReadFile(next)
	if err != nil {
		t.Fatal(err)
	}
	hA, err := rotator(t, p2).RewrapHandle(ctx, refA, gA.Handle)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(hA, gA.Handle) {
		t.Fatal("rewrap of a handle under the old KEK returned it unchanged")
	}
	if err := signWith(t, p2, refA, gA); err != nil { // caches A's old handle in p2
		t.Fatal(err)
	}

	if err := rotator(t, p2).CommitKEKRotation(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := keksOf(t, p2); !slices.Equal(got, []string{fp}) {
		t.Fatalf("KEKs after Commit = %v, want [%s]", got, fp)
	}
	if _, err := os.Lstat(next); !os.IsNotExist(err) {
		t.Fatalf("next KEK file after Commit: %v, want gone", err)
	}
	now, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(now, nextBytes) || bytes.Equal(now, oldBytes) {
		t.Fatalf("KEK file after Commit is not the next KEK (%v)", err)
	}
	err = signWith(t, p2, refA, gA)
	wantCode(t, "old handle after Commit (cached before)", err, provider.EIO)
	if !strings.Contains(err.Error(), "wrong KEK") {
		t.Errorf("old handle after Commit: %q, want wrong KEK", err)
	}
	for _, q := range []provider.Provider{p2, newTest(t, Config{KEKFile: path})} {
		if err := signWith(t, q, refA, provider.Generated{PublicKey: gA.PublicKey, Handle: hA}); err != nil {
			t.Fatalf("rewrapped handle after Commit: %v", err)
		}
		if err := signWith(t, q, refB, gB); err != nil {
			t.Fatalf("handle made during the rotation after Commit: %v", err)
		}
	}
	if err := rotator(t, p2).CommitKEKRotation(ctx); err != nil {
		t.Fatalf("Commit without a pending rotation: %v", err)
	}
	// The first provider still believes in the rotation it began; its
	// commit finds the rename done and completes.
	if err := rotator(t, p).CommitKEKRotation(ctx); err != nil {
		t.Fatalf("Commit of a rotation another instance committed: %v", err)
	}
}

// TestKEKRotationOnlyForKEKFiles: KEK bytes and passphrases cannot rotate
// (docs/software-provider.md says why), so those providers do not
// announce provider.KEKRotator.
func TestKEKRotationOnlyForKEKFiles(t *testing.T) {
	for name, o := range map[string]Config{
		"KEK bytes":  {KEK: testKEK()},
		"passphrase": {Passphrase: secret.New([]byte("pw")), ParamsFile: filepath.Join(t.TempDir(), "p"), Create: true, kdf: fastKDF},
	} {
		if _, ok := newTest(t, o).(provider.KEKRotator); ok {
			t.Errorf("%s: provider implements KEKRotator", name)
		}
	}
}

// TestNextKEKWithoutKEKFile: a "<kek>.next" without its KEK file is
// refused, never taken as a KEK to create beside.
func TestNextKEKWithoutKEKFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path+NextKEKSuffix, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{KEKFile: path, Create: true})
	wantCode(t, "next without KEK file", err, provider.EIO)
	if _, serr := os.Lstat(path); !os.IsNotExist(serr) {
		t.Errorf("a KEK file was created beside a lone next KEK file")
	}
	// A next KEK file readable by others is refused like a KEK file.
	if err := os.WriteFile(path, bytes.Repeat([]byte{8}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path+NextKEKSuffix, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{KEKFile: path}); err == nil {
		t.Error("a next KEK file readable by others was accepted")
	}
}

func codeOf(err error) provider.Code {
	c, _ := provider.CodeOf(err)
	return c
}

package software

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/internal/privfile"
	"github.com/nexus-os/keystored/providers/internal/softkey"
)

// NextKEKSuffix names the pending KEK of a rotation: the file
// "<KEKFile>.next" (docs/software-provider.md).
const NextKEKSuffix = ".next"

// fileProvider is a software provider whose KEK is a KEK file: it can
// rotate its KEK (provider.KEKRotator). The pending KEK lives in
// "<KEKFile>.next" until the commit renames it over the KEK file.
type fileProvider struct {
	softProvider
	path string     // the KEK file
	mu   sync.Mutex // orders BeginKEKRotation and CommitKEKRotation
}

var _ provider.KEKRotator = (*fileProvider)(nil)

// loadNextKEK returns the pending KEK of path's rotation, or the zero
// Bytes when there is none. A pending KEK without the KEK file is refused:
// the state of a rotation that no step of ours leaves.
func loadNextKEK(path string) (secret.Bytes, error) {
	next := path + NextKEKSuffix
	_, err := os.Lstat(next)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return secret.Bytes{}, nil
	case err != nil:
		return secret.Bytes{}, fileError("next KEK file "+strconv.Quote(next), err)
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return secret.Bytes{}, provider.Errorf(provider.EIO, "next KEK file %q exists but KEK file %q does not: "+
			"a KEK rotation never leaves this; restore the KEK file from its backup (docs/operations.md)", next, path)
	}
	return readKEKFile(next)
}

// BeginKEKRotation implements provider.KEKRotator: it creates
// "<KEKFile>.next" (0600, exclusive create, fsync, directory fsync) from
// crypto/rand, or resumes the rotation whose file New loaded.
func (p *fileProvider) BeginKEKRotation(ctx context.Context) (string, error) {
	if err := provider.CheckContext(ctx); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if keks := p.Engine.KEKs(); len(keks) > 1 {
		return keks[0], nil // resumed: the pending KEK is loaded
	}
	next := p.path + NextKEKSuffix
	b := make([]byte, softkey.KEKSize)
	if err := fill(b); err != nil {
		return "", err
	}
	kek := secret.Own(b)
	created, err := createExclusive(next, "next KEK file", b)
	if err == nil && !created {
		// Made since New (by another process over the same file): use it.
		kek.Wipe()
		kek, err = readKEKFile(next)
	}
	defer kek.Wipe()
	if err != nil {
		return "", err
	}
	return p.Engine.AddKEK(kek)
}

// RewrapHandle implements provider.KEKRotator.
func (p *fileProvider) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return p.Engine.Rewrap(ctx, ref, h)
}

// CommitKEKRotation implements provider.KEKRotator: it renames
// "<KEKFile>.next" over the KEK file and syncs the directory, then drops
// the old KEK from memory. A commit whose rename happened but whose
// directory sync failed is completed by the next call.
func (p *fileProvider) CommitKEKRotation(ctx context.Context) error {
	if err := provider.CheckContext(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	keks := p.Engine.KEKs()
	if len(keks) == 1 {
		return nil
	}
	next := p.path + NextKEKSuffix
	q := "KEK file " + strconv.Quote(p.path)
	if err := os.Rename(next, p.path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return provider.Errorf(provider.EIO, "cannot rename %q over %s: %w", next, q, err)
		}
		// Renamed by an earlier call whose directory sync failed? Then
		// the KEK file holds the pending KEK.
		kek, rerr := readKEKFile(p.path)
		if rerr != nil {
			return rerr
		}
		id, ierr := softkey.KEKID(kek)
		kek.Wipe()
		if ierr != nil {
			return ierr
		}
		if softkey.KEKFingerprint(id) != keks[0] {
			return provider.Errorf(provider.EIO, "next KEK file %q is gone and %s does not hold the pending KEK %s; restore it from its backup", next, q, keks[0])
		}
	}
	if err := privfile.SyncDir(filepath.Dir(p.path)); err != nil {
		return provider.Errorf(provider.EIO, "cannot sync the directory of %s: %w", q, err)
	}
	p.Engine.DropOldKEKs()
	if got := p.Engine.KEKs(); !slices.Equal(got, keks[:1]) {
		return provider.Errorf(provider.EIO, "KEK rotation: provider holds %v after the commit, want %s", got, keks[0])
	}
	return nil
}

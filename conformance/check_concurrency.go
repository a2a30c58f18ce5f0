package conformance

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
)

// provWorkers is how many goroutines the concurrency check runs.
const provWorkers = 16

// checkConcurrency: 16 goroutines at once sign, seal and open with keys
// they share (one per algorithm) and with keys each generates and destroys
// for itself; every result is correct (signatures verify independently,
// blobs open to their plaintext). Run it under -race.
func (s *provSuite) checkConcurrency(ctx context.Context) error {
	if len(s.algs) == 0 {
		return skipf("provider announces no algorithm the registry knows")
	}
	shared := make([]*provKey, len(s.algs))
	for i, a := range s.algs {
		k, err := s.newKey(ctx, "concurrency", "shared", a)
		if err != nil {
			return err
		}
		shared[i] = k
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		f  provFails
	)
	for w := 0; w < provWorkers; w++ {
		wg.Go(func() {
			err := s.concurrencyWorker(ctx, w, shared)
			mu.Lock()
			f.add(err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return f.err()
}

// concurrencyWorker uses two shared keys and one fresh key.
func (s *provSuite) concurrencyWorker(ctx context.Context, w int, shared []*provKey) error {
	n := len(shared)
	for j, k := range []*provKey{shared[w%n], shared[(w+1)%n]} {
		if err := s.useOnce(ctx, k, fmt.Sprintf("worker %d, call %d", w, j)); err != nil {
			return err
		}
	}
	a := shared[w%n].ref.Algorithm
	k, err := s.newKey(ctx, "concurrency", fmt.Sprintf("worker-%d", w), a)
	if err != nil {
		return fmt.Errorf("worker %d: %w", w, err)
	}
	if err := s.useOnce(ctx, k, fmt.Sprintf("worker %d, own key", w)); err != nil {
		return err
	}
	if err := s.p.Destroy(ctx, k.ref, k.g.Handle); err != nil {
		return fmt.Errorf("worker %d: Destroy(%s): %w; want success", w, k.ref, err)
	}
	for _, at := range s.misuse(ctx, k, k.ref, k.g.Handle, "its destroyed handle") {
		if err := wantCode(at.what, at.err, provider.ENOENT, at.out); err != nil {
			return fmt.Errorf("worker %d: %w", w, err)
		}
	}
	return nil
}

// useOnce signs and verifies, or seals and opens, a message unique to tag.
func (s *provSuite) useOnce(ctx context.Context, k *provKey, tag string) error {
	msg := []byte("conformance concurrency: " + tag)
	switch k.ref.Use {
	case provider.UseSign:
		sig, err := s.p.Sign(ctx, k.ref, k.g.Handle, msg)
		if err != nil {
			return fmt.Errorf("%s: Sign(%s): %w; want success", tag, k.ref, err)
		}
		if v, ok := independentVerifiers[k.ref.Algorithm]; ok && !v(k.g.PublicKey, msg, sig) {
			return fmt.Errorf("%s: Sign(%s): signature does not verify; want valid", tag, k.ref)
		}
	case provider.UseDecrypt:
		sealed, err := s.p.Seal(ctx, k.ref, k.g.Handle, msg, []byte(tag))
		if err != nil {
			return fmt.Errorf("%s: Seal(%s): %w; want success", tag, k.ref, err)
		}
		pt, err := s.p.Open(ctx, k.ref, k.g.Handle, sealed, []byte(tag))
		if err != nil || !bytes.Equal(pt, msg) {
			return fmt.Errorf("%s: Open(%s): got %d bytes, error %v; want the plaintext", tag, k.ref, len(pt), err)
		}
		// The shared blob sealed before the goroutines started opens too.
		pt, err = s.p.Open(ctx, k.ref, k.g.Handle, k.sealed, provKeyAAD)
		if err != nil || !bytes.Equal(pt, provKeyPlaintext) {
			return fmt.Errorf("%s: Open(%s) of the blob sealed beforehand: got %d bytes, error %v; want the plaintext", tag, k.ref, len(pt), err)
		}
	}
	return nil
}

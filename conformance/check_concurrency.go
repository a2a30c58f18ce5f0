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

// checkConcurrency: 16 goroutines at once sign (messages and digests),
// seal and open, MAC, and decrypt HPKE messages with keys they share (one per algorithm) and with
// keys each generates and destroys for itself (of the algorithms that are
// quick to generate, when there are any); every result is correct
// (signatures verify independently, blobs open to their plaintext, tags
// are those made before the goroutines started). Run it under -race.
func (s *provSuite) checkConcurrency(ctx context.Context) error {
	if len(s.algs) == 0 {
		return skipf("provider announces no algorithm the registry knows")
	}
	shared := make([]*provKey, len(s.algs))
	for i, a := range s.algs {
		k, err := s.keyFor(ctx, "concurrency", "shared", a)
		if err != nil {
			return err
		}
		shared[i] = k
	}
	// The algorithms of the keys the workers make for themselves.
	var own []provider.Algorithm
	for _, a := range s.algs {
		if !s.expensive(a) {
			own = append(own, a)
		}
	}
	if len(own) == 0 {
		own = s.algs[:1]
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		f  provFails
	)
	for w := 0; w < provWorkers; w++ {
		wg.Go(func() {
			err := s.concurrencyWorker(ctx, w, shared, own[w%len(own)])
			mu.Lock()
			f.add(err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return f.err()
}

// concurrencyWorker uses shared keys (shared[w] and shared[w+1], and so
// on every provWorkers keys when there are more: each key by at least two
// workers) and one fresh key of algorithm a.
func (s *provSuite) concurrencyWorker(ctx context.Context, w int, shared []*provKey, a provider.Algorithm) error {
	n := len(shared)
	var use []*provKey
	for i := w; i < max(n, provWorkers); i += provWorkers {
		use = append(use, shared[i%n], shared[(i+1)%n])
	}
	for j, k := range use {
		if err := s.useOnce(ctx, k, fmt.Sprintf("worker %d, call %d", w, j)); err != nil {
			return err
		}
	}
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

// useOnce signs and verifies (a message and a digest), or seals and
// opens, or MACs, or decrypts (sealed with crypto/hpke) a message unique
// to tag.
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
		if k.hash == 0 {
			return nil
		}
		digest := digestOf(k.hash, msg)
		sig, err = s.p.SignDigest(ctx, k.ref, k.g.Handle, k.hash, digest)
		if err != nil {
			return fmt.Errorf("%s: SignDigest(%s): %w; want success", tag, k.ref, err)
		}
		if d, ok := digestVerifiers[k.ref.Algorithm]; ok && !d.verify(k.g.PublicKey, digest, sig) {
			return fmt.Errorf("%s: SignDigest(%s): signature does not verify; want valid", tag, k.ref)
		}
	case provider.UseMAC:
		mac, err := s.p.MAC(ctx, k.ref, k.g.Handle, msg)
		if err != nil {
			return fmt.Errorf("%s: MAC(%s): %w; want success", tag, k.ref, err)
		}
		if bytes.Equal(mac, k.tag) {
			return fmt.Errorf("%s: MAC(%s) of a message unique to the call gave the tag of another message", tag, k.ref)
		}
		// The tag made before the goroutines started is made again.
		mac, err = s.p.MAC(ctx, k.ref, k.g.Handle, provKeyMsg)
		if err != nil || !bytes.Equal(mac, k.tag) {
			return fmt.Errorf("%s: MAC(%s) of the message tagged beforehand: another tag or %v; want the same tag", tag, k.ref, err)
		}
	case provider.UseAsymmetricDecrypt:
		if k.msg.enc == nil {
			return nil // an algorithm the suite cannot seal to
		}
		m, err := s.sealTo(k, msg, []byte(tag), []byte(tag))
		if err != nil {
			return fmt.Errorf("%s: %w", tag, err)
		}
		if err := s.decrypts(ctx, k.ref, k.g.Handle, m, "a message unique to the call"); err != nil {
			return fmt.Errorf("%s: %w", tag, err)
		}
		// The message sealed before the goroutines started decrypts too.
		if err := s.decrypts(ctx, k.ref, k.g.Handle, k.msg, "the message sealed beforehand"); err != nil {
			return fmt.Errorf("%s: %w", tag, err)
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

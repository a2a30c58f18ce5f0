package conformance

import (
	"context"
	"fmt"

	"github.com/nexus-os/keystored/core/provider"
)

// checkDestroy: after Destroy, every operation with the handle fails with
// ErrNotFound and no output (Open of a blob sealed before the Destroy
// included, SignDigest where the algorithm signs digests, MAC); Destroy
// again succeeds; another key of the same algorithm still works.
func (s *provSuite) checkDestroy(ctx context.Context, a provider.Algorithm) error {
	k, err := s.keyToDestroy(ctx, "destroy", "a", a)
	if err != nil {
		return err
	}
	other, err := s.keyFor(ctx, "destroy", "b", a)
	if err != nil {
		return err
	}
	if err := s.works(ctx, k); err != nil {
		return fmt.Errorf("before Destroy: %w", err)
	}
	if err := s.p.Destroy(ctx, k.ref, k.g.Handle); err != nil {
		return fmt.Errorf("Destroy(%s): %w; want success", k.ref, err)
	}
	var f provFails
	for _, at := range s.misuse(ctx, k, k.ref, k.g.Handle, "its destroyed handle") {
		f.add(wantCode(at.what, at.err, provider.ENOENT, at.out))
	}
	for i := 0; i < 2; i++ {
		if err := s.p.Destroy(ctx, k.ref, k.g.Handle); err != nil {
			f.addf("Destroy(%s) again (#%d): %v; want success (destroy can be retried)", k.ref, i+2, err)
		}
	}
	if err := s.works(ctx, other); err != nil {
		f.addf("another key after Destroy(%s): %v", k.ref, err)
	}
	for _, at := range s.misuse(ctx, k, k.ref, k.g.Handle, "its destroyed handle, destroyed again") {
		f.add(wantCode(at.what, at.err, provider.ENOENT, at.out))
	}
	return f.err()
}

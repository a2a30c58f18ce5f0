package conformance

import (
	"context"
	"fmt"
	"reflect"

	"github.com/nexus-os/keystored/core/provider"
)

// checkInfo: Info is well formed (Info.Check), the name is a segment, the
// algorithm list is non-empty and every algorithm is known to the
// registry, and Info returns the same value on every call, even after the
// caller modified an earlier result. KEKs, when announced, are part of
// that value: the same fingerprints in the same order on every call.
func (s *provSuite) checkInfo(ctx context.Context) error {
	var f provFails
	info, err := s.p.Info(ctx)
	if err != nil {
		return fmt.Errorf("Info: %w", err)
	}
	if err := info.Check(); err != nil {
		f.addf("Info().Check(): %v; want nil", err)
	}
	if err := provider.CheckSegment("provider name", info.Name); err != nil {
		f.addf("Info().Name %q is not a segment: %v", info.Name, err)
	}
	if len(info.Algorithms) == 0 {
		f.addf("Info().Algorithms is empty; want at least one algorithm")
	}
	for _, a := range info.Algorithms {
		if _, err := s.reg.Lookup(a); err != nil {
			f.addf("Info().Algorithms holds %q, which alg.Default() does not know; want only %v", a, s.reg.Names())
		}
	}
	if !reflect.DeepEqual(info, s.info) {
		f.addf("Info() changed between calls: got %+v, first call gave %+v", info, s.info)
	}
	// The result belongs to the caller: modifying it must not change what
	// the provider announces next.
	if len(info.Algorithms) > 0 {
		orig := info.Algorithms[0]
		info.Algorithms[0] = "conformance-mutated"
		// Undo it, in case the provider does share the slice, so that the
		// checks that follow see the provider as it was.
		defer func() { info.Algorithms[0] = orig }()
	}
	if len(info.KEKs) > 0 {
		origKEK := info.KEKs[0]
		info.KEKs[0] = "c0ffee"
		defer func() { info.KEKs[0] = origKEK }()
	}
	info.Name = "conformance-mutated"
	for i := 0; i < 2; i++ {
		again, err := s.p.Info(ctx)
		if err != nil {
			f.addf("Info() call %d: %v; want the same result as the first call", i+2, err)
			continue
		}
		if !reflect.DeepEqual(again, s.info) {
			f.addf("Info() call %d: got %+v, want %+v as on the first call (the caller modified an earlier result; does Info share its Algorithms or KEKs slice?)", i+2, again, s.info)
		}
		if len(s.info.KEKs) > 0 && !reflect.DeepEqual(again.KEKs, s.info.KEKs) {
			f.addf("Info() call %d: KEKs %v, want %v as on the first call: the KEKs that wrap the handles may not change while the provider runs", i+2, again.KEKs, s.info.KEKs)
		}
	}
	return f.err()
}

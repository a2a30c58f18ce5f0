package conformance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// checkContext: with a cancelled context, and with one whose deadline has
// passed, Generate, Destroy and every operation (Sign, SignDigest, Seal,
// Open, MAC, Decrypt), NewImportKey and Import fail with an error that
// carries a code, and return (a call still running after 30 s counts as
// hung). Info may succeed, but if it fails its error carries a code. The
// keys are unharmed afterwards.
func (s *provSuite) checkContext(ctx context.Context) error {
	var keys []*provKey
	for _, a := range s.algs {
		k, err := s.keyFor(ctx, "context", "key", a)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return skipf("provider announces no algorithm the registry knows")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Unix(0, 0))
	defer cancel2()
	var f provFails
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"a cancelled context", cancelled}, {"an expired context", expired}} {
		err := s.bounded("Info with "+c.name, func() error {
			_, err := s.p.Info(c.ctx)
			return err
		})
		var hang *provHang
		switch {
		case errors.As(err, &hang):
			f.add(err)
		case asPanic(err) != nil:
			f.addf("Info with %s: %v", c.name, err)
		case err != nil:
			if _, ok := provider.CodeOf(err); !ok {
				f.addf("Info with %s: error %q has no provider code", c.name, err)
			}
		}
		for _, k := range keys {
			f.add(s.wantCoded(fmt.Sprintf("Generate(%s) with %s", k.ref, c.name), func() ([]byte, error) {
				ref, err := s.ref("context", string(k.ref.Algorithm)+"-new", k.ref.Algorithm)
				if err != nil {
					return nil, err
				}
				g, err := s.p.Generate(c.ctx, ref)
				return g.Handle, err
			}))
			f.add(s.wantCoded(fmt.Sprintf("Destroy(%s) with %s", k.ref, c.name), func() ([]byte, error) {
				return nil, s.p.Destroy(c.ctx, k.ref, k.g.Handle)
			}))
			var ats []provAttempt
			err := s.bounded(fmt.Sprintf("operations of %s with %s", k.ref, c.name), func() error {
				ats = s.misuse(c.ctx, k, k.ref, k.g.Handle, "its handle and "+c.name)
				return nil
			})
			if err != nil {
				f.add(err)
				continue
			}
			for _, at := range ats {
				f.add(wantAnyCode(at.what, at.err, at.out))
			}
		}
		wrap := importWrap(keys[0].ref, provider.HPKEX25519)
		f.add(s.wantCoded(fmt.Sprintf("NewImportKey(%s) with %s", wrap, c.name), func() ([]byte, error) {
			g, err := s.p.NewImportKey(c.ctx, wrap)
			return g.Handle, err
		}))
		f.add(s.wantCoded(fmt.Sprintf("Import(%s) with %s", keys[0].ref, c.name), func() ([]byte, error) {
			g, err := s.p.Import(c.ctx, keys[0].ref, wrap, append([]byte("KSI1"), make([]byte, 16)...), make([]byte, 32), make([]byte, 48))
			return g.Handle, err
		}))
	}
	for _, k := range keys {
		if err := s.works(ctx, k); err != nil {
			f.addf("after the calls with done contexts: %v", err)
		}
	}
	return f.err()
}

// wantCoded runs call under the hang detector and checks it failed with a
// coded error and no output.
func (s *provSuite) wantCoded(what string, call func() ([]byte, error)) error {
	var out []byte
	err := s.bounded(what, func() error {
		var err error
		out, err = call()
		return err
	})
	var hang *provHang
	if errors.As(err, &hang) {
		return err
	}
	return wantAnyCode(what, err, out)
}

// wantAnyCode checks that a call failed, without panicking, with an error
// carrying a valid provider code, and returned no output.
func wantAnyCode(what string, err error, out []byte) error {
	if p := asPanic(err); p != nil {
		return fmt.Errorf("%s: %v; want an error with a code", what, p)
	}
	if err == nil {
		return fmt.Errorf("%s: got success (%d bytes out), want an error", what, len(out))
	}
	if _, ok := provider.CodeOf(err); !ok {
		return fmt.Errorf("%s: got error %q with no provider code; want one wrapping a provider.Code", what, err)
	}
	if len(out) != 0 {
		return fmt.Errorf("%s: failed but also returned %d bytes; want no output", what, len(out))
	}
	return nil
}

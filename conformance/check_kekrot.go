package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nexus-os/keystored/core/provider"
)

// checkKEKRotation (a fresh provider that implements provider.KEKRotator):
// keys made before, during (after Begin) and after a rotation all sign,
// open, decrypt or MAC (the same tag) afterwards, their handles rewrapped; a handle from before still
// works after Begin; Begin twice is the same pending KEK; Info.KEKs is
// [next, current] during the rotation and [next] after it; after Commit a
// handle that was not rewrapped fails with EIO; Commit again does nothing.
func (s *provSuite) checkKEKRotation(ctx context.Context) error {
	rot, ok := s.raw.(provider.KEKRotator)
	if !ok {
		return skipf("provider does not implement provider.KEKRotator: it cannot rotate a KEK")
	}
	var f provFails
	algs := s.algs
	if len(algs) == 0 {
		return skipf("provider announces no algorithm the registry knows")
	}
	type key struct {
		ref provider.KeyRef
		g   provider.Generated
		tag []byte // a MAC key's tag of provKeyMsg, made with its first handle
	}
	gen := func(name string, a provider.Algorithm) (key, error) {
		k, err := s.newKey(ctx, "kekrot", name, a)
		if err != nil {
			return key{}, err
		}
		return key{k.ref, k.g, k.tag}, nil
	}
	var before, during, after []key
	for _, a := range algs {
		k, err := gen("before", a)
		if err != nil {
			return err
		}
		before = append(before, k)
	}
	old := s.info.KEKs
	next, err := rot.BeginKEKRotation(ctx)
	if err != nil {
		return fmt.Errorf("BeginKEKRotation: %w", err)
	}
	if err := provider.CheckKEKFingerprint(next); err != nil {
		f.addf("BeginKEKRotation returned %q, not a KEK fingerprint: %v", next, err)
	}
	if again, err := rot.BeginKEKRotation(ctx); err != nil || again != next {
		f.addf("BeginKEKRotation again = %q, %v; want the pending %q (resumed)", again, err, next)
	}
	if info, err := s.raw.Info(ctx); err != nil || len(old) > 0 && !slices.Equal(info.KEKs, append([]string{next}, old...)) {
		f.addf("Info().KEKs during a rotation = %q (%v); want [%s] then %q", info.KEKs, err, next, old)
	}
	for _, k := range before {
		f.add(s.useKey(ctx, "after Begin, a handle from before", k.ref, k.g, k.tag))
	}
	// Keys of the expensive algorithms (RSA) are made before the rotation
	// only: they show that rewrapping keeps material of every size, and
	// the cheap ones show where keys made during and after go.
	for _, a := range algs {
		if s.expensive(a) {
			continue
		}
		k, err := gen("during", a)
		if err != nil {
			return err
		}
		during = append(during, k)
	}
	rewrapped := make([]key, 0, len(before)+len(during))
	for i, k := range append(slices.Clone(before), during...) {
		h, err := rot.RewrapHandle(ctx, k.ref, k.g.Handle)
		if err != nil {
			f.addf("RewrapHandle(%s): %v", k.ref, err)
			continue
		}
		switch isBefore := i < len(before); {
		case isBefore && bytes.Equal(h, k.g.Handle):
			f.addf("RewrapHandle(%s) of a handle from before the rotation returned it unchanged", k.ref)
		case !isBefore && !bytes.Equal(h, k.g.Handle):
			f.addf("RewrapHandle(%s) of a handle made after Begin changed it; want it unchanged", k.ref)
		}
		if again, err := rot.RewrapHandle(ctx, k.ref, h); err != nil || !bytes.Equal(again, h) {
			f.addf("RewrapHandle(%s) of a rewrapped handle: changed or %v; want it unchanged", k.ref, err)
		}
		rewrapped = append(rewrapped, key{k.ref, provider.Generated{PublicKey: k.g.PublicKey, Handle: h}, k.tag})
	}
	if len(before) > 1 {
		_, err := rot.RewrapHandle(ctx, before[1].ref, before[0].g.Handle)
		if err == nil {
			f.addf("RewrapHandle(%s) of another key's handle succeeded; want an error", before[1].ref)
		}
	}
	if err := rot.CommitKEKRotation(ctx); err != nil {
		return errors.Join(f.err(), fmt.Errorf("CommitKEKRotation: %w", err))
	}
	if info, err := s.raw.Info(ctx); err != nil || len(old) > 0 && !slices.Equal(info.KEKs, []string{next}) {
		f.addf("Info().KEKs after the commit = %q (%v); want [%s]", info.KEKs, err, next)
	}
	if err := rot.CommitKEKRotation(ctx); err != nil {
		f.addf("CommitKEKRotation without a pending rotation: %v; want nil", err)
	}
	for _, a := range algs {
		if s.expensive(a) {
			continue
		}
		k, err := gen("after", a)
		if err != nil {
			return err
		}
		after = append(after, k)
	}
	for _, k := range append(rewrapped, after...) {
		f.add(s.useKey(ctx, "after the commit", k.ref, k.g, k.tag))
	}
	for _, k := range before {
		if err := s.useKey(ctx, "", k.ref, k.g, k.tag); !errors.Is(err, provider.ErrIO) {
			f.addf("after the commit, the handle of %s from before the rotation, not rewrapped: %v; want an error wrapping EIO", k.ref, err)
		}
	}
	return f.err()
}

// useKey signs with (and verifies), or seals and opens with, or decrypts
// a message to, or MACs with a key; a MAC key's tag must be wantTag, the
// one its first handle made.
func (s *provSuite) useKey(ctx context.Context, when string, ref provider.KeyRef, g provider.Generated, wantTag []byte) error {
	wrap := func(err error) error {
		if err == nil || when == "" {
			return err
		}
		return fmt.Errorf("%s: %s: %w", when, ref, err)
	}
	msg := []byte("kek rotation")
	switch ref.Use {
	case provider.UseSign:
		sig, err := s.raw.Sign(ctx, ref, g.Handle, msg)
		if err != nil {
			return wrap(err)
		}
		sp, err := s.spec(ref.Algorithm)
		if err != nil {
			return err
		}
		if !sp.Verify(g.PublicKey, msg, sig) {
			return wrap(errors.New("signature does not verify"))
		}
		return nil
	case provider.UseAsymmetricDecrypt:
		k := &provKey{ref: ref, g: g}
		m, err := s.sealTo(k, msg, nil, nil)
		if err != nil {
			return wrap(err)
		}
		pt, err := s.raw.Decrypt(ctx, ref, g.Handle, m.enc, m.ct, nil, nil)
		if err != nil {
			return wrap(err)
		}
		if !bytes.Equal(pt, msg) {
			return wrap(errors.New("decrypted a different plaintext"))
		}
		return nil
	case provider.UseMAC:
		tag, err := s.raw.MAC(ctx, ref, g.Handle, provKeyMsg)
		if err != nil {
			return wrap(err)
		}
		if !bytes.Equal(tag, wantTag) {
			return wrap(errors.New("the tag differs from the one the key made before the rotation"))
		}
		return nil
	default:
		ct, err := s.raw.Seal(ctx, ref, g.Handle, msg, nil)
		if err != nil {
			return wrap(err)
		}
		pt, err := s.raw.Open(ctx, ref, g.Handle, ct, nil)
		if err != nil {
			return wrap(err)
		}
		if !bytes.Equal(pt, msg) {
			return wrap(errors.New("opened a different plaintext"))
		}
		return nil
	}
}

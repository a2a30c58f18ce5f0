package conformance

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// checkErrorCodes: every error the provider returned, in this check and in
// every subtest before it, carries a valid provider.Code (CodeOf), and no
// call panicked. The check itself provokes one error of each kind the
// contract names, so it means something when run alone.
func (s *provSuite) checkErrorCodes(ctx context.Context) error {
	var ats []provAttempt
	add := func(what string, out []byte, err error) { ats = append(ats, provAttempt{what, out, err}) }
	for _, a := range s.algs {
		k, err := s.keyFor(ctx, "error-codes", "key", a)
		if err != nil {
			return err
		}
		bad := k.ref
		bad.Version = 0
		g, err := s.p.Generate(ctx, bad)
		add(fmt.Sprintf("Generate(%s, version 0)", bad), g.Handle, err)
		unsupported := k.ref
		unsupported.Algorithm = "no-such-alg"
		g, err = s.p.Generate(ctx, unsupported)
		add(fmt.Sprintf("Generate(%s, algorithm %q)", unsupported, unsupported.Algorithm), g.Handle, err)
		wrong := k.ref
		wrong.Version++
		ats = append(ats, s.misuse(ctx, k, wrong, k.g.Handle, "another version's handle")...)
		ats = append(ats, s.misuse(ctx, k, k.ref, k.g.Handle[:len(k.g.Handle)/2], "a truncated handle")...)
		switch k.ref.Use {
		case provider.UseSign:
			out, err := s.p.Sign(ctx, k.ref, k.g.Handle, make([]byte, provider.MaxSignMessage+1))
			add(fmt.Sprintf("Sign(%s, MaxSignMessage+1 bytes)", k.ref), out, err)
			out, err = s.p.Seal(ctx, k.ref, k.g.Handle, nil, nil)
			add(fmt.Sprintf("Seal(%s) with a signature key", k.ref), out, err)
			out, err = s.p.MAC(ctx, k.ref, k.g.Handle, nil)
			add(fmt.Sprintf("MAC(%s) with a signature key", k.ref), out, err)
			out, err = s.p.SignDigest(ctx, k.ref, k.g.Handle, s.misuseDigestHash(a), []byte("short"))
			add(fmt.Sprintf("SignDigest(%s) of a 5-byte digest", k.ref), out, err)
			out, err = s.p.SignDigest(ctx, k.ref, k.g.Handle, 0, nil)
			add(fmt.Sprintf("SignDigest(%s) with the zero hash", k.ref), out, err)
		case provider.UseDecrypt:
			out, err := s.p.Open(ctx, k.ref, k.g.Handle, k.sealed[:len(k.sealed)-1], provKeyAAD)
			add(fmt.Sprintf("Open(%s) of a truncated blob", k.ref), out, err)
			out, err = s.p.Sign(ctx, k.ref, k.g.Handle, nil)
			add(fmt.Sprintf("Sign(%s) with an AEAD key", k.ref), out, err)
			out, err = s.p.MAC(ctx, k.ref, k.g.Handle, nil)
			add(fmt.Sprintf("MAC(%s) with an AEAD key", k.ref), out, err)
		case provider.UseAsymmetricDecrypt:
			m := k.hpkeMessage(k.ref)
			out, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, m.enc, m.ct[:len(m.ct)-1], m.info, m.aad)
			add(fmt.Sprintf("Decrypt(%s) of a truncated message", k.ref), out, err)
			out, err = s.p.Decrypt(ctx, k.ref, k.g.Handle, m.enc, m.ct, make([]byte, provider.MaxHPKEInfo+1), nil)
			add(fmt.Sprintf("Decrypt(%s) with MaxHPKEInfo+1 bytes of info", k.ref), out, err)
			out, err = s.p.Seal(ctx, k.ref, k.g.Handle, nil, nil)
			add(fmt.Sprintf("Seal(%s) with an HPKE key", k.ref), out, err)
			out, err = s.p.Sign(ctx, k.ref, k.g.Handle, nil)
			add(fmt.Sprintf("Sign(%s) with an HPKE key", k.ref), out, err)
		case provider.UseMAC:
			out, err := s.p.MAC(ctx, k.ref, k.g.Handle, make([]byte, provider.MaxMACMessage+1))
			add(fmt.Sprintf("MAC(%s, MaxMACMessage+1 bytes)", k.ref), out, err)
			out, err = s.p.Sign(ctx, k.ref, k.g.Handle, nil)
			add(fmt.Sprintf("Sign(%s) with a MAC key", k.ref), out, err)
			out, err = s.p.SignDigest(ctx, k.ref, k.g.Handle, crypto.SHA256, make([]byte, 32))
			add(fmt.Sprintf("SignDigest(%s) with a MAC key", k.ref), out, err)
			out, err = s.p.Open(ctx, k.ref, k.g.Handle, pseudo("error-codes", 64), nil)
			add(fmt.Sprintf("Open(%s) with a MAC key", k.ref), out, err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		ats = append(ats, s.misuse(cancelled, k, k.ref, k.g.Handle, "a cancelled context")...)
		if s.shared(k) {
			continue // other checks use it; the cheaper algorithms' keys show destroyed handles
		}
		if err := s.p.Destroy(ctx, k.ref, k.g.Handle); err != nil {
			return fmt.Errorf("Destroy(%s): %w; want success", k.ref, err)
		}
		ats = append(ats, s.misuse(ctx, k, k.ref, k.g.Handle, "its destroyed handle")...)
	}
	var f provFails
	total, uncoded, examples := s.rec.stats()
	s.logf("%d errors seen in this run, %d without a code", total, uncoded)
	if total == 0 {
		f.addf("the provider returned no error at all, even for invalid calls; want coded errors")
	}
	if uncoded > 0 {
		f.addf("%d of %d errors seen in this run carry no provider.Code (provider.CodeOf fails); want every error to wrap one of the contract's sentinels. First ones:\n\t%s",
			uncoded, total, strings.Join(examples, "\n\t"))
	}
	for _, at := range ats {
		f.add(wantAnyCode(at.what, at.err, at.out))
	}
	return f.err()
}

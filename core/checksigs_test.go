package core_test

import (
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// TestCheckSignaturesPolicy is the trade-off of Config.CheckSignatures
// (the daemon's [provider] verify_signatures): a provider that returns a
// signature that does not verify under the key's stored public key (a
// bit flipped: what a buggy or compromised plugin can do) has it withheld
// with EIO when the check is on; with the check off the caller gets it,
// and it fails verification (EBADMSG) as any wrong signature does. It
// never verifies either way: turning the check off lets a wrong
// signature out, never a forged-looking valid one.
func TestCheckSignaturesPolicy(t *testing.T) {
	base := newEnv(t)
	for _, check := range []bool{true, false} {
		p := &badSigner{Provider: base.p}
		e := newEnvWith(t, storage.NewMemory(), p, func(c *core.Config) { c.CheckSignatures = check })
		id := e.create(t, appA, "app-a/s/k", provider.Ed25519)
		msg := []byte("m")
		good, err := e.ks.Sign(ctx, appA, id, msg)
		if err != nil {
			t.Fatalf("check=%v: Sign with a sound provider: %v", check, err)
		}
		if err := e.ks.Verify(ctx, appA, id, good.Version, msg, good.Signature); err != nil {
			t.Fatalf("check=%v: a sound signature does not verify: %v", check, err)
		}
		p.bad.Store(true)
		sig, err := e.ks.Sign(ctx, appA, id, msg)
		if check {
			if codeOf(err) != provider.EIO || sig.Signature != nil {
				t.Errorf("check on: Sign with a faulty provider = %x, %v; want EIO and nothing", sig.Signature, err)
			}
			continue
		}
		if err != nil || len(sig.Signature) == 0 {
			t.Fatalf("check off: Sign with a faulty provider = %x, %v; want its signature", sig.Signature, err)
		}
		if err := e.ks.Verify(ctx, appA, id, sig.Version, msg, sig.Signature); codeOf(err) != provider.EBADMSG {
			t.Errorf("check off: the faulty signature verifies (%v); want EBADMSG", err)
		}
	}
}

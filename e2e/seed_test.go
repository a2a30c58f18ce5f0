package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// testSeed is the INSECURE test seed of the deterministic runs.
const testSeed = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// outputs is what one seeded daemon produced.
type outputs struct {
	pub, sig, sealed, pub2, sig2, ctlSig []byte
}

func seededRun(t *testing.T) outputs {
	t.Helper()
	ctx := context.Background()
	d := start(t, daemontest.InsecureSeed(testSeed)...)
	c := dial(t, d)
	k, err := c.Create(ctx, "p/sig", client.CreateOptions{Algorithm: client.Ed25519})
	if err != nil {
		t.Fatal(err)
	}
	if !k.Insecure || !c.Insecure() {
		t.Errorf("seeded daemon: KeyInfo.Insecure = %v, Client.Insecure() = %v; want both true", k.Insecure, c.Insecure())
	}
	if _, err := c.Create(ctx, "p/box", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var o outputs
	pub, err := c.PublicKey(ctx, "p/sig", 0)
	if err != nil {
		t.Fatal(err)
	}
	o.pub = pub.Raw
	s, err := c.Sign(ctx, "p/sig", []byte("message"))
	if err != nil {
		t.Fatal(err)
	}
	o.sig = s.Signature
	sealed, err := c.Seal(ctx, "p/box", []byte("plaintext"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	o.sealed = sealed.Data
	if _, err := c.Rotate(ctx, "p/sig"); err != nil {
		t.Fatal(err)
	}
	pub2, err := c.PublicKey(ctx, "p/sig", 2)
	if err != nil {
		t.Fatal(err)
	}
	o.pub2 = pub2.Raw
	s2, err := c.Sign(ctx, "p/sig", []byte("message"))
	if err != nil {
		t.Fatal(err)
	}
	o.sig2 = s2.Signature
	r := ctlOK(t, d, []byte("message"), "sign", "p/sig")
	o.ctlSig = r.stdout
	if !strings.Contains(r.stderr, "INSECURE") {
		t.Errorf("keystorectl against a seeded daemon: stderr %q lacks the INSECURE warning", r.stderr)
	}
	d.Stop()
	return o
}

// Two daemons on the same INSECURE seed, in fresh state directories, give
// byte-identical public keys, signatures and sealed data.
func TestDeterministicSeed(t *testing.T) {
	a := seededRun(t)
	b := seededRun(t)
	for _, f := range []struct {
		name string
		a, b []byte
	}{
		{"public key v1", a.pub, b.pub},
		{"signature v1", a.sig, b.sig},
		{"sealed", a.sealed, b.sealed},
		{"public key v2", a.pub2, b.pub2},
		{"signature v2", a.sig2, b.sig2},
		{"keystorectl signature", a.ctlSig, b.ctlSig},
	} {
		if len(f.a) == 0 || !bytes.Equal(f.a, f.b) {
			t.Errorf("%s differs between runs:\n%x\n%x", f.name, f.a, f.b)
		}
	}
	if bytes.Equal(a.pub, a.pub2) {
		t.Error("versions 1 and 2 share a public key")
	}
	if !bytes.Equal(a.sig2, a.ctlSig) {
		t.Error("client and keystorectl signatures differ under the same version")
	}
}

package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/internal/daemontest"
)

// Through keystorectl: stop the daemon, start it on the same state, and
// every key, version and state is back; old signatures verify and old
// sealed data unseals.
func TestRestartCLI(t *testing.T) {
	state := t.TempDir()
	d := daemontest.Start(t, daemontest.Options{State: state})
	ctlOK(t, d, nil, "create", "p/sig", "--alg", "ed25519")
	ctlOK(t, d, nil, "create", "p/box")
	ctlOK(t, d, nil, "create", "p/gone", "--alg", "ed25519")
	sig := ctlOK(t, d, []byte("m"), "sign", "p/sig").stdout
	sealed := ctlOK(t, d, []byte("secret"), "seal", "p/box", "--aad", "a").stdout
	ctlOK(t, d, nil, "rotate", "p/sig")
	ctlOK(t, d, nil, "revoke", "p/gone")
	before := ctlOK(t, d, nil, "--json", "list").stdout
	pub := ctlOK(t, d, nil, "pubkey", "p/sig@1").stdout
	d.Stop()

	d2 := daemontest.Start(t, daemontest.Options{State: state})
	if after := ctlOK(t, d2, nil, "--json", "list").stdout; !bytes.Equal(before, after) {
		t.Errorf("keys after restart differ:\n%s\n%s", before, after)
	}
	if got := ctlOK(t, d2, nil, "pubkey", "p/sig@1").stdout; !bytes.Equal(got, pub) {
		t.Errorf("public key of version 1 changed across restart")
	}
	ctlOK(t, d2, []byte("m"), "verify", "p/sig@1", "--sig", writeTemp(t, sig))
	if r := ctlOK(t, d2, sealed, "unseal", "p/box", "--aad", "a"); string(r.stdout) != "secret" {
		t.Errorf("unseal after restart = %q", r.stdout)
	}
	if r := ctlOK(t, d2, []byte("m"), "sign", "p/sig"); !strings.Contains(r.stderr, "@2") {
		t.Errorf("sign after restart: %q, want version 2", r.stderr)
	}
	ctlFails(t, d2, []byte("m"), 128, "EKEYREVOKED", "sign", "p/gone")
	d2.Stop()
}

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
)

// The interop check, exactly: keystorectl's PEM read by openssl
// pkey, a keystorectl signature verified by openssl pkeyutl -rawin.
func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: apt-get install openssl")
	}
	d := start(t)
	c := dial(t, d)
	if _, err := c.Create(context.Background(), "p/sig", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pem, msg, sig := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "sig")
	ctlOK(t, d, nil, "pubkey", "p/sig", "--format", "pem", "--json") // the JSON form works too
	if err := os.WriteFile(pem, ctlOK(t, d, nil, "pubkey", "p/sig", "--format", "pem").stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msg, []byte("signed by keystored\x00\xff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctlOK(t, d, nil, "sign", "p/sig", "--in", msg, "--out", sig)

	if out, err := exec.Command(openssl, "pkey", "-pubin", "-in", pem, "-noout").CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey -pubin: %v\n%s", err, out)
	}
	out, err := exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", msg, "-sigfile", sig).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Signature Verified Successfully") {
		t.Fatalf("openssl pkeyutl -verify: %v\n%s", err, out)
	}
	// And openssl refuses a signature over another message.
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("something else"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", other, "-sigfile", sig).CombinedOutput(); err == nil {
		t.Errorf("openssl verified a signature over another message:\n%s", out)
	}
}

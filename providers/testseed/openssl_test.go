package testseed

import (
	"bytes"
	"context"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// TestHMACOpenSSL: the provider's HMAC tags equal those of `openssl dgst
// -<hash> -mac HMAC -macopt hexkey:<key>`, with the key the test knows
// (the key's INSECURE known material), for an empty message, the golden
// message and MaxMACMessage bytes. It skips, saying so, without openssl
// (.ci/run installs it).
func TestHMACOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: cannot compare HMAC tags with it (.ci/run installs it)")
	}
	p := newTest(t, goldenSeed)
	ctx := context.Background()
	big := make([]byte, provider.MaxMACMessage)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, c := range []struct {
		a    provider.Algorithm
		hash string
	}{{provider.HMACSHA256, "-sha256"}, {provider.HMACSHA384, "-sha384"}, {provider.HMACSHA512, "-sha512"}} {
		r := goldenRef(t, c.a)
		g, err := p.Generate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		known, err := InsecureKnownSecrets(goldenSeed, r)
		if err != nil {
			t.Fatal(err)
		}
		key := hex.EncodeToString(known[0])
		for _, msg := range [][]byte{nil, goldenMessage, big} {
			tag, err := p.MAC(ctx, r, g.Handle, msg)
			if err != nil {
				t.Fatalf("%s: MAC of %d bytes: %v", c.a, len(msg), err)
			}
			cmd := exec.CommandContext(t.Context(), bin, "dgst", c.hash, "-mac", "HMAC", "-macopt", "hexkey:"+key)
			cmd.Stdin = bytes.NewReader(msg)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl dgst %s -mac HMAC: %v: %s", c.hash, err, stderr.String())
			}
			// "HMAC-SHA2-256(stdin)= <hex>" (the label varies by version).
			fields := strings.Fields(string(out))
			if len(fields) == 0 {
				t.Fatalf("openssl printed nothing")
			}
			if got, want := fields[len(fields)-1], hex.EncodeToString(tag); got != want {
				t.Errorf("%s over %d bytes: openssl says %s, the provider %s", c.a, len(msg), got, want)
			}
		}
	}
}

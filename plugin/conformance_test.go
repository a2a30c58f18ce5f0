package plugin

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
)

// inProcessSoftware serves a fresh software provider through the wire
// protocol inside the test process.
func inProcessSoftware(t *testing.T) provider.Provider {
	p, err := software.New(software.Config{KEKFile: filepath.Join(t.TempDir(), "kek"), Create: true})
	if err != nil {
		t.Fatalf("software.New: %v", err)
	}
	return TestClient(t, p)
}

// TestConformanceInProcess runs the provider and keystore suites against
// the software provider across the wire protocol, in process; over a KEK
// file it rotates its KEK, so the provider suite's KEKRotation runs over
// the KEK rotation RPCs.
func TestConformanceInProcess(t *testing.T) {
	t.Parallel()
	t.Run("Provider", func(t *testing.T) { conformance.Run(t, inProcessSoftware, conformance.WithImport()) })
	t.Run("Keystore", func(t *testing.T) { conformance.RunKeystore(t, inProcessSoftware, conformance.WithImport()) })
}

// TestConformanceSoftwarePlugin runs both suites against the real
// keystore-plugin-software binary as a subprocess. The provider suite
// gets a fresh plugin process each time it asks (its KEKRotation rotates
// the plugin's KEK file through Client.Provider's provider.KEKRotator);
// the keystore suite's subtests share one (each has its own storage and
// keys), which saves a launch per subtest.
func TestConformanceSoftwarePlugin(t *testing.T) {
	t.Parallel()
	t.Run("Provider", func(t *testing.T) {
		conformance.Run(t, func(t *testing.T) provider.Provider { return softwarePlugin(t, Config{}).Provider() }, conformance.WithImport())
	})
	t.Run("Keystore", func(t *testing.T) {
		shared := softwarePlugin(t, Config{}).Provider()
		conformance.RunKeystore(t, func(*testing.T) provider.Provider { return shared }, conformance.WithImport())
	})
}

// testSeed is the seed the testseed plugin runs with in these tests.
var testSeed = []byte("plugin-package-insecure-test-seed")

// testseedPlugin launches the INSECURE testseed plugin binary with
// testSeed.
func testseedPlugin(t testing.TB, cfg Config) *Client {
	t.Helper()
	_, ts, _ := binaries(t)
	cfg.Args = append([]string{"--insecure", "--seed", hex.EncodeToString(testSeed)}, cfg.Args...)
	return launch(t, ts, cfg)
}

// TestConformanceTestseedPlugin runs both suites against the real
// keystore-plugin-testseed binary, with its known secrets.
func TestConformanceTestseedPlugin(t *testing.T) {
	t.Parallel()
	factory := func(t *testing.T) provider.Provider { return testseedPlugin(t, Config{}) }
	known := conformance.WithKnownSecrets(func(ref provider.KeyRef) ([][]byte, error) {
		return testseed.InsecureKnownSecrets(testSeed, ref)
	})
	t.Run("Provider", func(t *testing.T) { conformance.Run(t, factory, known, conformance.WithImport()) })
	t.Run("Keystore", func(t *testing.T) {
		shared := testseedPlugin(t, Config{})
		conformance.RunKeystore(t, func(*testing.T) provider.Provider { return shared }, known, conformance.WithImport())
	})
}

// TestDigestAndMACThroughPluginProcesses: a keystore over the software
// plugin (its Client.Provider(), a rotatingClient) and over the testseed
// plugin (a plain Client) signs digests and MACs through the plugin
// process: an ECDSA signature of a digest verifies with crypto/ecdsa, the
// same signature as of the message; a MAC tag verifies with VerifyMAC, a
// changed one does not.
func TestDigestAndMACThroughPluginProcesses(t *testing.T) {
	t.Parallel()
	for name, p := range map[string]func(t *testing.T) provider.Provider{
		"Software": func(t *testing.T) provider.Provider {
			rc := softwarePlugin(t, Config{}).Provider()
			if _, ok := rc.(rotatingClient); !ok {
				t.Fatalf("the software plugin's Provider() is a %T, want rotatingClient", rc)
			}
			return rc
		},
		"Testseed": func(t *testing.T) provider.Provider { return testseedPlugin(t, Config{}) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ks := openKeystore(t, p(t))
			ctx := t.Context()
			sid, err := provider.NewKeyID("app", "digest", "ecdsa")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ks.Create(ctx, testCaller, sid, core.CreateOptions{Algorithm: provider.ECDSAP256}); err != nil {
				t.Fatalf("create %s: %v", sid, err)
			}
			msg := []byte("a release artifact, hashed by the caller")
			d := sha256.Sum256(msg)
			sig, err := ks.SignWith(ctx, testCaller, sid, 0, core.SignInput{Digest: d[:], Hash: crypto.SHA256})
			if err != nil {
				t.Fatalf("SignWith digest: %v", err)
			}
			pk, err := ks.PublicKey(ctx, testCaller, sid, sig.Version)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pk.Key)
			if err != nil {
				t.Fatalf("public key of %d bytes is not a P-256 point: %v", len(pk.Key), err)
			}
			if !ecdsa.VerifyASN1(pub, d[:], sig.Signature) {
				t.Error("the digest's signature does not verify with crypto/ecdsa")
			}
			if err := ks.Verify(ctx, testCaller, sid, sig.Version, msg, sig.Signature); err != nil {
				t.Errorf("the digest's signature does not verify as the message's: %v", err)
			}

			mid, err := provider.NewKeyID("app", "mac", "hmac")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ks.Create(ctx, testCaller, mid, core.CreateOptions{Algorithm: provider.HMACSHA256}); err != nil {
				t.Fatalf("create %s: %v", mid, err)
			}
			tag, err := ks.MAC(ctx, testCaller, mid, msg)
			if err != nil || len(tag.Tag) != sha256.Size {
				t.Fatalf("MAC = %d bytes, %v; want %d", len(tag.Tag), err, sha256.Size)
			}
			if err := ks.VerifyMAC(ctx, testCaller, mid, tag.Version, msg, tag.Tag); err != nil {
				t.Errorf("VerifyMAC of the tag: %v", err)
			}
			tag.Tag[0] ^= 1
			if err := ks.VerifyMAC(ctx, testCaller, mid, tag.Version, msg, tag.Tag); !errorsIsCode(err, provider.EBADMSG) {
				t.Errorf("VerifyMAC of a changed tag: %v, want EBADMSG", err)
			}
		})
	}
}

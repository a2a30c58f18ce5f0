package plugin

import (
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/conformance"
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
// the software provider across the wire protocol, in process.
func TestConformanceInProcess(t *testing.T) {
	t.Parallel()
	t.Run("Provider", func(t *testing.T) { conformance.Run(t, inProcessSoftware) })
	t.Run("Keystore", func(t *testing.T) { conformance.RunKeystore(t, inProcessSoftware) })
}

// TestConformanceSoftwarePlugin runs both suites against the real
// keystore-plugin-software binary as a subprocess. The provider suite
// gets a fresh plugin process each time it asks; the keystore suite's
// subtests share one (each has its own storage and keys), which saves a
// launch per subtest.
func TestConformanceSoftwarePlugin(t *testing.T) {
	t.Parallel()
	t.Run("Provider", func(t *testing.T) {
		conformance.Run(t, func(t *testing.T) provider.Provider { return softwarePlugin(t, Config{}) })
	})
	t.Run("Keystore", func(t *testing.T) {
		shared := softwarePlugin(t, Config{})
		conformance.RunKeystore(t, func(*testing.T) provider.Provider { return shared })
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
	t.Run("Provider", func(t *testing.T) { conformance.Run(t, factory, known) })
	t.Run("Keystore", func(t *testing.T) {
		shared := testseedPlugin(t, Config{})
		conformance.RunKeystore(t, func(*testing.T) provider.Provider { return shared }, known)
	})
}

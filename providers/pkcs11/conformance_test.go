package pkcs11

import (
	"slices"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
)

// quickAlgorithms are the algorithms of SoftHSM2 but RSA-3072 and
// RSA-4096, whose keys SoftHSM2 takes 0.3 to 3 s each to generate
// (against 0.1 to 0.3 s for RSA-2048 and milliseconds for the others)
// and which differ from RSA-2048 only in CKA_MODULUS_BITS. The suites
// run every algorithm, and these only in -short mode; tests of this
// package that need no RSA-3072 or RSA-4096 use them.
var quickAlgorithms = slices.DeleteFunc(slices.Clone(softhsmAlgorithms), func(a provider.Algorithm) bool {
	return strings.HasPrefix(string(a), "rsa-3072-") || strings.HasPrefix(string(a), "rsa-4096-")
})

// quick limits a provider to quickAlgorithms (Config.Algorithms).
func quick(c *Config) { c.Algorithms = slices.Clone(quickAlgorithms) }

// quickArgs is quick for the plugin binary.
func quickArgs() []string {
	names := make([]string, len(quickAlgorithms))
	for i, a := range quickAlgorithms {
		names[i] = string(a)
	}
	return []string{"--algorithms", strings.Join(names, ",")}
}

// suiteConfig is the provider configuration of the conformance suites:
// every algorithm the token supports, or in -short mode quickAlgorithms.
func suiteConfig(t *testing.T) []func(*Config) {
	if testing.Short() {
		t.Log("-short: RSA-3072 and RSA-4096 left out")
		return []func(*Config){quick}
	}
	return nil
}

// suiteArgs is suiteConfig for the plugin binary.
func suiteArgs(t *testing.T) []string {
	if testing.Short() {
		t.Log("-short: RSA-3072 and RSA-4096 left out")
		return quickArgs()
	}
	return nil
}

// TestConformance runs the provider suite against the provider in this
// process, on a throwaway SoftHSM2 token.
func TestConformance(t *testing.T) {
	tk := newToken(t, "conformance")
	edit := suiteConfig(t)
	conformance.Run(t, func(t *testing.T) provider.Provider { return tk.open(t, edit...) }, conformance.WithImport(provider.Ed25519))
}

// TestConformanceKeystore runs the keystore-level suite (a core.Keystore
// over the provider) on a throwaway SoftHSM2 token.
func TestConformanceKeystore(t *testing.T) {
	tk := newToken(t, "keystore")
	edit := suiteConfig(t)
	conformance.RunKeystore(t, func(t *testing.T) provider.Provider { return tk.open(t, edit...) }, conformance.WithImport(provider.Ed25519))
}

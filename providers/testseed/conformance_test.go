package testseed

import (
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
)

// TestConformance runs the provider suite against testseed providers, all
// with the golden seed, and lets it search for the known secrets.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) provider.Provider {
		p, err := NewInsecure(goldenSeed)
		if err != nil {
			t.Fatalf("NewInsecure: %v", err)
		}
		return p
	}, conformance.WithKnownSecrets(func(ref provider.KeyRef) ([][]byte, error) {
		return InsecureKnownSecrets(goldenSeed, ref)
	}), conformance.WithImport())
}

// TestKeystoreConformance runs the keystore-level suite over testseed,
// including its determinism check (two fresh keystores, same outputs).
func TestKeystoreConformance(t *testing.T) {
	conformance.RunKeystore(t, func(t *testing.T) provider.Provider {
		p, err := NewInsecure(goldenSeed)
		if err != nil {
			t.Fatalf("NewInsecure: %v", err)
		}
		return p
	}, conformance.WithImport())
}

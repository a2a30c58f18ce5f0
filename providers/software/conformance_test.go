package software

import (
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
)

// TestConformance runs the provider suite against software providers, each
// with a fresh KEK file.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) provider.Provider {
		p, err := New(Config{KEKFile: filepath.Join(t.TempDir(), "kek"), Create: true})
		if err != nil {
			t.Fatalf("software.New: %v", err)
		}
		return p
	}, conformance.WithImport())
}

// TestKeystoreConformance runs the keystore-level suite (the host
// behaviours: sign/verify, rotate, revoke, seal/unseal, destroy, reopen)
// over the software provider.
func TestKeystoreConformance(t *testing.T) {
	conformance.RunKeystore(t, func(t *testing.T) provider.Provider {
		p, err := New(Config{KEKFile: filepath.Join(t.TempDir(), "kek"), Create: true})
		if err != nil {
			t.Fatalf("software.New: %v", err)
		}
		return p
	}, conformance.WithImport())
}

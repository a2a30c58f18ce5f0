package pkcs11

import (
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
)

// TestConformance runs the provider suite against the provider in this
// process, on a throwaway SoftHSM2 token.
func TestConformance(t *testing.T) {
	tk := newToken(t, "conformance")
	conformance.Run(t, func(t *testing.T) provider.Provider { return tk.open(t) })
}

// TestConformanceKeystore runs the keystore-level suite (a core.Keystore
// over the provider) on a throwaway SoftHSM2 token.
func TestConformanceKeystore(t *testing.T) {
	tk := newToken(t, "keystore")
	conformance.RunKeystore(t, func(t *testing.T) provider.Provider { return tk.open(t) })
}

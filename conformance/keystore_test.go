package conformance_test

import (
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
)

func TestKeystoreSoftware(t *testing.T) {
	conformance.RunKeystore(t, func(t *testing.T) provider.Provider {
		p, err := software.New(software.Options{KEK: secret.New(make([]byte, 32))})
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

func TestKeystoreTestseed(t *testing.T) {
	conformance.RunKeystore(t, func(t *testing.T) provider.Provider {
		p, err := testseed.NewInsecure([]byte("conformance keystore seed"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

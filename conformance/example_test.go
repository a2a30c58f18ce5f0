package conformance_test

import (
	"fmt"
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
)

// A provider's package runs the whole suite from one test function. The
// factory returns a fresh provider each time it is called.
func ExampleRun() {
	testConformance := func(t *testing.T) {
		conformance.Run(t, func(t *testing.T) provider.Provider {
			kek := make([]byte, 32) // a fixed KEK: fine for a test, never for real keys
			p, err := software.New(software.Config{KEK: secret.New(kek)})
			if err != nil {
				t.Fatal(err)
			}
			return p
		})
	}
	// In a real package this is func TestConformance(t *testing.T).
	fmt.Printf("%T\n", testConformance)
	// Output: func(*testing.T)
}

// A provider whose keys are predictable tells the suite its private
// material, so the suite can search every output for it. Only the INSECURE
// deterministic test provider can.
func ExampleWithKnownSecrets() {
	seed := []byte("example-insecure-seed")
	testConformance := func(t *testing.T) {
		conformance.Run(t,
			func(t *testing.T) provider.Provider {
				p, err := testseed.NewInsecure(seed)
				if err != nil {
					t.Fatal(err)
				}
				return p
			},
			conformance.WithKnownSecrets(func(ref provider.KeyRef) ([][]byte, error) {
				return testseed.InsecureKnownSecrets(seed, ref)
			}),
		)
	}
	fmt.Printf("%T\n", testConformance)
	// Output: func(*testing.T)
}

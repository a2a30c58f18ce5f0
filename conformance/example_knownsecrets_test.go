package conformance_test

import (
	"fmt"
	"testing"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/testseed"
)

// exampleSeed is the seed of the INSECURE provider below: anyone who knows
// it knows every private key the provider makes.
var exampleSeed = []byte("example-insecure-seed")

// knownSecrets tells the suite a key's private material.
func knownSecrets(ref provider.KeyRef) ([][]byte, error) {
	return testseed.InsecureKnownSecrets(exampleSeed, ref)
}

// testTestseed is the INSECURE deterministic provider's conformance test
// (TestTestseedInsecure runs it): WithKnownSecrets lets the suite search
// every handle, output, error and printed value for the private bytes.
func testTestseed(t *testing.T, opts ...conformance.Option) {
	conformance.Run(t,
		func(t *testing.T) provider.Provider {
			p, err := testseed.NewInsecure(exampleSeed)
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		append(opts, conformance.WithKnownSecrets(knownSecrets))...,
	)
}

// A provider whose keys are predictable tells the suite its private
// material, as testTestseed does; only the INSECURE deterministic test
// provider can. For an Ed25519 key that is the seed and the expanded
// private key, which the suite then looks for in raw, hex, base64 and Go's
// printed forms.
func ExampleWithKnownSecrets() {
	id, err := provider.NewKeyID("example", "signing", "k")
	if err != nil {
		fmt.Println(err)
		return
	}
	ref := provider.KeyRef{ID: id, Version: 1, Algorithm: provider.Ed25519, Use: provider.UseSign, Provider: testseed.Name}
	secrets, err := knownSecrets(ref)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range secrets {
		fmt.Println(len(s), "bytes")
	}
	// Output:
	// 32 bytes
	// 64 bytes
}

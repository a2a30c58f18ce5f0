// Package conformance is the test suite every keystored provider must
// pass, in process and through the plugin boundary alike. Like
// testing/fstest.TestFS it has one entry point, [Run], which takes a
// [Factory] of fresh providers and checks each requirement of the
// [provider.Provider] contract in its own subtest; [RunKeystore] runs a
// [core.Keystore] over the provider. A provider's package adds one test
// and runs it under the race detector:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) provider.Provider { return newMyProvider(t) })
//	}
//
// A provider whose keys are predictable passes [WithKnownSecrets], so the
// suite can search its outputs for private key bytes. The example of Run
// is a whole in-memory provider that passes both suites.
// docs/providers.md lists every subtest and what it requires.
package conformance

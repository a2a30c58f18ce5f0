// Package conformance is the test suite every keystored provider must
// pass, in-process and through the plugin boundary alike. It is written
// like testing/fstest.TestFS and x/net/nettest.TestConn: one exported entry
// point, Run, that takes a factory of fresh providers and checks each
// requirement of the provider contract (package core/provider) in its own
// subtest.
//
// # Running it
//
// A provider author adds one test to the provider's package:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) provider.Provider {
//			p, err := myprovider.New(myprovider.Options{...})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { p.Close() }) // whatever the provider needs
//			return p
//		})
//	}
//
// and runs it under the race detector:
//
//	go test -race -run TestConformance ./myprovider
//
// A single requirement runs alone with -run, for example
// -run 'TestConformance/Seal/aes-256-gcm/Tamper'. A provider whose keys are
// predictable (the insecure deterministic test provider) passes
// WithKnownSecrets so that the suite can search its outputs for private
// key bytes.
//
// # What it checks
//
// Subtests, per announced algorithm where the name has one:
//
//   - Info: well formed (Info.Check), a segment as name, at least one
//     algorithm, each known to alg.Default(), the same on every call.
//   - Generate/<alg>/Sizes, DistinctKeys: public key of the algorithm's
//     size (none for an AEAD), a handle of 1 to MaxHandle bytes, different
//     keys for different refs.
//   - Sign/<alg>/Verify, TooLarge, OtherKey: signatures of 0, 1 and
//     MaxSignMessage bytes verify with an implementation independent of
//     keystored (crypto/ed25519, cloudflare/circl); MaxSignMessage+1 bytes
//     fail with ErrTooLarge; a signature does not verify under another
//     key.
//   - Seal/<alg>/RoundTrip, TooLarge, Randomized, Tamper, Truncate, Extend,
//     WrongAAD: round trips at the size bounds with exact output lengths
//     (nonce + plaintext + tag); over-bound inputs fail with ErrTooLarge;
//     repeated seals differ unless the provider is Deterministic; every
//     bit-flipped, truncated or extended blob and every wrong AAD fails
//     with ErrBadMessage and no output.
//   - WrongUse/<alg>: Seal or Open with a signature key, Sign with an AEAD
//     key fail with ErrPermission, with the key's own ref and with its
//     handle under a ref whose use was switched.
//   - HandleBinding/<alg>/<field>: a handle presented under a ref that
//     differs in one field (app ID, purpose, name, version, algorithm, use,
//     provider) fails in every operation, Destroy included.
//   - CorruptHandle/<alg>/...: random, truncated, bit-flipped, extended and
//     oversize handles fail without a panic.
//   - Unsupported, ProviderMismatch, InvalidRef: ErrNotSupported for an
//     algorithm not announced; an error for another provider's ref;
//     ErrInvalid for a ref that fails KeyRef.Check, in every method.
//   - Destroy/<alg>: ErrNotFound after Destroy, Destroy again succeeds,
//     other keys unaffected.
//   - Context: calls with a cancelled or expired context fail with a coded
//     error and return (a call still running after 30 s fails the test as
//     hung; this detects hangs and is no timing requirement).
//   - Concurrency: 16 goroutines use shared and fresh keys at once; every
//     result verifies.
//   - NoSecretsInOutputs, Redaction (need WithKnownSecrets): no known
//     secret, raw, hex, base64 or as Go prints bytes, in handles, public
//     keys, signatures, sealed blobs, error messages or the printed
//     provider value.
//   - NoPayloadsInErrors: errors do not echo messages, plaintexts or AAD.
//   - Deterministic (only when announced): two fresh providers give
//     identical keys, handles, signatures and sealed bytes whatever the
//     generation order.
//   - ErrorCodes (last): every error returned during the run carries a
//     valid provider.Code, and no call panicked.
//
// A subtest that does not apply is skipped with the reason. The suite
// recovers a panic in a provider call and reports it as a failure of the
// subtest that made the call.
//
// Keys the suite makes are named conformance/<check>/<algorithm>-<name>,
// version 1, for the provider name Info announces. The suite takes a few
// seconds per provider under -race.
package conformance

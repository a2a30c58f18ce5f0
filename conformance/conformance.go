package conformance

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// Factory returns a fresh provider for one test. It registers whatever
// cleanup the provider needs with t.Cleanup. For a deterministic provider
// every provider it returns must be configured alike (same seed), so the
// suite can compare two of them.
type Factory func(t *testing.T) provider.Provider

// Option configures Run (and the other suites of this package).
type Option func(*options)

type options struct {
	knownSecrets func(ref provider.KeyRef) ([][]byte, error)
	freshKeys    bool
	hang         time.Duration        // 0: provHangLimit; the suite's own tests shorten it
	only         []provider.Algorithm // nil: every announced algorithm; the suite's own tests narrow it
	imports      *importRule          // WithImport; nil: import may be ENOTSUP
}

// importRule is WithImport's: the provider must import every announced
// algorithm that has an import format but those in except, which must be
// ENOTSUP.
type importRule struct{ except []provider.Algorithm }

// requires reports whether the rule makes import of a mandatory (true) or
// an ENOTSUP (false); ok is false without a rule.
func (r *importRule) requires(a provider.Algorithm) (must, ok bool) {
	if r == nil {
		return false, false
	}
	return !slices.Contains(r.except, a), true
}

// WithKnownSecrets tells the suite the private material the provider holds
// for a key: f returns, for a KeyRef the suite generated, every secret byte
// string of that key (a seed, an AEAD key). The suite then searches
// handles, public keys, signatures, sealed blobs, error messages and the
// printed provider value for each secret in raw, hex (both cases), base64
// (standard and URL, padded or not) and Go's %v / %#v / %q forms.
//
// Only a provider whose keys are predictable can offer f (the insecure
// deterministic test provider); without it those subtests are skipped.
func WithKnownSecrets(f func(ref provider.KeyRef) ([][]byte, error)) Option {
	return func(o *options) { o.knownSecrets = f }
}

// WithFreshKeys makes every check generate keys of its own, whatever the
// algorithm. By default the keys of algorithms whose generation is
// expensive (alg.Spec.GenerateCost of at least 100 Ed25519 key
// generations: RSA) are made a few times per run and shared by the checks
// that do not need a fresh key (see docs/providers.md); with this option a
// run over a provider that offers RSA takes minutes.
func WithFreshKeys() Option {
	return func(o *options) { o.freshKeys = true }
}

// WithImport says the provider imports keys (NewImportKey and Import):
// every announced algorithm with an import format (alg.Spec.Importable)
// but those in except, which it must refuse with ENOTSUP (a token that
// cannot unwrap that key type). Without it the suite accepts a provider
// that answers ENOTSUP, consistently, for any algorithm or for import as a
// whole, and skips those checks saying so; with it that is a failure, so
// an import that breaks into ENOTSUP cannot pass unnoticed.
func WithImport(except ...provider.Algorithm) Option {
	return func(o *options) { o.imports = &importRule{except: except} }
}

// Run checks that the providers newProvider returns keep the provider
// contract (package core/provider), with one subtest per requirement.
//
// It calls newProvider once for the bulk of the suite, twice more to
// compare fresh providers when the provider announces Deterministic, and
// once more to rotate a KEK when the provider implements
// provider.KEKRotator. It
// exercises every algorithm the provider announces, with sizes from
// core/alg, and verifies every signature and tag with an implementation
// independent of keystored (crypto/ed25519, crypto/ecdsa, crypto/rsa,
// crypto/hmac and cloudflare/circl). Keys of algorithms that are slow to
// generate (RSA) are shared between the checks that need no fresh key,
// unless WithFreshKeys is given.
func Run(t *testing.T, newProvider Factory, opts ...Option) {
	t.Helper()
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	s, err := newProvSuite(t.Context(), newProvider(t), o)
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}

	t.Run("Info", s.test((*provSuite).checkInfo))
	for _, g := range provGroups() {
		s.perAlg(t, g)
	}
	for _, c := range provSingles() {
		t.Run(c.name, s.test(c.check))
	}
	t.Run("Deterministic", func(t *testing.T) {
		if !s.info.Deterministic {
			t.Skip("provider does not announce Deterministic: nothing to compare")
		}
		var fresh [2]*provSuite
		for i := range fresh {
			var err error
			fresh[i], err = newProvSuite(t.Context(), newProvider(t), o)
			if err != nil {
				t.Fatalf("fresh provider %d: %v", i+1, err)
			}
			fresh[i] = fresh[i].withLog(t.Logf)
		}
		report(t, checkDeterministic(t.Context(), fresh[0], fresh[1], s), nil)
	})
	t.Run("KEKRotation", func(t *testing.T) {
		// A fresh provider: a rotation changes its KEKs, which the
		// other checks hold stable.
		fresh, err := newProvSuite(t.Context(), newProvider(t), o)
		if err != nil {
			t.Fatalf("fresh provider: %v", err)
		}
		fresh = fresh.withLog(t.Logf)
		report(t, fresh.checkKEKRotation(t.Context()), fresh.tally)
	})
	// Last, so that it sees every error the subtests above provoked.
	t.Run("ErrorCodes", s.test((*provSuite).checkErrorCodes))
}

// provGroup is a set of requirements checked once per announced algorithm
// (of one use, or of every use when use is 0).
type provGroup struct {
	name   string
	use    provider.Use
	checks map[string]provCheckAlg
}

// provGroups lists the per-algorithm requirements in the order Run checks
// them.
func provGroups() []provGroup {
	return []provGroup{
		{"Generate", 0, map[string]provCheckAlg{
			"Sizes":        (*provSuite).checkGenerateSizes,
			"DistinctKeys": (*provSuite).checkDistinctKeys,
		}},
		{"Sign", provider.UseSign, map[string]provCheckAlg{
			"Verify":   (*provSuite).checkSignVerify,
			"TooLarge": (*provSuite).checkSignTooLarge,
			"OtherKey": (*provSuite).checkSignOtherKey,
		}},
		{"SignDigest", provider.UseSign, map[string]provCheckAlg{
			"Verify":  (*provSuite).checkSignDigestVerify,
			"Refused": (*provSuite).checkSignDigestRefused,
		}},
		{"MAC", provider.UseMAC, map[string]provCheckAlg{
			"Tag":      (*provSuite).checkMACTag,
			"TooLarge": (*provSuite).checkMACTooLarge,
			"OtherKey": (*provSuite).checkMACOtherKey,
			"Known":    (*provSuite).checkMACKnown,
		}},
		{"Seal", provider.UseDecrypt, map[string]provCheckAlg{
			"RoundTrip":  (*provSuite).checkSealRoundTrip,
			"TooLarge":   (*provSuite).checkSealTooLarge,
			"Randomized": (*provSuite).checkSealRandomized,
			"Tamper":     (*provSuite).checkSealTamper,
			"Truncate":   (*provSuite).checkSealTruncate,
			"Extend":     (*provSuite).checkSealExtend,
			"WrongAAD":   (*provSuite).checkSealWrongAAD,
		}},
		{"Decrypt", provider.UseAsymmetricDecrypt, map[string]provCheckAlg{
			"RoundTrip": (*provSuite).checkDecryptRoundTrip,
			"TooLarge":  (*provSuite).checkDecryptTooLarge,
			"Tamper":    (*provSuite).checkDecryptTamper,
			"WrongInfo": (*provSuite).checkDecryptWrongInfo,
			"WrongAAD":  (*provSuite).checkDecryptWrongAAD,
			"OtherKey":  (*provSuite).checkDecryptOtherKey,
			"Suite":     (*provSuite).checkDecryptSuite,
		}},
		{"WrongUse", 0, map[string]provCheckAlg{
			"Permission": (*provSuite).checkWrongUse,
		}},
		{"HandleBinding", 0, provBindingChecks()},
		{"CorruptHandle", 0, map[string]provCheckAlg{
			"Random":    (*provSuite).checkHandleRandom,
			"Truncated": (*provSuite).checkHandleTruncated,
			"BitFlip":   (*provSuite).checkHandleBitFlip,
			"Extended":  (*provSuite).checkHandleExtended,
			"Oversize":  (*provSuite).checkHandleOversize,
		}},
		{"Destroy", 0, map[string]provCheckAlg{
			"NotFound": (*provSuite).checkDestroy,
		}},
		{"Import", 0, map[string]provCheckAlg{
			"RoundTrip":     (*provSuite).checkImportRoundTrip,
			"OneTime":       (*provSuite).checkImportOneTime,
			"WrongMaterial": (*provSuite).checkImportWrongMaterial,
			"WrongInfo":     (*provSuite).checkImportWrongInfo,
			"Destroy":       (*provSuite).checkImportDestroy,
		}},
	}
}

// provNamed is a whole-provider requirement.
type provNamed struct {
	name  string
	check provCheck
}

// provSingles lists the whole-provider requirements Run checks after the
// per-algorithm ones (Info comes first; Deterministic and ErrorCodes last).
func provSingles() []provNamed {
	return []provNamed{
		{"ImportWrapping", (*provSuite).checkImportWrapping},
		{"Unsupported", (*provSuite).checkUnsupported},
		{"ProviderMismatch", (*provSuite).checkProviderMismatch},
		{"InvalidRef", (*provSuite).checkInvalidRef},
		{"Context", (*provSuite).checkContext},
		{"Concurrency", (*provSuite).checkConcurrency},
		{"NoSecretsInOutputs", (*provSuite).checkNoSecretsInOutputs},
		{"NoPayloadsInErrors", (*provSuite).checkNoPayloadsInErrors},
		{"Redaction", (*provSuite).checkRedaction},
	}
}

// provCheck is one requirement: nil when the provider keeps it, a
// *provSkip when it does not apply, any other error describing each
// violation.
type provCheck func(s *provSuite, ctx context.Context) error

// provCheckAlg is a requirement checked once per algorithm.
type provCheckAlg func(s *provSuite, ctx context.Context, a provider.Algorithm) error

// test adapts a check to t.Run.
func (s *provSuite) test(c provCheck) func(*testing.T) {
	return func(t *testing.T) {
		t.Helper()
		s := s.withLog(t.Logf)
		report(t, c(s, t.Context()), s.tally)
	}
}

// perAlg runs g as one subtest per announced algorithm of g's use, with
// one sub-subtest per check, in name order.
func (s *provSuite) perAlg(t *testing.T, g provGroup) {
	t.Helper()
	t.Run(g.name, func(t *testing.T) {
		algs := s.algsOf(g.use)
		if len(algs) == 0 {
			if g.use == 0 {
				t.Skip("provider announces no algorithm the registry knows")
			}
			t.Skipf("provider announces no %s algorithm", g.use)
		}
		for _, a := range algs {
			t.Run(string(a), func(t *testing.T) {
				for _, n := range slices.Sorted(maps.Keys(g.checks)) {
					c := g.checks[n]
					t.Run(n, func(t *testing.T) {
						s := s.withLog(t.Logf)
						report(t, c(s, t.Context(), a), s.tally)
					})
				}
			})
		}
	})
}

// report turns a check's result into a skip, a failure or nothing, and
// logs the codes of the calls that were expected to fail with any error.
func report(t *testing.T, err error, tally *provTally) {
	t.Helper()
	if tally != nil {
		if codes := tally.String(); codes != "" {
			t.Logf("expected failures, by code: %s", codes)
		}
	}
	var skip *provSkip
	if errors.As(err, &skip) {
		t.Skip(skip.reason)
	}
	if err != nil {
		t.Error(err)
	}
}

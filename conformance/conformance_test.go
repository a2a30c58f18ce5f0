package conformance_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-os/keystored/conformance"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
)

// testSeed is the seed of every testseed provider in these tests.
var testSeed = []byte("conformance-suite-test-seed")

// newSoftware returns a software provider with a fixed test KEK.
func newSoftware(t *testing.T) provider.Provider {
	t.Helper()
	p, err := software.New(software.Config{KEK: secret.New(bytes.Repeat([]byte{0x4b}, 32))})
	if err != nil {
		t.Fatalf("software.New: %v", err)
	}
	return p
}

// newSoftwareFile returns a software provider over a new KEK file: one
// that can rotate its KEK.
func newSoftwareFile(t *testing.T) provider.Provider {
	t.Helper()
	p, err := software.New(software.Config{KEKFile: filepath.Join(t.TempDir(), "kek"), Create: true})
	if err != nil {
		t.Fatalf("software.New: %v", err)
	}
	return p
}

// newTestseed returns an INSECURE testseed provider with testSeed.
func newTestseed(t *testing.T) provider.Provider {
	t.Helper()
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		t.Fatalf("testseed.NewInsecure: %v", err)
	}
	return p
}

// knownTestseed returns the private material of a testseed key.
func knownTestseed(ref provider.KeyRef) ([][]byte, error) {
	return testseed.InsecureKnownSecrets(testSeed, ref)
}

// quickAlgs are the registry's algorithms but RSA-3072 and RSA-4096, whose
// keys take up to seconds to make: the suite's own tests run over them
// (RSA-2048 still brings material, public keys and handles of varying
// size), the providers' packages over every algorithm.
var quickAlgs = func() []provider.Algorithm {
	var out []provider.Algorithm
	for _, a := range alg.Default().Names() {
		switch a {
		case provider.RSA3072PSS, provider.RSA3072PKCS1, provider.RSA4096PSS, provider.RSA4096PKCS1:
		default:
			out = append(out, a)
		}
	}
	return out
}()

// quick narrows a run of the suite to quickAlgs.
var quick = conformance.WithOnlyAlgorithms(quickAlgs...)

func TestSoftware(t *testing.T) {
	conformance.Run(t, newSoftware, quick)
}

// TestSoftwareKEKFile runs the suite over a KEK file, whose provider
// rotates its KEK (the KEKRotation subtest).
func TestSoftwareKEKFile(t *testing.T) {
	conformance.Run(t, newSoftwareFile, quick)
}

func TestTestseedInsecure(t *testing.T) { testTestseed(t, quick) }

// TestMemProvider runs the example provider (example_provider_test.go)
// through both suites.
func TestMemProvider(t *testing.T) { testMemProvider(t) }

// fault is a broken provider and the check that must notice.
type fault struct {
	name  string
	base  func(*testing.T) provider.Provider
	wrap  func(*testing.T, provider.Provider) provider.Provider
	check string             // CheckOne path
	alg   provider.Algorithm // for per-algorithm checks
	want  string             // a substring of the failure
}

func faults() []fault {
	known := knownTestseed
	return []fault{
		{"Open ignores the AAD", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return openIgnoresAAD{p} },
			"Seal/WrongAAD", provider.XChaCha20Poly1305, "got success"},
		{"Sign signs another message", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return signsOtherMessage{p} },
			"Sign/Verify", provider.Ed25519, "does not verify with the independent"},
		{"Sign signs another message (ML-DSA)", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return signsOtherMessage{p} },
			"Sign/Verify", provider.MLDSA65, "does not verify with the independent"},
		{"Sign truncates an oversize message", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return truncatesMessage{p} },
			"Sign/TooLarge", provider.Ed448, "got success"},
		{"Generate appends the secret to the handle", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider {
			return newLeaksSecretInHandle(p, known)
		}, "NoSecretsInOutputs", "", "the handle of conformance/secrets/"},
		{"errors without a code", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return uncodedErrors{p} },
			"ErrorCodes", "", "carry no provider.Code"},
		{"Seal repeats itself", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return newRepeatsSeals(p) },
			"Seal/Randomized", provider.AES256GCM, "returned the same bytes"},
		{"Destroy forgets nothing", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return forgetsDestroy{p} },
			"Destroy/NotFound", provider.Ed25519, "want an error wrapping ENOENT"},
		{"Destroy forgets nothing (AEAD)", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return forgetsDestroy{p} },
			"Destroy/NotFound", provider.ChaCha20Poly1305, "want an error wrapping ENOENT"},
		{"handles not bound to the version", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return ignoresVersion{p} },
			"HandleBinding/Version", provider.Ed25519, "got success"},
		{"zero version repaired", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return ignoresInvalidVersion{p} },
			"InvalidRef", "", "zero version"},
		{"wrong use is EINVAL", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return permissionAsInvalid{p} },
			"WrongUse/Permission", provider.AES256GCM, "want one wrapping EPERM"},
		{"context ignored", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return ignoresContext{p} },
			"Context", "", "got success"},
		{"Sign hangs on a cancelled context", newSoftware, func(t *testing.T, p provider.Provider) provider.Provider {
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			return hangsWhenCancelled{p, release}
		}, "Context", "", "(hang)"},
		{"Sign panics on a short handle", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return panicsOnShortHandle{p} },
			"CorruptHandle/Truncated", provider.Ed25519, "provider panicked in Sign"},
		{"Open returns output with its error", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return partialOpen{p} },
			"Seal/Tamper", provider.XChaCha20Poly1305, "want no output"},
		{"Info announces an unknown algorithm", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return infoWrapper{p, func(i provider.Info) provider.Info {
				i.Algorithms = append(i.Algorithms, "rot13")
				return i
			}}
		}, "Info", "", `holds "rot13"`},
		{"Info announces nothing", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return infoWrapper{p, func(i provider.Info) provider.Info { i.Algorithms = nil; return i }}
		}, "Info", "", "Algorithms is empty"},
		{"Info name is not a segment", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return infoWrapper{p, func(i provider.Info) provider.Info { i.Name = "Soft Ware"; return i }}
		}, "Info", "", "is not a segment"},
		{"Info changes", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return unstableInfo{p, &sync.Mutex{}, new(int)}
		}, "Info", "", "changed between calls"},
		{"Info shares its slice", newSoftware, func(t *testing.T, p provider.Provider) provider.Provider {
			info, err := p.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return sharesInfo{p, &info}
		}, "Info", "", "does Info share its Algorithms or KEKs slice?"},
		{"Info KEKs change", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return unstableKEKs{p, &sync.Mutex{}, new(int)}
		}, "Info", "", "the KEKs that wrap the handles may not change"},
		{"Info announces a malformed KEK", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return infoWrapper{p, func(i provider.Info) provider.Info { i.KEKs = append(i.KEKs, "NOT-HEX"); return i }}
		}, "Info", "", "invalid KEK fingerprint"},
		{"one key for every ref", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return sameKey{p, &sync.Mutex{}, map[provider.Algorithm]provider.Generated{}}
		}, "Generate/DistinctKeys", provider.MLDSA44, "returned the same public key"},
		{"one key for every ref (AEAD)", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return sameKey{p, &sync.Mutex{}, map[provider.Algorithm]provider.Generated{}}
		}, "Generate/DistinctKeys", provider.AES256GCM, "returned the same handle"},
		{"public key one byte short", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return shortPublicKey{p} },
			"Generate/Sizes", provider.Ed25519, "public key is 31 bytes, want 32"},
		{"keys for another provider", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider {
			return acceptsOtherProvider{p, software.Name}
		}, "ProviderMismatch", "", "got success"},
		{"unsupported is EINVAL", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return unsupportedAsInvalid{p} },
			"Unsupported", "", "want one wrapping ENOTSUP"},
		{"secrets printed", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider {
			return &leaksInFormat{Provider: p, known: known}
		}, "Redaction", "", "contains known secret"},
		{"KEK commit keeps the old KEK", newSoftwareFile, func(_ *testing.T, p provider.Provider) provider.Provider { return lazyCommit{p} },
			"KEKRotation", "", "want an error wrapping EIO"},
		{"KEK rewrap returns the handle as it was", newSoftwareFile, func(_ *testing.T, p provider.Provider) provider.Provider { return noRewrap{p} },
			"KEKRotation", "", "returned it unchanged"},
		{"payload in an error", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return echoesPayload{p} },
			"NoPayloadsInErrors", "", "contains its payload"},
		{"SignDigest signs another digest", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return signsOtherDigest{p} },
			"SignDigest/Verify", provider.ECDSAP256, "does not verify with the independent"},
		{"SignDigest signs another digest (RSA-PSS)", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return signsOtherDigest{p} },
			"SignDigest/Verify", provider.RSA2048PSS, "does not verify with the independent"},
		{"SignDigest hashes the digest again", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider { return digestOfMessage{p} },
			"SignDigest/Verify", provider.Ed25519ph, "does not verify with the independent"},
		{"SignDigest takes any hash", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return digestAnyHash{p} },
			"SignDigest/Refused", provider.ECDSAP384, "want an error wrapping EINVAL"},
		{"SignDigest for a pure-EdDSA key", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return digestOfMessage{p} },
			"SignDigest/Refused", provider.Ed25519, "want an error wrapping EPERM"},
		{"SignDigest wrong use is EINVAL", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return permissionAsInvalid{p} },
			"WrongUse/Permission", provider.HMACSHA256, "want one wrapping EPERM"},
		{"MAC for a signature key", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return macForAnyUse{p} },
			"WrongUse/Permission", provider.ECDSAP256, "got success"},
		{"MAC truncates the tag", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return truncatesTag{p} },
			"MAC/Tag", provider.HMACSHA512, "want 64 (the full tag)"},
		{"MAC truncates an oversize message", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return macTruncatesMessage{p} },
			"MAC/TooLarge", provider.HMACSHA256, "got success"},
		{"MAC ignores the key", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return macUnkeyed{p} },
			"MAC/OtherKey", provider.HMACSHA256, "give the same tag"},
		{"MAC is not HMAC under the key", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider { return macWrongKey{p} },
			"MAC/Known", provider.HMACSHA384, "is not crypto/hmac's"},
		{"Destroy forgets nothing (MAC)", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return forgetsDestroy{p} },
			"Destroy/NotFound", provider.HMACSHA384, "want an error wrapping ENOENT"},
		{"Destroy forgets nothing (RSA)", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider { return forgetsDestroy{p} },
			"Destroy/NotFound", provider.RSA2048PKCS1, "want an error wrapping ENOENT"},
		{"MAC handles not bound to the version", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return ignoresVersion{p} },
			"HandleBinding/Version", provider.HMACSHA256, "got success"},
		{"SignDigest handles not bound to the version", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return ignoresVersion{p} },
			"HandleBinding/Version", provider.ECDSAP256, "got success"},
		{"RSA public key as PKIX", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return pkixPublicKey{p} },
			"Generate/Sizes", provider.RSA2048PSS, "does not parse"},
		{"ECDSA public key as PKIX", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return pkixPublicKey{p} },
			"Generate/Sizes", provider.ECDSAP256, "public key is 91 bytes, want 65"},
		{"ECDSA signature as r ‖ s", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return rawECDSA{p} },
			"Sign/Verify", provider.ECDSAP256, "does not verify with the independent"},
		{"Decrypt ignores the info", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return newIgnoresContext(p, true) },
			"Decrypt/WrongInfo", provider.HPKEX25519, "got success"},
		{"Decrypt ignores the AAD", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return newIgnoresContext(p, false) },
			"Decrypt/WrongAAD", provider.HPKEMLKEM768X25519, "got success"},
		{"Decrypt ignores the AAD (testseed)", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider { return newIgnoresContext(p, false) },
			"Decrypt/WrongAAD", provider.HPKEP256, "got success"},
		{"Decrypt for a sign key", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return decryptAnyUse{p} },
			"WrongUse/Permission", provider.Ed25519, "want one wrapping EPERM"},
		{"Decrypt returns output with its error", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return partialDecrypt{p} },
			"Decrypt/Tamper", provider.HPKEX25519, "want no output"},
		{"Decrypt oversize info truncated", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return truncatesInfo{p} },
			"Decrypt/TooLarge", provider.HPKEP256, "got success"},
		{"Destroy forgets nothing (HPKE)", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return forgetsDestroy{p} },
			"Destroy/NotFound", provider.HPKEX25519, "want an error wrapping ENOENT"},
		{"Import ignores the one-time rule", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return newReimports(p) },
			"Import/OneTime", provider.Ed25519, "got success"},
		{"Import ignores the one-time rule (AEAD)", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider { return newReimports(p) },
			"Import/OneTime", provider.AES256GCM, "got success"},
		{"Import makes a key of its own", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return importGenerates{p} },
			"Import/RoundTrip", provider.ECDSAP256, "is not the imported key's own"},
		{"Import makes a key of its own (HMAC)", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return importGenerates{p} },
			"Import/RoundTrip", provider.HMACSHA256, "crypto/hmac's tag under the raw key"},
		{"Destroy forgets no import wrapping key", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return forgetsDestroy{p} },
			"Import/Destroy", provider.HMACSHA512, "got success"},
		{"Import accepts material of another algorithm", newSoftware, func(_ *testing.T, p provider.Provider) provider.Provider { return importGenerates{p} },
			"Import/WrongMaterial", provider.Ed25519, "got success"},
		{"MAC leaks the secret in its errors", newTestseed, func(_ *testing.T, p provider.Provider) provider.Provider {
			return macErrorLeaks{p, knownTestseed}
		}, "NoSecretsInOutputs", "", "contains known secret"},
	}
}

// knownIfTestseed passes the testseed provider's known secrets when p is
// one (the others' are unknown).
func knownIfTestseed(t *testing.T, p provider.Provider) conformance.Option {
	t.Helper()
	info, err := p.Info(t.Context())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Name != testseed.Name {
		return nil
	}
	return conformance.WithKnownSecrets(knownTestseed)
}

// TestSuiteCatchesFaults runs, for each broken provider, the check of the
// requirement it breaks, and wants a failure that names the fault.
func TestSuiteCatchesFaults(t *testing.T) {
	for _, f := range faults() {
		t.Run(f.name, func(t *testing.T) {
			p := f.wrap(t, f.base(t))
			err := conformance.CheckOne(t.Context(), p, f.check, f.alg, t.Logf,
				knownIfTestseed(t, p), conformance.WithHangLimit(50*time.Millisecond), quick)
			switch {
			case err == nil:
				t.Fatalf("check %s passed a provider whose %s; want a failure", f.check, f.name)
			case conformance.IsSkip(err):
				t.Fatalf("check %s skipped (%v); want a failure", f.check, err)
			case !strings.Contains(err.Error(), f.want):
				t.Fatalf("check %s failed with:\n%v\nwant a failure mentioning %q", f.check, err, f.want)
			}
			t.Logf("caught as wanted:\n%v", err)
		})
	}
}

// TestGoodProvidersPassEveryCheck runs each check alone through CheckOne
// (as the fault tests do) against the good providers, so a fault test's
// failure is due to its fault and not to the check.
func TestGoodProvidersPassEveryCheck(t *testing.T) {
	type key struct {
		check string
		alg   provider.Algorithm
	}
	seen := map[key]bool{}
	for _, f := range faults() {
		k := key{f.check, f.alg}
		if seen[k] {
			continue
		}
		seen[k] = true
		for _, base := range []struct {
			name string
			new  func(*testing.T) provider.Provider
		}{{"software", newSoftware}, {"testseed", newTestseed}} {
			t.Run(base.name+"/"+f.check+"/"+string(f.alg), func(t *testing.T) {
				p := base.new(t)
				err := conformance.CheckOne(t.Context(), p, f.check, f.alg, t.Logf, knownIfTestseed(t, p), quick)
				if err != nil && !conformance.IsSkip(err) {
					t.Fatalf("check %s failed on the good %s provider: %v", f.check, base.name, err)
				}
			})
		}
	}
}

// TestCheckNames makes sure every check the fault tests name exists, and
// that CheckOne refuses an unknown one.
func TestCheckNames(t *testing.T) {
	names := map[string]bool{}
	for _, n := range conformance.CheckNames() {
		names[n] = true
	}
	for _, f := range faults() {
		if !names[f.check] {
			t.Errorf("fault %q names check %q, which CheckNames does not list", f.name, f.check)
		}
	}
	err := conformance.CheckOne(t.Context(), newSoftware(t), "NoSuchCheck", "", t.Logf)
	if err == nil || conformance.IsSkip(err) {
		t.Errorf("CheckOne(NoSuchCheck) = %v; want an error", err)
	}
}

// TestFindSecret checks the spellings the secret search knows.
func TestFindSecret(t *testing.T) {
	secret := []byte{0x00, 0x01, 0xfe, 0xff, 0x10, 0x20, 0x30, 0x40, 0x7f}
	tests := []struct {
		name string
		hay  string
		want string // "" for not found
	}{
		{"raw", "xx" + string(secret) + "yy", "raw"},
		{"lower hex", "handle=0001feff102030407f;", "lowercase hex"},
		{"upper hex", "0001FEFF102030407F", "uppercase hex"},
		{"base64", "k=AAH+/xAgMEB/", "base64"},
		{"URL base64", "k=AAH-_xAgMEB_", "URL base64"},
		{"%v", fmt.Sprintf("&{seed:%v}", secret), "%v decimal list"},
		{"%#v", fmt.Sprintf("%#v", struct{ Seed []byte }{secret}), "%#v"},
		{"%q", fmt.Sprintf("%q", string(secret)), "%q"},
		{"absent", "0001feff10203040", ""},
	}
	for _, tc := range tests {
		got, ok := conformance.FindSecret([]byte(tc.hay), secret)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: FindSecret found it in %s form; want not found", tc.name, got)
			}
			continue
		}
		if !ok || got != tc.want {
			t.Errorf("%s: FindSecret = %q, %v; want %q, true", tc.name, got, ok, tc.want)
		}
	}
}

// importUnsupported answers ENOTSUP to every Import, as an import that
// broke might; the wrapping key is still spent.
type importUnsupported struct {
	provider.Provider
	mu    *sync.Mutex
	spent map[string]bool
}

func newImportUnsupported(p provider.Provider) importUnsupported {
	return importUnsupported{Provider: p, mu: &sync.Mutex{}, spent: map[string]bool{}}
}

func (p importUnsupported) Import(ctx context.Context, ref, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spent[string(wh)] {
		return provider.Generated{}, provider.Errorf(provider.ENOENT, "spent")
	}
	p.spent[string(wh)] = true
	if err := p.Provider.Destroy(ctx, wrap, wh); err != nil {
		return provider.Generated{}, err
	}
	return provider.Generated{}, provider.Errorf(provider.ENOTSUP, "import broke")
}

// TestWithImportCatchesENOTSUP: an Import that answers ENOTSUP passes (a
// skip saying so) without WithImport and fails with it; and WithImport's
// exceptions must be ENOTSUP.
func TestWithImportCatchesENOTSUP(t *testing.T) {
	p := newImportUnsupported(newSoftware(t))
	err := conformance.CheckOne(t.Context(), p, "Import/RoundTrip", provider.Ed25519, t.Logf, quick)
	if !conformance.IsSkip(err) {
		t.Fatalf("without WithImport: %v; want a skip", err)
	}
	err = conformance.CheckOne(t.Context(), newImportUnsupported(newSoftware(t)), "Import/RoundTrip", provider.Ed25519, t.Logf, quick, conformance.WithImport())
	if err == nil || conformance.IsSkip(err) || !strings.Contains(err.Error(), "must import") {
		t.Fatalf("with WithImport: %v; want a failure", err)
	}
	err = conformance.CheckOne(t.Context(), newSoftware(t), "Import/RoundTrip", provider.Ed25519, t.Logf, quick, conformance.WithImport(provider.Ed25519))
	if err == nil || conformance.IsSkip(err) || !strings.Contains(err.Error(), "must answer ENOTSUP") {
		t.Fatalf("an exception that imports: %v; want a failure", err)
	}
}

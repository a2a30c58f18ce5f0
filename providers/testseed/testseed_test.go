package testseed

import (
	"bytes"
	"context"
	"crypto/hpke"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

func newTest(t testing.TB, seed []byte, opts ...Option) provider.Provider {
	t.Helper()
	p, err := NewInsecure(seed, opts...)
	if err != nil {
		t.Fatalf("NewInsecure: %v", err)
	}
	return p
}

func wantCode(t testing.TB, what string, err error, want provider.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got nil error, want %s", what, want)
	}
	if got, ok := provider.CodeOf(err); !ok || got != want {
		t.Fatalf("%s: got error %q (code %v), want code %s", what, err, got, want)
	}
}

// exercise signs or MACs goldenMessage, or seals goldenPlaintext, with the
// key of h; for an HPKE key it decrypts goldenPlaintext, sealed with
// crypto/hpke to pub (the key's public key) with info and aad goldenAAD.
func exercise(p provider.Provider, r provider.KeyRef, h provider.Handle, pub []byte) ([]byte, error) {
	switch r.Use {
	case provider.UseSign:
		return p.Sign(context.Background(), r, h, goldenMessage)
	case provider.UseMAC:
		return p.MAC(context.Background(), r, h, goldenMessage)
	case provider.UseAsymmetricDecrypt:
		enc, ct, err := hpkeSeal(r.Algorithm, pub, goldenAAD, goldenAAD, goldenPlaintext)
		if err != nil {
			return nil, err
		}
		return p.Decrypt(context.Background(), r, h, enc, ct, goldenAAD, goldenAAD)
	}
	return p.Seal(context.Background(), r, h, goldenPlaintext, goldenAAD)
}

// hpkeSeal seals msg with crypto/hpke (base mode) to pub, a public key of
// the HPKE algorithm a.
func hpkeSeal(a provider.Algorithm, pub, info, aad, msg []byte) (enc, ct []byte, err error) {
	s, err := alg.Default().Lookup(a)
	if err != nil {
		return nil, nil, err
	}
	kem, err := hpke.NewKEM(s.KEMID)
	if err != nil {
		return nil, nil, err
	}
	kdf, err := hpke.NewKDF(s.KDFID)
	if err != nil {
		return nil, nil, err
	}
	aead, err := hpke.NewAEAD(s.AEADID)
	if err != nil {
		return nil, nil, err
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	enc, snd, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		return nil, nil, err
	}
	ct, err = snd.Seal(aad, msg)
	return enc, ct, err
}

func TestInfo(t *testing.T) {
	info, err := newTest(t, goldenSeed).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "testseed" || info.Secure || !info.Deterministic {
		t.Errorf("Info: got %+v, want name testseed, not secure, deterministic", info)
	}
	if got, want := fmt.Sprint(info.Algorithms), fmt.Sprint(alg.Default().Names()); got != want {
		t.Errorf("algorithms: got %s, want %s", got, want)
	}
}

func TestSeedBounds(t *testing.T) {
	for _, n := range []int{0, 1, MinSeed - 1, MaxSeed + 1, 1000} {
		_, err := NewInsecure(make([]byte, n))
		wantCode(t, fmt.Sprintf("seed of %d bytes", n), err, provider.EINVAL)
	}
	_, err := NewInsecure(nil)
	wantCode(t, "nil seed", err, provider.EINVAL)
	for _, n := range []int{MinSeed, MaxSeed} {
		if _, err := NewInsecure(make([]byte, n)); err != nil {
			t.Errorf("seed of %d bytes: %v", n, err)
		}
	}
}

func TestGuard(t *testing.T) {
	err := guard(false, options{})
	wantCode(t, "outside tests", err, provider.EPERM)
	for _, want := range []string{"INSECURE", "outside a test binary", "AllowOutsideTests()"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	var o options
	AllowOutsideTests()(&o)
	if err := guard(false, o); err != nil {
		t.Errorf("AllowOutsideTests: %v", err)
	}
	if err := guard(true, options{}); err != nil {
		t.Errorf("inside a test: %v", err)
	}
	if _, err := NewInsecure(goldenSeed, AllowOutsideTests(), nil); err != nil {
		t.Errorf("NewInsecure with AllowOutsideTests: %v", err)
	}
}

// TestOrderIndependence: the same seed gives byte-identical public keys,
// handles, signatures, tags and sealed bytes whatever the order of
// creation. RSA-3072 and RSA-4096 are left out (three providers would make
// each key, at up to seconds apiece): their derivation is RSA-2048's, and
// the golden vectors and the conformance suite's Deterministic check pin
// them.
func TestOrderIndependence(t *testing.T) {
	var names []provider.Algorithm
	for _, a := range alg.Default().Names() {
		if b := rsaBits(a); b == 0 || b == 2048 {
			names = append(names, a)
		}
	}
	type out struct{ pub, h, res []byte }
	run := func(p provider.Provider, order []provider.Algorithm) map[provider.Algorithm]out {
		m := map[provider.Algorithm]out{}
		for _, a := range order {
			r := goldenRef(t, a)
			g, err := p.Generate(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			res, err := exercise(p, r, g.Handle, g.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			m[a] = out{g.PublicKey, g.Handle, res}
		}
		return m
	}
	p1 := newTest(t, goldenSeed)
	first := run(p1, names)
	p2 := newTest(t, goldenSeed, WithCacheSize(1))
	// Other keys first, then the same ones in reverse order.
	for i := 0; i < 3; i++ {
		id, _ := provider.NewKeyID("other", "keys", fmt.Sprint("k", i))
		if _, err := p2.Generate(context.Background(), provider.KeyRef{ID: id, Version: 1, Algorithm: provider.Ed25519, Use: provider.UseSign, Provider: Name}); err != nil {
			t.Fatal(err)
		}
	}
	rev := make([]provider.Algorithm, len(names))
	for i, a := range names {
		rev[len(names)-1-i] = a
	}
	second := run(p2, rev)
	for _, a := range names {
		f, s := first[a], second[a]
		if !bytes.Equal(f.pub, s.pub) || !bytes.Equal(f.h, s.h) || !bytes.Equal(f.res, s.res) {
			t.Errorf("%s: outputs differ between two providers with the same seed", a)
		}
		// Signing or sealing again gives the same bytes too.
		again, err := exercise(p1, goldenRef(t, a), f.h, f.pub)
		if err != nil || !bytes.Equal(again, f.res) {
			t.Errorf("%s: second operation differs (err %v)", a, err)
		}
	}

	other := run(newTest(t, seq(33)), names)
	for _, a := range names {
		if bytes.Equal(first[a].h, other[a].h) || (first[a].pub != nil && bytes.Equal(first[a].pub, other[a].pub)) {
			t.Errorf("%s: another seed gives the same key", a)
		}
	}
}

func TestSealNonceIsSIVLike(t *testing.T) {
	p := newTest(t, goldenSeed)
	ctx := context.Background()
	r := goldenRef(t, provider.XChaCha20Poly1305)
	g, err := p.Generate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(pt, aad string) []byte {
		s, err := p.Seal(ctx, r, g.Handle, []byte(pt), []byte(aad))
		if err != nil {
			t.Fatal(err)
		}
		return s[:24]
	}
	base := seal("p", "a")
	if !bytes.Equal(base, seal("p", "a")) {
		t.Error("same inputs gave different nonces")
	}
	for _, tc := range []struct{ pt, aad string }{{"q", "a"}, {"p", "b"}, {"", "pa"}, {"pa", ""}} {
		if bytes.Equal(base, seal(tc.pt, tc.aad)) {
			t.Errorf("plaintext %q aad %q reuses the nonce of (p, a)", tc.pt, tc.aad)
		}
	}
	r2 := r
	r2.Version = 2
	g2, err := p.Generate(ctx, r2)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := p.Seal(ctx, r2, g2.Handle, []byte("p"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(s2[:24], base) {
		t.Error("two key versions use the same nonce for the same input")
	}
}

func TestRegenerateDestroyedStaysDestroyed(t *testing.T) {
	p := newTest(t, goldenSeed)
	ctx := context.Background()
	r := goldenRef(t, provider.Ed25519)
	g, err := p.Generate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Destroy(ctx, r, g.Handle); err != nil {
		t.Fatal(err)
	}
	g2, err := p.Generate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Handle, g2.Handle) {
		t.Fatal("deterministic provider gave another handle for the same ref")
	}
	_, err = exercise(p, r, g2.Handle, g2.PublicKey)
	wantCode(t, "regenerated destroyed handle", err, provider.ENOENT)
}

// knownCounts is how many known secrets InsecureKnownSecrets returns per
// algorithm (its doc): the material, then for EdDSA and ML-DSA the
// expanded private key, for ECDSA the SEC 1 and PKCS #8 DER, for RSA the
// prime-search key, the PKCS #8 DER, d, p, q, dp and dq, for HPKE the
// input of DeriveKeyPair.
var knownCounts = map[provider.Algorithm]int{
	provider.HPKEX25519: 2, provider.HPKEP256: 2, provider.HPKEMLKEM768X25519: 2,
	provider.Ed25519: 2, provider.Ed448: 2, provider.MLDSA44: 2, provider.MLDSA65: 2, provider.MLDSA87: 2,
	provider.Ed25519ph: 2, provider.ECDSAP256: 3, provider.ECDSAP384: 3,
	provider.RSA2048PSS: 8, provider.RSA3072PSS: 8, provider.RSA4096PSS: 8,
	provider.RSA2048PKCS1: 8, provider.RSA3072PKCS1: 8, provider.RSA4096PKCS1: 8,
}

func TestInsecureKnownSecrets(t *testing.T) {
	for _, a := range alg.Default().Names() {
		r := goldenRef(t, a)
		s, _ := alg.Default().Lookup(a)
		known, err := InsecureKnownSecrets(goldenSeed, r)
		if err != nil {
			t.Fatal(err)
		}
		want := knownCounts[a]
		if want == 0 {
			want = 1 // AEAD and HMAC keys: the key
		}
		if len(known) != want || !s.SecretSizeOK(len(known[0])) {
			t.Errorf("%s: got %d secrets (first %d bytes), want %d (first of a size %s allows)", a, len(known), len(known[0]), want, a)
		}
		for i, k := range known {
			if len(k) < 8 {
				t.Errorf("%s: known secret %d is %d bytes, too short to search for", a, i, len(k))
			}
		}
	}
	_, err := InsecureKnownSecrets(nil, goldenRef(t, provider.Ed25519))
	wantCode(t, "nil seed", err, provider.EINVAL)
	_, err = InsecureKnownSecrets(goldenSeed, provider.KeyRef{})
	wantCode(t, "zero ref", err, provider.EINVAL)
	r := goldenRef(t, provider.Ed25519)
	r.Algorithm = "rsa-1024-pss-sha256"
	_, err = InsecureKnownSecrets(goldenSeed, r)
	wantCode(t, "unknown algorithm", err, provider.ENOTSUP)
	_, err = InsecureKEK(make([]byte, 7))
	wantCode(t, "short seed KEK", err, provider.EINVAL)
}

// TestNoLeaks runs every algorithm, provokes every error path, and searches
// every output, error text and printed form of the provider for the known
// secrets.
func TestNoLeaks(t *testing.T) {
	p := newTest(t, goldenSeed)
	wrongKEK := newTest(t, seq(40))
	ctx := context.Background()
	kek, err := InsecureKEK(goldenSeed)
	if err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{kek, goldenSeed}
	var outputs [][]byte
	var texts []string
	for _, a := range alg.Default().Names() {
		r := goldenRef(t, a)
		known, err := InsecureKnownSecrets(goldenSeed, r)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, known...)
		g, err := p.Generate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		res, err := exercise(p, r, g.Handle, g.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, g.PublicKey, g.Handle, res)
		if s, _ := alg.Default().Lookup(a); s != nil && s.Hash != 0 {
			dsig, err := p.SignDigest(ctx, r, g.Handle, s.Hash, make([]byte, s.Hash.Size()))
			if err != nil {
				t.Fatal(err)
			}
			outputs = append(outputs, dsig)
			_, err = p.SignDigest(ctx, r, g.Handle, s.Hash, make([]byte, s.Hash.Size()-1))
			texts = append(texts, err.Error())
		}
		if r.Use == provider.UseDecrypt {
			pt, err := p.Open(ctx, r, g.Handle, res, goldenAAD)
			if err != nil {
				t.Fatal(err)
			}
			outputs = append(outputs, pt)
			_, err = p.Open(ctx, r, g.Handle, res, nil)
			texts = append(texts, err.Error())
		}
		bad := append([]byte(nil), g.Handle...)
		bad[len(bad)-1] ^= 1
		for _, call := range []func() error{
			func() error { _, err := exercise(wrongKEK, r, g.Handle, g.PublicKey); return err },
			func() error { _, err := exercise(p, r, bad, g.PublicKey); return err },
			func() error { _, err := exercise(p, r, g.Handle[:10], g.PublicKey); return err },
			func() error { r2 := r; r2.Version = 9; _, err := exercise(p, r2, g.Handle, g.PublicKey); return err },
		} {
			err := call()
			if err == nil {
				t.Fatalf("%s: error path succeeded", a)
			}
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		}
	}
	for _, v := range []any{p, wrongKEK, *p.(*testseedProvider), p.(*testseedProvider).Engine, struct{ P provider.Provider }{p}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
			texts = append(texts, fmt.Sprintf(verb, v))
		}
	}
	for _, s := range secrets {
		for _, o := range outputs {
			if bytes.Contains(o, s) {
				t.Errorf("an output contains a %d-byte known secret", len(s))
			}
		}
		forms := []string{string(s), hex.EncodeToString(s), strings.Trim(fmt.Sprint(s), "[]"), fmt.Sprintf("%x", s)}
		for _, txt := range texts {
			for _, f := range forms {
				if strings.Contains(strings.ToLower(txt), strings.ToLower(f)) {
					t.Errorf("text %.120q contains a known secret", txt)
				}
			}
		}
	}
}

package conformance

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// The import checks make key material outside the provider (crypto/rand,
// crypto/ed25519, crypto/ecdsa, crypto/rsa, crypto/ecdh), wrap it with
// Go's crypto/hpke to a one-time wrapping key from NewImportKey, as a
// client does, and hold what the provider makes of it against the
// material's own public key and the raw key's results computed outside.

// provImportMaterial is key material the suite made for an import.
type provImportMaterial struct {
	data []byte // the import format: raw key bytes or PKCS #8 DER
	pub  []byte // the public key Generate would return (nil for AEAD and MAC)
	raw  []byte // an AEAD or MAC key
	priv any    // the private key, for the independent checks
}

// importMaterial returns material of algorithm a in its import format,
// made once per run and algorithm (once per RSA modulus size), or a skip
// for an algorithm the suite cannot make material of.
func (s *provSuite) importMaterial(a provider.Algorithm) (*provImportMaterial, error) {
	sp, err := s.spec(a)
	if err != nil {
		return nil, err
	}
	key := string(a)
	bits := rsaBitsOf(a)
	if bits != 0 {
		key = fmt.Sprintf("rsa-%d", bits)
	}
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	if m := s.pool.materials[key]; m != nil {
		return m, nil
	}
	var m *provImportMaterial
	switch {
	case sp.Use == provider.UseDecrypt || sp.Use == provider.UseMAC:
		raw := make([]byte, sp.SecretSize)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("suite: crypto/rand: %w", err)
		}
		m = &provImportMaterial{data: raw, raw: raw}
	case bits != 0:
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, fmt.Errorf("suite: rsa.GenerateKey(%d): %w", bits, err)
		}
		m, err = pkcs8Material(k, x509.MarshalPKCS1PublicKey(&k.PublicKey))
		if err != nil {
			return nil, err
		}
	default:
		priv, pub, err := newImportPrivateKey(a)
		if err != nil {
			return nil, err
		}
		if m, err = pkcs8Material(priv, pub); err != nil {
			return nil, err
		}
	}
	s.pool.materials[key] = m
	return m, nil
}

// rsaBitsOf returns the modulus size of an RSA algorithm, or 0.
func rsaBitsOf(a provider.Algorithm) int {
	switch a {
	case provider.RSA2048PSS, provider.RSA2048PKCS1:
		return 2048
	case provider.RSA3072PSS, provider.RSA3072PKCS1:
		return 3072
	case provider.RSA4096PSS, provider.RSA4096PKCS1:
		return 4096
	}
	return 0
}

// newImportPrivateKey makes a private key of a (not RSA) and its public
// key as Generate encodes it; a skip for an algorithm without an import
// format the suite knows.
func newImportPrivateKey(a provider.Algorithm) (priv any, pub []byte, err error) {
	switch a {
	case provider.Ed25519, provider.Ed25519ph:
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("suite: ed25519.GenerateKey: %w", err)
		}
		return k, p, nil
	case provider.ECDSAP256, provider.ECDSAP384, provider.HPKEP256:
		curve := elliptic.P256()
		if a == provider.ECDSAP384 {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("suite: ecdsa.GenerateKey: %w", err)
		}
		pub, err := k.PublicKey.Bytes()
		if err != nil {
			return nil, nil, fmt.Errorf("suite: ecdsa public key: %w", err)
		}
		return k, pub, nil
	case provider.HPKEX25519:
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("suite: X25519 key: %w", err)
		}
		return k, k.PublicKey().Bytes(), nil
	}
	return nil, nil, skipf("the suite cannot make %q key material to import", a)
}

// pkcs8Material is priv in PKCS #8 DER with its public key.
func pkcs8Material(priv any, pub []byte) (*provImportMaterial, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("suite: x509.MarshalPKCS8PrivateKey: %w", err)
	}
	return &provImportMaterial{data: der, pub: pub, priv: priv}, nil
}

// wrongMaterial returns material a must refuse with EINVAL: keys of
// other algorithms and sizes in the same format, the other format, and
// bytes that are no key.
func wrongMaterial(a provider.Algorithm, secretSize int) ([]struct {
	name string
	data []byte
}, error) {
	type wrong = struct {
		name string
		data []byte
	}
	pk8 := func(alg provider.Algorithm) ([]byte, error) {
		priv, _, err := newImportPrivateKey(alg)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(priv)
	}
	var out []wrong
	add := func(name string, alg provider.Algorithm) error {
		der, err := pk8(alg)
		if err != nil {
			return err
		}
		out = append(out, wrong{name, der})
		return nil
	}
	others := map[provider.Algorithm][]provider.Algorithm{
		provider.Ed25519:    {provider.ECDSAP256, provider.HPKEX25519},
		provider.Ed25519ph:  {provider.ECDSAP256, provider.HPKEX25519},
		provider.ECDSAP256:  {provider.ECDSAP384, provider.Ed25519},
		provider.ECDSAP384:  {provider.ECDSAP256, provider.Ed25519},
		provider.HPKEX25519: {provider.Ed25519, provider.ECDSAP256},
		provider.HPKEP256:   {provider.ECDSAP384, provider.HPKEX25519},
	}
	switch {
	case secretSize > 0: // AEAD and MAC: raw bytes of exactly the key size
		out = append(out, wrong{fmt.Sprintf("%d raw bytes", secretSize-1), pseudo("wrong/short", secretSize-1)},
			wrong{fmt.Sprintf("%d raw bytes", secretSize+1), pseudo("wrong/long", secretSize+1)},
			wrong{"no bytes", nil})
		// A PKCS #8 key, unless it happens to have the key's size (an
		// Ed25519 one is 48 bytes, an HMAC-SHA-384 key's): then it is
		// a valid raw key.
		for _, o := range []provider.Algorithm{provider.Ed25519, provider.ECDSAP256} {
			der, err := pk8(o)
			if err != nil {
				return nil, err
			}
			if len(der) != secretSize {
				out = append(out, wrong{"a " + string(o) + " PKCS #8 key", der})
			}
		}
		return out, nil
	case rsaBitsOf(a) != 0:
		if err := add("an ECDSA P-256 PKCS #8 key", provider.ECDSAP256); err != nil {
			return nil, err
		}
		if err := add("an Ed25519 PKCS #8 key", provider.Ed25519); err != nil {
			return nil, err
		}
	default:
		for _, o := range others[a] {
			if err := add("a "+string(o)+" PKCS #8 key", o); err != nil {
				return nil, err
			}
		}
	}
	out = append(out, wrong{"32 raw bytes", pseudo("wrong/raw", 32)}, wrong{"64 bytes that are no DER", pseudo("wrong/garbage", 64)})
	return out, nil
}

// importWrap returns the wrap KeyRef the core uses for an import into
// ref with the wrapping algorithm suite.
func importWrap(ref provider.KeyRef, suite provider.Algorithm) provider.KeyRef {
	return provider.KeyRef{ID: ref.ID, Version: 1, Algorithm: suite, Use: provider.UseAsymmetricDecrypt, Provider: ref.Provider}
}

// provWrapping is a one-time wrapping key from NewImportKey.
type provWrapping struct {
	wrap provider.KeyRef
	g    provider.Generated
}

// newWrapping asks for a wrapping key of suite for an import into ref and
// checks its public key parses (crypto/hpke).
func (s *provSuite) newWrapping(ctx context.Context, ref provider.KeyRef, suite provider.Algorithm) (*provWrapping, error) {
	wrap := importWrap(ref, suite)
	g, err := s.p.NewImportKey(ctx, wrap)
	if err != nil {
		return nil, fmt.Errorf("NewImportKey(%s): %w", wrap, err)
	}
	if valid, ok := independentHPKEPublicKey(suite, g.PublicKey); ok && !valid {
		return nil, fmt.Errorf("NewImportKey(%s): the %d-byte wrapping public key does not parse with crypto/hpke", wrap, len(g.PublicKey))
	}
	if len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle {
		return nil, fmt.Errorf("NewImportKey(%s): handle of %d bytes, want 1 to MaxHandle", wrap, len(g.Handle))
	}
	return &provWrapping{wrap: wrap, g: g}, nil
}

// wrapTo seals data to w under info and aad, as a client does.
func (w *provWrapping) wrapTo(info, aad, data []byte) (enc, ct []byte, err error) {
	return hpkeSeal(w.wrap.Algorithm, w.g.PublicKey, info, aad, data)
}

// provImportSupport is what the probe learnt: whether the provider
// imports at all, and the reason it gave when it does not.
type provImportSupport struct {
	done   bool
	ok     bool
	reason error
}

// importSupport probes, once per run, whether the provider imports at
// all: a NewImportKey of the default wrapping suite for a key of the
// first announced algorithm. A provider that cannot import must answer
// ENOTSUP there and in Import (a skip then says so); any other failure is
// reported.
func (s *provSuite) importSupport(ctx context.Context) (bool, error) {
	s.pool.mu.Lock()
	sup := s.pool.imports
	s.pool.mu.Unlock()
	if sup.done {
		return sup.ok, sup.reason
	}
	if len(s.algs) == 0 {
		return false, skipf("provider announces no algorithm the registry knows")
	}
	ref, err := s.ref("import-probe", "key", s.algs[0])
	if err != nil {
		return false, err
	}
	wrap := importWrap(ref, core.DefaultImportWrapping)
	g, err := s.p.NewImportKey(ctx, wrap)
	switch {
	case err == nil:
		if derr := s.p.Destroy(ctx, wrap, g.Handle); derr != nil {
			return false, fmt.Errorf("Destroy(%s) of an import wrapping key: %w; want success", wrap, derr)
		}
		sup = provImportSupport{done: true, ok: true}
	case errors.Is(err, provider.ErrNotSupported):
		// Consistently: Import says the same for any wrapping key.
		h := append([]byte("KSI1"), make([]byte, 16)...)
		out, ierr := s.p.Import(ctx, ref, wrap, h, make([]byte, 32), make([]byte, 48))
		if cerr := wantCode(fmt.Sprintf("Import(%s) of a provider whose NewImportKey is ENOTSUP", ref), ierr, provider.ENOTSUP, out.Handle); cerr != nil {
			return false, cerr
		}
		sup = provImportSupport{done: true, reason: skipf("the provider cannot import (NewImportKey and Import answer ENOTSUP: %v); accepted, nothing to check", err)}
		if s.imports != nil {
			return false, fmt.Errorf("NewImportKey(%s): %w; the provider was run WithImport, so import must work", wrap, err)
		}
	default:
		return false, fmt.Errorf("NewImportKey(%s): %w; want success, or ENOTSUP from a provider that cannot import", wrap, err)
	}
	s.pool.mu.Lock()
	s.pool.imports = sup
	s.pool.mu.Unlock()
	return sup.ok, sup.reason
}

// importable returns the spec's Importable, after the provider probe;
// the error is a skip for a provider that cannot import.
func (s *provSuite) importable(ctx context.Context, a provider.Algorithm) (bool, error) {
	if _, err := s.importSupport(ctx); err != nil {
		return false, err
	}
	sp, err := s.spec(a)
	if err != nil {
		return false, err
	}
	if !sp.Importable() {
		return false, nil
	}
	if err := s.algImport(ctx, a); err != nil {
		return false, err
	}
	return true, nil
}

// algImport probes, once per run and algorithm, whether the provider
// imports keys of a (which has an import format): an import of material
// made outside. A provider may lack it for one algorithm (a token that
// cannot unwrap that key type: SoftHSM2 2.6.1 and Ed25519); it must then
// answer ENOTSUP, and the call must still spend the wrapping key (a
// second Import with it ENOENT). The error is then a skip naming the
// reason for every check of a; any other failure is reported.
func (s *provSuite) algImport(ctx context.Context, a provider.Algorithm) error {
	s.pool.mu.Lock()
	err, done := s.pool.algImports[a]
	s.pool.mu.Unlock()
	if done {
		return err
	}
	err = s.probeAlgImport(ctx, a)
	s.pool.mu.Lock()
	if s.pool.algImports == nil {
		s.pool.algImports = map[provider.Algorithm]error{}
	}
	s.pool.algImports[a] = err
	s.pool.mu.Unlock()
	return err
}

func (s *provSuite) probeAlgImport(ctx context.Context, a provider.Algorithm) error {
	m, err := s.importMaterial(a)
	if err != nil {
		return err
	}
	ref, err := s.ref("import-probe", string(a), a)
	if err != nil {
		return err
	}
	w, err := s.newWrapping(ctx, ref, core.DefaultImportWrapping)
	if err != nil {
		return err
	}
	enc, ct, err := w.wrapTo(provider.ImportInfo(ref.ID, ref.Algorithm), nil, m.data)
	if err != nil {
		return err
	}
	g, err := s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
	if must, ok := s.imports.requires(a); ok {
		switch {
		case must && err != nil:
			return fmt.Errorf("Import(%s) of %s material made outside: %w; the provider was run WithImport, so it must import %s keys", ref, a, err, a)
		case !must && !errors.Is(err, provider.ErrNotSupported):
			return fmt.Errorf("Import(%s) of %s material: %v; the provider was run WithImport excepting %s, so it must answer ENOTSUP", ref, a, err, a)
		}
	}
	switch {
	case err == nil:
		if derr := s.p.Destroy(ctx, ref, g.Handle); derr != nil {
			return fmt.Errorf("Destroy(%s) of an imported key: %w; want success", ref, derr)
		}
		return nil
	case errors.Is(err, provider.ErrNotSupported):
		g2, err2 := s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
		if cerr := wantCode(fmt.Sprintf("Import(%s) again with the wrapping key an ENOTSUP import spent", ref), err2, provider.ENOENT, g2.Handle); cerr != nil {
			return cerr
		}
		return skipf("the provider cannot import %s keys (Import answers ENOTSUP: %v); accepted, nothing to check", a, err)
	}
	return fmt.Errorf("Import(%s) of %s material made outside: %w; want success, or ENOTSUP from a provider that cannot import %s keys", ref, a, err, a)
}

// importKey imports m into conformance/import/<alg>-<name> through a
// fresh wrapping key of suite, and returns the key (with a blob, tag or
// message made with it, as newKey makes) and the wrapping key.
func (s *provSuite) importKey(ctx context.Context, name string, a provider.Algorithm, m *provImportMaterial, suite provider.Algorithm) (*provKey, *provWrapping, error) {
	ref, err := s.ref("import", string(a)+"-"+name, a)
	if err != nil {
		return nil, nil, err
	}
	w, err := s.newWrapping(ctx, ref, suite)
	if err != nil {
		return nil, nil, err
	}
	enc, ct, err := w.wrapTo(provider.ImportInfo(ref.ID, ref.Algorithm), nil, m.data)
	if err != nil {
		return nil, nil, err
	}
	g, err := s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
	if err != nil {
		return nil, w, fmt.Errorf("Import(%s) of %s material wrapped to %s: %w; want success", ref, a, suite, err)
	}
	if len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle {
		return nil, w, fmt.Errorf("Import(%s): handle of %d bytes, want 1 to MaxHandle", ref, len(g.Handle))
	}
	k, err := s.keyOf(ctx, ref, g)
	return k, w, err
}

// checkImportRoundTrip: for an importable algorithm, material made
// outside the provider (an Ed25519, ECDSA, RSA or X25519 key in PKCS #8
// DER, a raw AEAD or HMAC key) imported through a wrapping key of the
// default suite gives the key's own public key; a signature verifies
// independently under that public key as computed outside; a blob the
// provider seals opens with the raw key outside and one sealed outside
// opens in the provider; a tag is crypto/hmac's under the raw key; a
// message crypto/hpke seals to the material's own public key decrypts.
// An algorithm without an import format (Ed448, ML-DSA, the hybrid
// HPKE suite) is ENOTSUP, and the call still spends the wrapping key.
func (s *provSuite) checkImportRoundTrip(ctx context.Context, a provider.Algorithm) error {
	ok, err := s.importable(ctx, a)
	if err != nil {
		return err
	}
	if !ok {
		ref, err := s.ref("import", string(a)+"-unsupported", a)
		if err != nil {
			return err
		}
		w, err := s.newWrapping(ctx, ref, core.DefaultImportWrapping)
		if err != nil {
			return err
		}
		enc, ct, err := w.wrapTo(provider.ImportInfo(ref.ID, a), nil, pseudo("import/unsupported", 32))
		if err != nil {
			return err
		}
		var f provFails
		g, err := s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
		f.add(wantCode(fmt.Sprintf("Import(%s) of an algorithm without an import format", ref), err, provider.ENOTSUP, g.Handle))
		g, err = s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
		f.add(wantCode(fmt.Sprintf("Import(%s) again with the spent wrapping key", ref), err, provider.ENOENT, g.Handle))
		return f.err()
	}
	m, err := s.importMaterial(a)
	if err != nil {
		return err
	}
	k, _, err := s.importKey(ctx, "round-trip", a, m, core.DefaultImportWrapping)
	if err != nil {
		return err
	}
	var f provFails
	if !bytes.Equal(k.g.PublicKey, m.pub) {
		f.addf("Import(%s): public key of %d bytes is not the imported key's own (%d bytes, computed outside)", k.ref, len(k.g.PublicKey), len(m.pub))
	}
	f.add(s.works(ctx, k))
	f.add(s.independentUse(ctx, k, m))
	return f.err()
}

// independentUse checks k, imported from m, against m used outside the
// provider.
func (s *provSuite) independentUse(ctx context.Context, k *provKey, m *provImportMaterial) error {
	a := k.ref.Algorithm
	msg := []byte("conformance: imported key")
	switch k.ref.Use {
	case provider.UseSign:
		v, ok := independentVerifiers[a]
		if !ok {
			return skipf("the suite has no independent verifier for %q", a)
		}
		sig, err := s.p.Sign(ctx, k.ref, k.g.Handle, msg)
		if err != nil {
			return fmt.Errorf("Sign(%s) with the imported key: %w; want success", k.ref, err)
		}
		if !v(m.pub, msg, sig) {
			return fmt.Errorf("Sign(%s) with the imported key: the signature does not verify under the imported key's own public key (independent verifier)", k.ref)
		}
	case provider.UseMAC:
		want := independentTag(a, m.raw, msg)
		if want == nil {
			return skipf("the suite has no independent implementation of %q", a)
		}
		tag, err := s.p.MAC(ctx, k.ref, k.g.Handle, msg)
		if err != nil || !bytes.Equal(tag, want) {
			return fmt.Errorf("MAC(%s) with the imported key: %v; want crypto/hmac's tag under the raw key", k.ref, err)
		}
	case provider.UseDecrypt:
		aead, ok := independentAEAD(a, m.raw)
		if !ok {
			return skipf("the suite has no independent implementation of %q", a)
		}
		n := aead.NonceSize()
		sealed, err := s.p.Seal(ctx, k.ref, k.g.Handle, msg, provKeyAAD)
		if err != nil {
			return fmt.Errorf("Seal(%s) with the imported key: %w; want success", k.ref, err)
		}
		if len(sealed) < n {
			return fmt.Errorf("Seal(%s) with the imported key: %d bytes, shorter than the nonce", k.ref, len(sealed))
		}
		if pt, err := aead.Open(nil, sealed[:n], sealed[n:], provKeyAAD); err != nil || !bytes.Equal(pt, msg) {
			return fmt.Errorf("Seal(%s) with the imported key: the blob does not open with the raw key outside (%v)", k.ref, err)
		}
		nonce := pseudo("import/nonce/"+string(a), n)
		outside := aead.Seal(bytes.Clone(nonce), nonce, msg, provKeyAAD)
		if pt, err := s.p.Open(ctx, k.ref, k.g.Handle, outside, provKeyAAD); err != nil || !bytes.Equal(pt, msg) {
			return fmt.Errorf("Open(%s) with the imported key of a blob sealed outside with the raw key: %v; want the plaintext", k.ref, err)
		}
	case provider.UseAsymmetricDecrypt:
		own := &provKey{ref: k.ref, g: provider.Generated{PublicKey: m.pub, Handle: k.g.Handle}}
		msgTo, err := s.sealTo(own, msg, provKeyInfo, provKeyAAD)
		if err != nil {
			return err
		}
		return s.decrypts(ctx, k.ref, k.g.Handle, msgTo, "a message sealed to the imported key's own public key")
	}
	return nil
}

// checkImportOneTime: a wrapping key imports once: a second Import with
// it is ENOENT, even for the same material; an Import that fails (the
// material sealed under another key's info) spends it as well, so the
// right material after it is ENOENT too.
func (s *provSuite) checkImportOneTime(ctx context.Context, a provider.Algorithm) error {
	ok, err := s.importable(ctx, a)
	if err != nil {
		return err
	}
	if !ok {
		return skipf("%s keys have no import format (Import/RoundTrip checks the ENOTSUP)", a)
	}
	m, err := s.importMaterial(a)
	if err != nil {
		return err
	}
	k, w, err := s.importKey(ctx, "one-time", a, m, core.DefaultImportWrapping)
	if err != nil {
		return err
	}
	var f provFails
	enc, ct, err := w.wrapTo(provider.ImportInfo(k.ref.ID, a), nil, m.data)
	if err != nil {
		return err
	}
	g, err := s.p.Import(ctx, k.ref, w.wrap, w.g.Handle, enc, ct)
	f.add(wantCode(fmt.Sprintf("Import(%s) again with a spent wrapping key", k.ref), err, provider.ENOENT, g.Handle))
	v2 := k.ref
	v2.Version = 2
	g, err = s.p.Import(ctx, v2, w.wrap, w.g.Handle, enc, ct)
	f.add(wantCode(fmt.Sprintf("Import(%s, version 2) with the spent wrapping key", v2), err, provider.ENOENT, g.Handle))

	// A failed Import spends the key too.
	ref, err := s.ref("import", string(a)+"-failed-first", a)
	if err != nil {
		return err
	}
	w2, err := s.newWrapping(ctx, ref, core.DefaultImportWrapping)
	if err != nil {
		return err
	}
	other, err := provider.NewKeyID(provApp, "import", "another-key")
	if err != nil {
		return err
	}
	badEnc, badCT, err := w2.wrapTo(provider.ImportInfo(other, a), nil, m.data)
	if err != nil {
		return err
	}
	g, err = s.p.Import(ctx, ref, w2.wrap, w2.g.Handle, badEnc, badCT)
	f.add(wantCode(fmt.Sprintf("Import(%s) of material wrapped for key %s", ref, other), err, provider.EBADMSG, g.Handle))
	enc, ct, err = w2.wrapTo(provider.ImportInfo(ref.ID, a), nil, m.data)
	if err != nil {
		return err
	}
	g, err = s.p.Import(ctx, ref, w2.wrap, w2.g.Handle, enc, ct)
	f.add(wantCode(fmt.Sprintf("Import(%s) of the right material after a failed Import with the same wrapping key", ref), err, provider.ENOENT, g.Handle))
	return f.err()
}

// checkImportWrongMaterial: material of another algorithm, curve or size
// (another kind of PKCS #8 key, raw bytes of the wrong length, bytes that
// are no key) is EINVAL with no output, and spends the wrapping key.
func (s *provSuite) checkImportWrongMaterial(ctx context.Context, a provider.Algorithm) error {
	ok, err := s.importable(ctx, a)
	if err != nil {
		return err
	}
	if !ok {
		return skipf("%s keys have no import format (Import/RoundTrip checks the ENOTSUP)", a)
	}
	sp, err := s.spec(a)
	if err != nil {
		return err
	}
	size := 0
	if sp.Use == provider.UseDecrypt || sp.Use == provider.UseMAC {
		size = sp.SecretSize
	}
	wrongs, err := wrongMaterial(a, size)
	if err != nil {
		return err
	}
	var f provFails
	for i, wm := range wrongs {
		ref, err := s.ref("import", fmt.Sprintf("%s-wrong-%d", a, i), a)
		if err != nil {
			return err
		}
		w, err := s.newWrapping(ctx, ref, core.DefaultImportWrapping)
		if err != nil {
			return err
		}
		enc, ct, err := w.wrapTo(provider.ImportInfo(ref.ID, a), nil, wm.data)
		if err != nil {
			return err
		}
		g, err := s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
		f.add(wantCode(fmt.Sprintf("Import(%s) of %s", ref, wm.name), err, provider.EINVAL, append(g.Handle, g.PublicKey...)))
		g, err = s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
		f.add(wantCode(fmt.Sprintf("Import(%s) again after the refused %s", ref, wm.name), err, provider.ENOENT, g.Handle))
	}
	return f.err()
}

// importCase starts an Import check of a: the material to import and the
// ref conformance/import/<a>-<name>; a skip for an algorithm without an
// import format (Import/RoundTrip checks its ENOTSUP) or one the provider
// cannot import.
func (s *provSuite) importCase(ctx context.Context, a provider.Algorithm, name string) (*provImportMaterial, provider.KeyRef, error) {
	ok, err := s.importable(ctx, a)
	if err != nil {
		return nil, provider.KeyRef{}, err
	}
	if !ok {
		return nil, provider.KeyRef{}, skipf("%s keys have no import format (Import/RoundTrip checks the ENOTSUP)", a)
	}
	m, err := s.importMaterial(a)
	if err != nil {
		return nil, provider.KeyRef{}, err
	}
	ref, err := s.ref("import", string(a)+"-"+name, a)
	return m, ref, err
}

// checkImportWrongInfo: material wrapped under another info (that of
// another key ID, another algorithm, none, the label only), with an AAD,
// or with its enc or wrapped form tampered or truncated, is EBADMSG with
// no output.
func (s *provSuite) checkImportWrongInfo(ctx context.Context, a provider.Algorithm) error {
	m, ref, err := s.importCase(ctx, a, "wrong-info")
	if err != nil {
		return err
	}
	other, err := provider.NewKeyID(provApp, "import", otherName(ref.ID.Name()))
	if err != nil {
		return err
	}
	otherAlg := provider.Algorithm("no-such-alg")
	for _, o := range s.reg.Names() {
		if o != a {
			otherAlg = o
			break
		}
	}
	right := provider.ImportInfo(ref.ID, a)
	cases := []struct {
		name      string
		info, aad []byte
		edit      func(enc, ct []byte) ([]byte, []byte)
	}{
		{"the info of another key", provider.ImportInfo(other, a), nil, nil},
		{"the info of another algorithm", provider.ImportInfo(ref.ID, otherAlg), nil, nil},
		{"no info", nil, nil, nil},
		{"the info without its last byte", right[:len(right)-1], nil, nil},
		{"an AAD", right, []byte("aad"), nil},
		{"its enc tampered", right, nil, func(enc, ct []byte) ([]byte, []byte) { enc[len(enc)/2] ^= 1; return enc, ct }},
		{"its wrapped form tampered", right, nil, func(enc, ct []byte) ([]byte, []byte) { ct[0] ^= 0x80; return enc, ct }},
		{"its wrapped form truncated", right, nil, func(enc, ct []byte) ([]byte, []byte) { return enc, ct[:len(ct)-1] }},
		{"its enc truncated", right, nil, func(enc, ct []byte) ([]byte, []byte) { return enc[:len(enc)-1], ct }},
	}
	var f provFails
	for _, c := range cases {
		w, err := s.newWrapping(ctx, ref, core.DefaultImportWrapping)
		if err != nil {
			return err
		}
		enc, ct, err := w.wrapTo(c.info, c.aad, m.data)
		if err != nil {
			return err
		}
		if c.edit != nil {
			enc, ct = c.edit(enc, ct)
		}
		g, err := s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
		f.add(wantCode(fmt.Sprintf("Import(%s) of material wrapped with %s", ref, c.name), err, provider.EBADMSG, append(g.Handle, g.PublicKey...)))
	}
	return f.err()
}

// checkImportDestroy: Destroy of a wrapping key's handle succeeds (again
// too), and an Import with it is then ENOENT; an imported key is
// destroyed like a generated one: every operation with its handle is
// then ENOENT, another imported key unaffected.
func (s *provSuite) checkImportDestroy(ctx context.Context, a provider.Algorithm) error {
	m, ref, err := s.importCase(ctx, a, "destroyed-wrap")
	if err != nil {
		return err
	}
	w, err := s.newWrapping(ctx, ref, core.DefaultImportWrapping)
	if err != nil {
		return err
	}
	var f provFails
	for i := 0; i < 2; i++ {
		if err := s.p.Destroy(ctx, w.wrap, w.g.Handle); err != nil {
			f.addf("Destroy(%s) of an import wrapping key (#%d): %v; want success", w.wrap, i+1, err)
		}
	}
	enc, ct, err := w.wrapTo(provider.ImportInfo(ref.ID, a), nil, m.data)
	if err != nil {
		return err
	}
	g, err := s.p.Import(ctx, ref, w.wrap, w.g.Handle, enc, ct)
	f.add(wantCode(fmt.Sprintf("Import(%s) with a destroyed wrapping key", ref), err, provider.ENOENT, g.Handle))

	k, _, err := s.importKey(ctx, "destroyed", a, m, core.DefaultImportWrapping)
	if err != nil {
		return err
	}
	keep, _, err := s.importKey(ctx, "kept", a, m, core.DefaultImportWrapping)
	if err != nil {
		return err
	}
	if err := s.p.Destroy(ctx, k.ref, k.g.Handle); err != nil {
		return fmt.Errorf("Destroy(%s) of an imported key: %w; want success", k.ref, err)
	}
	for _, at := range s.misuse(ctx, k, k.ref, k.g.Handle, "its destroyed handle") {
		f.add(wantCode(at.what, at.err, provider.ENOENT, at.out))
	}
	if err := s.works(ctx, keep); err != nil {
		f.addf("another imported key after Destroy(%s): %v", k.ref, err)
	}
	return f.err()
}

// checkImportWrapping: every HPKE suite wraps (the default suite,
// core.DefaultImportWrapping, is required; another may be ENOTSUP,
// logged), whether or not the provider announces it for keys; two
// wrapping keys for one import differ; a wrapping key's handle is no
// key's: Decrypt with it fails, and it is refused under another wrap
// KeyRef (ENOENT, and it stays usable under its own); a wrap KeyRef of a
// non-HPKE algorithm is refused; and the provider holds at most
// MaxImportKeys, forgetting the oldest.
func (s *provSuite) checkImportWrapping(ctx context.Context) error {
	if _, err := s.importSupport(ctx); err != nil {
		return err
	}
	a, ok := s.cheapestImportable()
	if !ok {
		return skipf("provider announces no algorithm with an import format")
	}
	m, err := s.importMaterial(a)
	if err != nil {
		return err
	}
	var f provFails
	fastest := provider.Algorithm("")
	for _, suite := range []provider.Algorithm{provider.HPKEX25519, provider.HPKEP256, provider.HPKEMLKEM768X25519} {
		k, w, err := s.importKey(ctx, "wrapped-"+field2seg(string(suite)[:9]), a, m, suite)
		switch {
		case err != nil && suite != core.DefaultImportWrapping && errors.Is(err, provider.ErrNotSupported):
			s.logf("wrapping suite %s: %v (accepted: only %s is required)", suite, err, core.DefaultImportWrapping)
			continue
		case err != nil:
			f.addf("wrapping suite %s: %v", suite, err)
			continue
		}
		if fastest == "" {
			fastest = suite
		}
		if !bytes.Equal(k.g.PublicKey, m.pub) {
			f.addf("Import(%s) through %s: another public key than the imported key's", k.ref, suite)
		}
		f.add(s.works(ctx, k))
		w2, err := s.newWrapping(ctx, k.ref, suite)
		if err != nil {
			f.add(err)
			continue
		}
		if bytes.Equal(w.g.PublicKey, w2.g.PublicKey) || bytes.Equal(w.g.Handle, w2.g.Handle) {
			f.addf("two NewImportKey(%s) gave the same wrapping key or handle; want one-time keys", w.wrap)
		}
		// The wrapping key's handle is no key version's.
		enc, ct, err := hpkeSeal(suite, w2.g.PublicKey, provKeyInfo, provKeyAAD, []byte("to the wrapping key"))
		if err != nil {
			return err
		}
		pt, err := s.p.Decrypt(ctx, w2.wrap, w2.g.Handle, enc, ct, provKeyInfo, provKeyAAD)
		f.add(s.wantFailure(fmt.Sprintf("Decrypt(%s) with an import wrapping key's handle", w2.wrap), err, pt))
		other := w2.wrap
		if other.ID, err = provider.NewKeyID(provApp, "import", otherName(k.ref.ID.Name())); err != nil {
			return err
		}
		wenc, wct, err := w2.wrapTo(provider.ImportInfo(other.ID, a), nil, m.data)
		if err != nil {
			return err
		}
		otherRef := k.ref
		otherRef.ID = other.ID
		g, err := s.p.Import(ctx, otherRef, other, w2.g.Handle, wenc, wct)
		f.add(wantCode(fmt.Sprintf("Import(%s) with the wrapping key of %s under wrap ref %s", otherRef, w2.wrap, other), err, provider.ENOENT, g.Handle))
		wenc, wct, err = w2.wrapTo(provider.ImportInfo(k.ref.ID, a), nil, m.data)
		if err != nil {
			return err
		}
		v2 := k.ref
		v2.Version = 2
		if g, err = s.p.Import(ctx, v2, w2.wrap, w2.g.Handle, wenc, wct); err != nil {
			f.addf("Import(%s) with its own wrapping key, after it was refused under another wrap ref: %v; want success", v2, err)
		} else if !bytes.Equal(g.PublicKey, m.pub) {
			f.addf("Import(%s): another public key than the imported key's", v2)
		}
	}
	ref, err := s.ref("import", "not-hpke", a)
	if err != nil {
		return err
	}
	bad := importWrap(ref, a)
	bad.Use = ref.Use
	g, err := s.p.NewImportKey(ctx, bad)
	f.add(s.wantFailure(fmt.Sprintf("NewImportKey(%s), a wrap ref of a non-HPKE algorithm", bad), err, g.Handle))
	if fastest != "" {
		f.add(s.checkImportBound(ctx, ref, fastest))
	}
	return f.err()
}

// checkImportBound makes MaxImportKeys+1 wrapping keys: the first is
// forgotten (ENOENT), the last imports.
func (s *provSuite) checkImportBound(ctx context.Context, ref provider.KeyRef, suite provider.Algorithm) error {
	var first, last *provWrapping
	for i := 0; i <= provider.MaxImportKeys; i++ {
		w, err := s.newWrapping(ctx, ref, suite)
		if err != nil {
			return fmt.Errorf("wrapping key %d of %d: %w", i+1, provider.MaxImportKeys+1, err)
		}
		if i == 0 {
			first = w
		}
		last = w
	}
	m, err := s.importMaterial(ref.Algorithm)
	if err != nil {
		return err
	}
	var f provFails
	for _, c := range []struct {
		w    *provWrapping
		what string
		want provider.Code // 0: success
	}{{first, "the oldest of MaxImportKeys+1 wrapping keys", provider.ENOENT}, {last, "the newest of MaxImportKeys+1 wrapping keys", 0}} {
		enc, ct, err := c.w.wrapTo(provider.ImportInfo(ref.ID, ref.Algorithm), nil, m.data)
		if err != nil {
			return err
		}
		g, err := s.p.Import(ctx, ref, c.w.wrap, c.w.g.Handle, enc, ct)
		if c.want == 0 {
			if err != nil {
				f.addf("Import(%s) with %s: %v; want success", ref, c.what, err)
			}
			continue
		}
		f.add(wantCode(fmt.Sprintf("Import(%s) with %s", ref, c.what), err, c.want, g.Handle))
	}
	return f.err()
}

// cheapestImportable returns the announced algorithm with an import
// format whose material is quickest to make (not RSA).
func (s *provSuite) cheapestImportable() (provider.Algorithm, bool) {
	var best provider.Algorithm
	bestCost := -1.0
	for _, a := range s.algs {
		sp, err := s.reg.Lookup(a)
		if err != nil || !sp.Importable() {
			continue
		}
		if bestCost < 0 || sp.GenerateCost < bestCost {
			best, bestCost = a, sp.GenerateCost
		}
	}
	return best, bestCost >= 0
}

package softkey

import (
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// countSource is a deterministic test Source: every value is SHA-256 of a
// label and a counter, so no two draws repeat.
type countSource struct {
	n    atomic.Uint64
	fail atomic.Bool
}

var errSourceDown = errors.New("test source down")

func (s *countSource) fill(label string, out []byte) error {
	if s.fail.Load() {
		return errSourceDown
	}
	for i := 0; i < len(out); i += sha256.Size {
		var b []byte
		b = append(b, label...)
		b = binary.BigEndian.AppendUint64(b, s.n.Add(1))
		sum := sha256.Sum256(b)
		copy(out[i:], sum[:])
	}
	return nil
}

func (s *countSource) Material(_ provider.KeyRef, out []byte) error { return s.fill("material", out) }
func (s *countSource) WrapNonce(_ provider.KeyRef, out []byte) error {
	return s.fill("wrap-nonce", out)
}
func (s *countSource) SealNonce(_ provider.KeyRef, _, _, out []byte) error {
	return s.fill("seal-nonce", out)
}
func (s *countSource) ImportRandom(_ provider.KeyRef, out []byte) error {
	return s.fill("import", out)
}

func testKEK(b byte) secret.Bytes {
	k := make([]byte, KEKSize)
	for i := range k {
		k[i] = b + byte(i)
	}
	return secret.Own(k)
}

type engineOpt func(*Config)

func withName(n string) engineOpt   { return func(c *Config) { c.Info.Name = n } }
func withKEK(k byte) engineOpt      { return func(c *Config) { c.KEK = testKEK(k) } }
func withCache(n int) engineOpt     { return func(c *Config) { c.CacheSize = n } }
func withSource(s Source) engineOpt { return func(c *Config) { c.Source = s } }

func newEngine(t testing.TB, opts ...engineOpt) *Engine {
	t.Helper()
	reg := alg.Default()
	cfg := Config{
		Info:     provider.Info{Name: "soft", Version: "1", Secure: true, Algorithms: reg.Names()},
		Registry: reg,
		KEK:      testKEK(1),
		Source:   &countSource{},
	}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func mkref(t testing.TB, app, purpose, name string, a provider.Algorithm, v provider.Version, prov string) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID(app, purpose, name)
	if err != nil {
		t.Fatalf("NewKeyID: %v", err)
	}
	s, err := alg.Default().Lookup(a)
	use := provider.UseSign
	if err == nil {
		use = s.Use
	}
	return provider.KeyRef{ID: id, Version: v, Algorithm: a, Use: use, Provider: prov}
}

func ref(t testing.TB, name string, a provider.Algorithm) provider.KeyRef {
	return mkref(t, "app", "test", name, a, 1, "soft")
}

func generate(t testing.TB, e *Engine, r provider.KeyRef) provider.Generated {
	t.Helper()
	g, err := e.Generate(context.Background(), r)
	if err != nil {
		t.Fatalf("Generate(%s %s): %v", r, r.Algorithm, err)
	}
	return g
}

func wantCode(t testing.TB, what string, err error, want provider.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got nil error, want %s", what, want)
	}
	got, ok := provider.CodeOf(err)
	if !ok || got != want {
		t.Fatalf("%s: got error %q (code %v), want code %s", what, err, got, want)
	}
}

// use exercises the key of h under r: a signature, a seal or a tag.
func use(e *Engine, r provider.KeyRef, h provider.Handle) error {
	ctx := context.Background()
	switch r.Use {
	case provider.UseSign:
		_, err := e.Sign(ctx, r, h, []byte("msg"))
		return err
	case provider.UseMAC:
		_, err := e.MAC(ctx, r, h, []byte("msg"))
		return err
	case provider.UseAsymmetricDecrypt:
		// A message that is not one: EBADMSG once the key is found, the
		// errors of a missing or refused key before that.
		s, err := alg.Default().Lookup(r.Algorithm)
		if err != nil {
			return err
		}
		_, err = e.Decrypt(ctx, r, h, make([]byte, s.EncSize), make([]byte, s.Overhead), nil, nil)
		if errors.Is(err, provider.ErrBadMessage) {
			return nil
		}
		return err
	}
	_, err := e.Seal(ctx, r, h, []byte("pt"), []byte("aad"))
	return err
}

func sha256Sum(h []byte) [sha256.Size]byte { return sha256.Sum256(h) }

// hpkeSeal seals msg with crypto/hpke (base mode) to pub, a public key of
// the HPKE algorithm s.
func hpkeSeal(t testing.TB, s *alg.Spec, pub, info, aad, msg []byte) (enc, ct []byte) {
	t.Helper()
	kem, kdf, aead, err := s.Suite()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("%s public key: %v", s.Name, err)
	}
	enc, snd, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		t.Fatal(err)
	}
	ct, err = snd.Seal(aad, msg)
	if err != nil {
		t.Fatal(err)
	}
	return enc, ct
}

// ecdhX25519 returns the crypto/ecdh X25519 key of raw.
func ecdhX25519(raw []byte) (*ecdh.PrivateKey, error) { return ecdh.X25519().NewPrivateKey(raw) }

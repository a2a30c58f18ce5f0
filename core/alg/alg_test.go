package alg

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

func TestBuiltins(t *testing.T) {
	r, err := NewRegistry(Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(Default().Names()), len(Builtins()); got != want {
		t.Fatalf("Default has %d algorithms, want %d", got, want)
	}
	want := []provider.Algorithm{provider.Ed25519, provider.Ed448, provider.MLDSA44, provider.MLDSA65, provider.MLDSA87,
		provider.ECDSAP256, provider.ECDSAP384,
		provider.RSA2048PSS, provider.RSA3072PSS, provider.RSA4096PSS,
		provider.RSA2048PKCS1, provider.RSA3072PKCS1, provider.RSA4096PKCS1, provider.Ed25519ph,
		provider.XChaCha20Poly1305, provider.ChaCha20Poly1305, provider.AES256GCM,
		provider.HMACSHA256, provider.HMACSHA384, provider.HMACSHA512,
		provider.HPKEX25519, provider.HPKEP256, provider.HPKEMLKEM768X25519}
	if fmt.Sprint(r.Names()) != fmt.Sprint(want) {
		t.Fatalf("names %v, want %v", r.Names(), want)
	}
	for _, n := range want {
		s, err := r.Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		if b, ok := r.ByID(s.ID); !ok || b != s {
			t.Fatalf("ByID(%d) does not return %s", s.ID, n)
		}
	}
	if _, err := r.Lookup("rsa-1024"); !errors.Is(err, provider.ErrNotSupported) {
		t.Fatalf("unknown algorithm: %v", err)
	}
	if _, err := r.Lookup(provider.Algorithm(strings.Repeat("x", 10000))); !errors.Is(err, provider.ErrNotSupported) || len(err.Error()) > 200 {
		t.Fatalf("long unknown algorithm: %v", err)
	}
}

func TestRegistryRefusesDuplicates(t *testing.T) {
	b := Builtins()
	if _, err := NewRegistry(b[0], b[0]); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("duplicate name: %v", err)
	}
	other := b[1]
	other.ID = b[0].ID
	if _, err := NewRegistry(b[0], other); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("duplicate ID: %v", err)
	}
	if _, err := NewRegistry(Spec{Name: "x", ID: 99, Use: provider.UseSign}); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("spec without implementation: %v", err)
	}
}

// testMaterial returns the private material of a key of s made from
// fixed randomness, deterministically, once per spec (RSA keys take a
// while to make).
func testMaterial(t testing.TB, s *Spec) []byte {
	t.Helper()
	materialMu.Lock()
	defer materialMu.Unlock()
	if m, ok := materials[s.Name]; ok {
		return m
	}
	m, err := s.NewMaterial(bytes.Repeat([]byte{7}, s.RandomSize), true)
	if err != nil {
		t.Fatal(err)
	}
	materials[s.Name] = m
	return m
}

var (
	materialMu sync.Mutex
	materials  = map[provider.Algorithm][]byte{}
)

// digestOf returns msg's digest under h.
func digestOf(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

func TestSignVerifyEverySpec(t *testing.T) {
	for _, s := range Builtins() {
		if s.Use != provider.UseSign {
			continue
		}
		t.Run(string(s.Name), func(t *testing.T) {
			material := testMaterial(t, &s)
			for _, hedged := range []bool{false, true} {
				k, err := s.NewSigner(material, hedged)
				if err != nil {
					t.Fatal(err)
				}
				pub := k.PublicKey()
				if !s.PublicKeySizeOK(len(pub)) || !s.CheckPublicKey(pub) {
					t.Fatalf("public key of %d bytes is not well formed", len(pub))
				}
				sig, err := k.Sign([]byte("msg"))
				if err != nil || !s.SignatureSizeOK(len(sig)) {
					t.Fatalf("sign: %d bytes, %v", len(sig), err)
				}
				if !s.Verify(pub, []byte("msg"), sig) || s.Verify(pub, []byte("msG"), sig) {
					t.Fatal("verify is wrong")
				}
				// Hedged signing is randomized where the scheme has a choice
				// (ML-DSA, ECDSA, RSA-PSS); unhedged signing, and every
				// other scheme, is deterministic.
				again, err := k.Sign([]byte("msg"))
				if err != nil {
					t.Fatal(err)
				}
				name := string(s.Name)
				randomizable := strings.HasPrefix(name, "ml-dsa-") || strings.HasPrefix(name, "ecdsa-") || strings.Contains(name, "-pss-")
				if randomized := hedged && randomizable; bytes.Equal(sig, again) == randomized {
					t.Fatalf("hedged=%v: two signatures of one message equal=%v, want %v", hedged, !randomized, !randomized)
				}
				// Wrong sizes are invalid, never a panic.
				if s.Verify(pub[:1], []byte("msg"), sig) || s.Verify(pub, []byte("msg"), sig[:1]) || s.Verify(nil, nil, nil) ||
					s.Verify(pub, []byte("msg"), append(sig, 0)) {
					t.Fatal("verify accepted wrong sizes")
				}
				for _, v := range []string{fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprint(k)} {
					if v != "signer("+string(s.Name)+")" {
						t.Fatalf("signer prints as %q", v)
					}
				}
				checkDigestSigning(t, &s, k, sig, hedged && randomizable)
			}
			if _, err := s.NewSigner(material[:1], false); !errors.Is(err, provider.ErrInvalid) && !errors.Is(err, provider.ErrIO) {
				t.Fatalf("short material: %v", err)
			}
			if _, err := s.NewAEAD(material); !errors.Is(err, provider.ErrPermission) {
				t.Fatalf("AEAD from a sign spec: %v", err)
			}
			if _, err := s.NewMAC(material); !errors.Is(err, provider.ErrPermission) {
				t.Fatalf("MAC from a sign spec: %v", err)
			}
		})
	}
}

// checkDigestSigning checks SignDigest and VerifyDigest of k, whose
// signature of "msg" is sig: a digest signature is the message's (equal
// to it when signing is deterministic), and every other hash, size or
// algorithm is refused with the contract's code.
func checkDigestSigning(t *testing.T, s *Spec, k *Signer, sig []byte, randomized bool) {
	t.Helper()
	pub := k.PublicKey()
	if s.Hash == 0 {
		d := digestOf(crypto.SHA256, []byte("msg"))
		if _, err := k.SignDigest(crypto.SHA256, d); !errors.Is(err, provider.ErrPermission) {
			t.Fatalf("digest signing with %s: %v, want EPERM", s.Name, err)
		}
		if s.VerifyDigest(pub, crypto.SHA256, d, sig) {
			t.Fatal("VerifyDigest accepted a whole-message algorithm")
		}
		return
	}
	d := digestOf(s.Hash, []byte("msg"))
	ds, err := k.SignDigest(s.Hash, d)
	if err != nil {
		t.Fatal(err)
	}
	if !s.VerifyDigest(pub, s.Hash, d, ds) || !s.Verify(pub, []byte("msg"), ds) || !s.VerifyDigest(pub, s.Hash, d, sig) {
		t.Fatal("a digest signature is not the message's signature")
	}
	if !randomized && !bytes.Equal(ds, sig) {
		t.Fatal("deterministic digest signature differs from the message signature")
	}
	if s.VerifyDigest(pub, s.Hash, digestOf(s.Hash, []byte("msG")), ds) {
		t.Fatal("VerifyDigest accepted another digest")
	}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if h == s.Hash {
			continue
		}
		if _, err := k.SignDigest(h, digestOf(h, []byte("msg"))); !errors.Is(err, provider.ErrInvalid) {
			t.Fatalf("a %v digest: %v, want EINVAL", h, err)
		}
	}
	for _, bad := range [][]byte{nil, d[:len(d)-1], append(append([]byte(nil), d...), 0)} {
		if _, err := k.SignDigest(s.Hash, bad); !errors.Is(err, provider.ErrInvalid) {
			t.Fatalf("a digest of %d bytes: %v, want EINVAL", len(bad), err)
		}
		if s.VerifyDigest(pub, s.Hash, bad, ds) {
			t.Fatal("VerifyDigest accepted a digest of the wrong size")
		}
	}
	if _, err := k.SignDigest(crypto.MD5, make([]byte, 16)); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("an MD5 digest: %v, want EINVAL", err)
	}
}

// TestNewMaterial checks key generation: the size of the material, that
// deterministic generation repeats, and that the secure one does not.
func TestNewMaterial(t *testing.T) {
	for _, s := range Builtins() {
		if strings.HasPrefix(string(s.Name), "rsa-") && s.Name != provider.RSA2048PSS {
			continue // one RSA size is enough here; TestSignVerifyEverySpec makes the others
		}
		t.Run(string(s.Name), func(t *testing.T) {
			random := bytes.Repeat([]byte{3}, s.RandomSize)
			a, err := s.NewMaterial(random, true)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.NewMaterial(random, true)
			if err != nil {
				t.Fatal(err)
			}
			if !s.SecretSizeOK(len(a)) || !bytes.Equal(a, b) {
				t.Fatalf("deterministic material: %d bytes, repeats=%v", len(a), bytes.Equal(a, b))
			}
			if _, err := s.NewMaterial(random[:len(random)-1], true); !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("short randomness: %v", err)
			}
			if strings.HasPrefix(string(s.Name), "rsa-") {
				// The secure path ignores the randomness given (crypto/rsa
				// uses the operating system's): two keys differ.
				c, err := s.NewMaterial(random, false)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(a, c) {
					t.Fatal("secure RSA generation repeated the deterministic key")
				}
			}
		})
	}
}

// TestECDSAScalarOutOfRange feeds NewMaterial randomness that is not a
// valid scalar (zero, and the all-ones value above the group order): it
// must move on to the next candidate of the hash chain, never return an
// invalid key.
func TestECDSAScalarOutOfRange(t *testing.T) {
	for _, name := range []provider.Algorithm{provider.ECDSAP256, provider.ECDSAP384} {
		s, err := Default().Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, fill := range []byte{0x00, 0xff} {
			m, err := s.NewMaterial(bytes.Repeat([]byte{fill}, s.RandomSize), true)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(m, bytes.Repeat([]byte{fill}, s.RandomSize)) {
				t.Fatalf("%s: an out-of-range scalar was kept", name)
			}
			if _, err := s.NewSigner(m, false); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
}

func TestMACEverySpec(t *testing.T) {
	for _, s := range Builtins() {
		if s.Use != provider.UseMAC {
			continue
		}
		t.Run(string(s.Name), func(t *testing.T) {
			key := bytes.Repeat([]byte{5}, s.SecretSize)
			m, err := s.NewMAC(key)
			if err != nil {
				t.Fatal(err)
			}
			var newHash func() hash.Hash
			switch s.Name {
			case provider.HMACSHA256:
				newHash = sha256.New
			case provider.HMACSHA384:
				newHash = sha512.New384
			default:
				newHash = sha512.New
			}
			h := hmac.New(newHash, key)
			h.Write([]byte("msg"))
			tag, err := m.Tag([]byte("msg"))
			if err != nil || !bytes.Equal(tag, h.Sum(nil)) || len(tag) != s.MACSize {
				t.Fatalf("tag %x, %v; want crypto/hmac's", tag, err)
			}
			if !Equal(tag, h.Sum(nil)) || Equal(tag, tag[:len(tag)-1]) || Equal(tag, append(append([]byte(nil), tag...), 0)) {
				t.Fatal("Equal is wrong")
			}
			if _, err := m.Tag(make([]byte, provider.MaxMACMessage+1)); !errors.Is(err, provider.ErrTooLarge) {
				t.Fatalf("oversize message: %v", err)
			}
			if _, err := s.NewMAC(key[:1]); !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("short key: %v", err)
			}
			if _, err := s.NewSigner(key, false); !errors.Is(err, provider.ErrPermission) {
				t.Fatalf("signer from a MAC spec: %v", err)
			}
			for _, v := range []string{fmt.Sprintf("%+v", m), fmt.Sprintf("%#v", m), fmt.Sprint(m)} {
				if v != "mac("+string(s.Name)+")" {
					t.Fatalf("MAC prints as %q", v)
				}
			}
		})
	}
}

func TestAEADEverySpec(t *testing.T) {
	for _, s := range Builtins() {
		if s.Use != provider.UseDecrypt {
			continue
		}
		t.Run(string(s.Name), func(t *testing.T) {
			if s.SealLimit == 0 {
				t.Fatal("AEAD without a seal budget")
			}
			a, err := s.NewAEAD(bytes.Repeat([]byte{1}, s.SecretSize))
			if err != nil {
				t.Fatal(err)
			}
			nonce := make([]byte, s.NonceSize)
			out, err := a.Seal(nil, nonce, []byte("plain"), []byte("aad"))
			if err != nil || len(out) != s.NonceSize+5+s.Overhead {
				t.Fatalf("seal: %d bytes, %v", len(out), err)
			}
			pt, err := a.Open(nil, out, []byte("aad"))
			if err != nil || string(pt) != "plain" {
				t.Fatalf("open: %q %v", pt, err)
			}
			for _, bad := range [][]byte{out[:3], out[:len(out)-1], append(append([]byte(nil), out...), 0)} {
				if _, err := a.Open(nil, bad, []byte("aad")); !errors.Is(err, provider.ErrBadMessage) {
					t.Fatalf("malformed input: %v", err)
				}
			}
			if _, err := a.Open(nil, out, []byte("aaD")); !errors.Is(err, provider.ErrBadMessage) {
				t.Fatalf("wrong aad: %v", err)
			}
			if _, err := a.Seal(nil, nonce[:1], nil, nil); !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("short nonce: %v", err)
			}
			if _, err := s.NewAEAD(nonce[:1]); !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("short key: %v", err)
			}
			if fmt.Sprintf("%+v", a) != "aead("+string(s.Name)+")" {
				t.Fatalf("AEAD prints as %q", fmt.Sprintf("%+v", a))
			}
		})
	}
}

// TestBuiltinCosts: every built-in algorithm has a positive cost for
// the fair scheduler, in units of an Ed25519 signature.
func TestBuiltinCosts(t *testing.T) {
	for _, s := range Builtins() {
		if s.Cost <= 0 || s.GenerateCost <= 0 || s.CostPerMiB <= 0 {
			t.Errorf("%s: costs %v/%v/%v, want all positive", s.Name, s.Cost, s.GenerateCost, s.CostPerMiB)
		}
		if s.Name == provider.Ed25519 && s.Cost != 1 {
			t.Errorf("ed25519 sign cost %v: it is the unit (1)", s.Cost)
		}
	}
}

package alg

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
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
		provider.XChaCha20Poly1305, provider.ChaCha20Poly1305, provider.AES256GCM}
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

func TestSignVerifyEverySpec(t *testing.T) {
	for _, s := range Builtins() {
		if s.Use != provider.UseSign {
			continue
		}
		t.Run(string(s.Name), func(t *testing.T) {
			seed := bytes.Repeat([]byte{7}, s.SecretSize)
			for _, hedged := range []bool{false, true} {
				k, err := s.NewSigner(seed, hedged)
				if err != nil {
					t.Fatal(err)
				}
				pub := k.PublicKey()
				if len(pub) != s.PublicKeySize {
					t.Fatalf("public key %d bytes, want %d", len(pub), s.PublicKeySize)
				}
				sig, err := k.Sign([]byte("msg"))
				if err != nil || len(sig) != s.SignatureSize {
					t.Fatalf("sign: %d bytes, %v", len(sig), err)
				}
				if !s.Verify(pub, []byte("msg"), sig) || s.Verify(pub, []byte("msG"), sig) {
					t.Fatal("verify is wrong")
				}
				// ML-DSA signs hedged (randomized) when asked; everything else,
				// and ML-DSA when not asked, is deterministic.
				again, err := k.Sign([]byte("msg"))
				if err != nil {
					t.Fatal(err)
				}
				if randomized := hedged && strings.HasPrefix(string(s.Name), "ml-dsa-"); bytes.Equal(sig, again) == randomized {
					t.Fatalf("hedged=%v: two signatures of one message equal=%v, want %v", hedged, !randomized, !randomized)
				}
				// Wrong sizes are invalid, never a panic.
				if s.Verify(pub[:1], []byte("msg"), sig) || s.Verify(pub, []byte("msg"), sig[:1]) || s.Verify(nil, nil, nil) {
					t.Fatal("verify accepted wrong sizes")
				}
				for _, v := range []string{fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprint(k)} {
					if v != "signer("+string(s.Name)+")" {
						t.Fatalf("signer prints as %q", v)
					}
				}
			}
			if _, err := s.NewSigner(seed[:1], false); !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("short seed: %v", err)
			}
			if _, err := s.NewAEAD(seed); !errors.Is(err, provider.ErrPermission) {
				t.Fatalf("AEAD from a sign spec: %v", err)
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

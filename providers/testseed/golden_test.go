package testseed

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json from the current code")

var goldenPath = filepath.Join("testdata", "golden.json")

// The fixed inputs of the golden vectors.
var (
	goldenSeed      = seq(32) // 0x00 0x01 ... 0x1f
	goldenMessage   = []byte("keystored golden message")
	goldenPlaintext = []byte("keystored golden plaintext")
	goldenAAD       = []byte("keystored golden aad")
)

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// goldenFile is the content of testdata/golden.json. Byte strings are hex.
type goldenFile struct {
	Comment   string         `json:"comment"`
	Seed      string         `json:"seed"`
	Message   string         `json:"message"`
	Plaintext string         `json:"plaintext"`
	AAD       string         `json:"aad"`
	KEK       string         `json:"kek"`
	Vectors   []goldenVector `json:"vectors"`
}

type goldenVector struct {
	Algorithm provider.Algorithm `json:"algorithm"`
	KeyID     string             `json:"key_id"`
	Version   provider.Version   `json:"version"`
	Use       string             `json:"use"`
	Provider  string             `json:"provider"`
	PublicKey string             `json:"public_key,omitempty"`
	Handle    string             `json:"handle"`
	Signature string             `json:"signature,omitempty"`
	Sealed    string             `json:"sealed,omitempty"`
	Tag       string             `json:"tag,omitempty"`
}

func (v goldenVector) ref(t testing.TB) provider.KeyRef {
	t.Helper()
	id, err := provider.ParseKeyID(v.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	use, err := provider.ParseUse(v.Use)
	if err != nil {
		t.Fatal(err)
	}
	return provider.KeyRef{ID: id, Version: v.Version, Algorithm: v.Algorithm, Use: use, Provider: v.Provider}
}

func goldenRef(t testing.TB, a provider.Algorithm) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID("golden", "vectors", string(a))
	if err != nil {
		t.Fatal(err)
	}
	s, err := alg.Default().Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	return provider.KeyRef{ID: id, Version: 1, Algorithm: a, Use: s.Use, Provider: Name}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %.20q: %v", s, err)
	}
	return b
}

// makeGolden computes the golden vectors with the current code.
func makeGolden(t testing.TB) goldenFile {
	t.Helper()
	p, err := NewInsecure(goldenSeed)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := InsecureKEK(goldenSeed)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := goldenFile{
		Comment: "INSECURE testseed provider golden vectors; regenerate with " +
			"go test ./providers/testseed -run TestGolden -update (see docs/testing.md)",
		Seed:      hex.EncodeToString(goldenSeed),
		Message:   hex.EncodeToString(goldenMessage),
		Plaintext: hex.EncodeToString(goldenPlaintext),
		AAD:       hex.EncodeToString(goldenAAD),
		KEK:       hex.EncodeToString(kek),
	}
	for _, a := range alg.Default().Names() {
		r := goldenRef(t, a)
		g, err := p.Generate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		v := goldenVector{
			Algorithm: a, KeyID: r.ID.String(), Version: r.Version, Use: r.Use.String(), Provider: r.Provider,
			PublicKey: hex.EncodeToString(g.PublicKey), Handle: hex.EncodeToString(g.Handle),
		}
		switch r.Use {
		case provider.UseSign:
			sig, err := p.Sign(ctx, r, g.Handle, goldenMessage)
			if err != nil {
				t.Fatal(err)
			}
			v.Signature = hex.EncodeToString(sig)
			// A digest signature is the message's: every testseed
			// signature is deterministic, so it is pinned by the same
			// vector.
			if s, _ := alg.Default().Lookup(a); s != nil && s.Hash != 0 {
				h := s.Hash.New()
				h.Write(goldenMessage)
				dsig, err := p.SignDigest(ctx, r, g.Handle, s.Hash, h.Sum(nil))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(dsig, sig) {
					t.Errorf("%s: SignDigest of the golden message's digest differs from Sign of the message", a)
				}
			}
		case provider.UseMAC:
			tag, err := p.MAC(ctx, r, g.Handle, goldenMessage)
			if err != nil {
				t.Fatal(err)
			}
			v.Tag = hex.EncodeToString(tag)
		case provider.UseAsymmetricDecrypt:
			// HPKE senders choose their own randomness, so no output of
			// the key is pinned but its public key and handle (which
			// pin the material); the round trip is checked here and
			// independently in TestGoldenIndependent.
			got, err := exercise(p, r, g.Handle, g.PublicKey)
			if err != nil || !bytes.Equal(got, goldenPlaintext) {
				t.Errorf("%s: Decrypt of a message sealed with crypto/hpke: %q, %v; want the plaintext", a, got, err)
			}
		default:
			sealed, err := p.Seal(ctx, r, g.Handle, goldenPlaintext, goldenAAD)
			if err != nil {
				t.Fatal(err)
			}
			v.Sealed = hex.EncodeToString(sealed)
		}
		f.Vectors = append(f.Vectors, v)
	}
	return f
}

func readGolden(t testing.TB) goldenFile {
	t.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("reading golden vectors (create them with -update): %v", err)
	}
	var f goldenFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("decoding %s: %v", goldenPath, err)
	}
	return f
}

// TestGolden regenerates every vector and compares it byte for byte with
// testdata/golden.json; -update rewrites the file instead.
func TestGolden(t *testing.T) {
	got := makeGolden(t)
	enc, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	enc = append(enc, '\n')
	if *update {
		if err := os.WriteFile(goldenPath, enc, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", goldenPath)
		return
	}
	want := readGolden(t)
	if len(want.Vectors) != len(got.Vectors) {
		t.Fatalf("golden file has %d vectors, code makes %d", len(want.Vectors), len(got.Vectors))
	}
	for _, f := range []struct{ name, got, want string }{
		{"seed", got.Seed, want.Seed}, {"message", got.Message, want.Message},
		{"plaintext", got.Plaintext, want.Plaintext}, {"aad", got.AAD, want.AAD}, {"kek", got.KEK, want.KEK},
	} {
		if f.got != f.want {
			t.Errorf("%s: got %s, want %s", f.name, f.got, f.want)
		}
	}
	for i, g := range got.Vectors {
		w := want.Vectors[i]
		for _, f := range []struct{ name, got, want string }{
			{"algorithm", string(g.Algorithm), string(w.Algorithm)}, {"key_id", g.KeyID, w.KeyID},
			{"use", g.Use, w.Use}, {"provider", g.Provider, w.Provider},
			{"public_key", g.PublicKey, w.PublicKey}, {"handle", g.Handle, w.Handle},
			{"signature", g.Signature, w.Signature}, {"sealed", g.Sealed, w.Sealed}, {"tag", g.Tag, w.Tag},
		} {
			if f.got != f.want {
				t.Errorf("%s %s drifted:\n got %.80s...\nwant %.80s...", g.Algorithm, f.name, f.got, f.want)
			}
		}
		if g.Version != w.Version {
			t.Errorf("%s version: got %d, want %d", g.Algorithm, g.Version, w.Version)
		}
	}
	if b, _ := os.ReadFile(goldenPath); !bytes.Equal(b, enc) {
		t.Errorf("%s is not byte-identical to the regenerated file (run with -update after review)", goldenPath)
	}
}

// TestGoldenIndependent checks every golden vector against independent
// implementations and an independent reimplementation of the documented
// derivations (docs/testing.md), not against the provider's code.
func TestGoldenIndependent(t *testing.T) {
	f := readGolden(t)
	seed := unhex(t, f.Seed)
	msg, pt, aad := unhex(t, f.Message), unhex(t, f.Plaintext), unhex(t, f.AAD)
	salt := []byte("keystored/testseed/v1")
	kek, err := hkdf.Key(sha256.New, seed, salt, "kek", 32)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(kek) != f.KEK {
		t.Errorf("kek: HKDF(seed, salt, \"kek\") = %x, golden %s", kek, f.KEK)
	}
	wrapper, err := chacha20poly1305.NewX(kek)
	if err != nil {
		t.Fatal(err)
	}
	kekID, err := hkdf.Key(sha256.New, kek, nil, "keystored/softkey/kek-id/v1", 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) != len(alg.Default().Names()) {
		t.Errorf("golden file has %d vectors, want one per algorithm (%d)", len(f.Vectors), len(alg.Default().Names()))
	}
	for _, v := range f.Vectors {
		r := v.ref(t)
		refBin, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := alg.Default().Lookup(r.Algorithm)
		if err != nil {
			t.Fatal(err)
		}
		// The HKDF output is the material itself but for ECDSA (the first
		// valid scalar of a hash chain from it) and RSA (the key of a
		// prime search): docs/testing.md.
		random, err := hkdf.Key(sha256.New, seed, salt, "key"+string(refBin), randomSize(r.Algorithm, s.SecretSize))
		if err != nil {
			t.Fatal(err)
		}
		material := independentMaterial(t, r.Algorithm, random)
		known, err := InsecureKnownSecrets(seed, r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(known[0], material) {
			t.Errorf("%s: InsecureKnownSecrets material differs from the documented derivation", v.Algorithm)
		}

		// Handle: "KSW1" ‖ KEK ID ‖ nonce ‖ XChaCha20-Poly1305(KEK, nonce, material, label ‖ ref).
		h := unhex(t, v.Handle)
		if len(h) != 4+8+24+len(material)+16 {
			t.Fatalf("%s: handle is %d bytes", v.Algorithm, len(h))
		}
		if string(h[:4]) != "KSW1" || !bytes.Equal(h[4:12], kekID) {
			t.Errorf("%s: handle header %x, want KSW1 ‖ %x", v.Algorithm, h[:12], kekID)
		}
		wrapNonce, _ := hkdf.Key(sha256.New, seed, salt, "wrap-nonce"+string(refBin), 24)
		if !bytes.Equal(h[12:36], wrapNonce) {
			t.Errorf("%s: wrap nonce is not HKDF(seed, salt, \"wrap-nonce\" ‖ ref)", v.Algorithm)
		}
		unwrapped, err := wrapper.Open(nil, h[12:36], h[36:], append([]byte("keystored/softkey/handle/v1"), refBin...))
		if err != nil || !bytes.Equal(unwrapped, material) {
			t.Errorf("%s: handle does not unwrap to the material (err %v)", v.Algorithm, err)
		}

		switch r.Use {
		case provider.UseSign:
			checkSignature(t, v, material, msg)
			continue
		case provider.UseMAC:
			checkTag(t, v, material, msg)
			continue
		case provider.UseAsymmetricDecrypt:
			checkHPKE(t, v, s, material, pt, aad)
			continue
		}
		// Sealed: nonce = HMAC(HKDF(seed, salt, "seal-nonce" ‖ ref), u32be(len(aad)) ‖ aad ‖ pt)[:n].
		sealed := unhex(t, v.Sealed)
		nk, _ := hkdf.Key(sha256.New, seed, salt, "seal-nonce"+string(refBin), 32)
		m := hmac.New(sha256.New, nk)
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(aad))))
		m.Write(aad)
		m.Write(pt)
		nonce := m.Sum(nil)[:s.NonceSize]
		if !bytes.Equal(sealed[:s.NonceSize], nonce) {
			t.Errorf("%s: seal nonce is not the documented HMAC", v.Algorithm)
		}
		var a cipher.AEAD
		switch r.Algorithm {
		case provider.XChaCha20Poly1305:
			a, err = chacha20poly1305.NewX(material)
		case provider.ChaCha20Poly1305:
			a, err = chacha20poly1305.New(material)
		case provider.AES256GCM:
			var b cipher.Block
			if b, err = aes.NewCipher(material); err == nil {
				a, err = cipher.NewGCM(b)
			}
		default:
			t.Fatalf("no independent implementation for %s", r.Algorithm)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Open(nil, sealed[:s.NonceSize], sealed[s.NonceSize:], aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("%s: sealed vector does not open independently (err %v)", v.Algorithm, err)
		}
	}
}

// checkSignature derives the public key from the material and verifies the
// golden signature with crypto/ed25519 and circl.
func checkSignature(t *testing.T, v goldenVector, material, msg []byte) {
	t.Helper()
	pub, sig := unhex(t, v.PublicKey), unhex(t, v.Signature)
	var derived []byte
	var ok bool
	switch v.Algorithm {
	case provider.Ed25519:
		// RFC 8032: the private key is the 32-byte seed; the public key is
		// [s]B with s from SHA-512(seed).
		derived = ed25519.NewKeyFromSeed(material).Public().(ed25519.PublicKey)
		ok = ed25519.Verify(pub, msg, sig)
	case provider.Ed448:
		derived = ed448.NewKeyFromSeed(material).Public().(ed448.PublicKey)
		ok = ed448.Verify(pub, msg, sig, "")
	case provider.MLDSA44:
		var s [mldsa44.SeedSize]byte
		copy(s[:], material)
		pk, _ := mldsa44.NewKeyFromSeed(&s)
		derived = pk.Bytes()
		ok = mldsa44.Verify(pk, msg, nil, sig)
	case provider.MLDSA65:
		var s [mldsa65.SeedSize]byte
		copy(s[:], material)
		pk, _ := mldsa65.NewKeyFromSeed(&s)
		derived = pk.Bytes()
		ok = mldsa65.Verify(pk, msg, nil, sig)
	case provider.MLDSA87:
		var s [mldsa87.SeedSize]byte
		copy(s[:], material)
		pk, _ := mldsa87.NewKeyFromSeed(&s)
		derived = pk.Bytes()
		ok = mldsa87.Verify(pk, msg, nil, sig)
	case provider.Ed25519ph:
		derived = ed25519.NewKeyFromSeed(material).Public().(ed25519.PublicKey)
		d := sha512.Sum512(msg)
		ok = ed25519.VerifyWithOptions(pub, d[:], sig, &ed25519.Options{Hash: crypto.SHA512}) == nil
		// Ed25519ph is deterministic (RFC 8032): the signature is the one
		// crypto/ed25519 makes.
		again, err := ed25519.NewKeyFromSeed(material).Sign(nil, d[:], &ed25519.Options{Hash: crypto.SHA512})
		if err != nil || !bytes.Equal(again, sig) {
			t.Errorf("%s: golden signature is not crypto/ed25519's (err %v)", v.Algorithm, err)
		}
	case provider.ECDSAP256, provider.ECDSAP384:
		derived, ok = checkECDSA(t, v, material, msg)
	case provider.RSA2048PSS, provider.RSA3072PSS, provider.RSA4096PSS,
		provider.RSA2048PKCS1, provider.RSA3072PKCS1, provider.RSA4096PKCS1:
		derived, ok = checkRSA(t, v, material, msg)
	default:
		t.Fatalf("no independent implementation for %s", v.Algorithm)
	}
	if !bytes.Equal(derived, pub) {
		t.Errorf("%s: public key is not the one derived from the material", v.Algorithm)
	}
	if !ok {
		t.Errorf("%s: golden signature does not verify independently", v.Algorithm)
	}
}

// checkHPKE derives the public key from the material with crypto/ecdh
// (the DHKEMs) or crypto/hpke (X-Wing), compares it with the golden one,
// and decrypts with crypto/hpke under the material a message crypto/hpke
// sealed to the golden public key: the golden key pair is one HPKE key
// pair, independently of the provider. Then the provider decrypts a
// message sealed to that public key.
func checkHPKE(t *testing.T, v goldenVector, s *alg.Spec, material, pt, aad []byte) {
	t.Helper()
	pub := unhex(t, v.PublicKey)
	var derived []byte
	switch v.Algorithm {
	case provider.HPKEX25519, provider.HPKEP256:
		curve := ecdh.X25519()
		if v.Algorithm == provider.HPKEP256 {
			curve = ecdh.P256()
		}
		k, err := curve.NewPrivateKey(material)
		if err != nil {
			t.Fatalf("%s: material is not a %v private key: %v", v.Algorithm, curve, err)
		}
		derived = k.PublicKey().Bytes()
	default:
		kem, err := hpke.NewKEM(s.KEMID)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kem.NewPrivateKey(material)
		if err != nil {
			t.Fatalf("%s: material is not a private key: %v", v.Algorithm, err)
		}
		derived = k.PublicKey().Bytes()
	}
	if !bytes.Equal(derived, pub) {
		t.Errorf("%s: public key is not the one derived from the material", v.Algorithm)
	}
	enc, ct, err := hpkeSeal(v.Algorithm, pub, aad, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	kem, err := hpke.NewKEM(s.KEMID)
	if err != nil {
		t.Fatal(err)
	}
	kdf, err := hpke.NewKDF(s.KDFID)
	if err != nil {
		t.Fatal(err)
	}
	aeadAlg, err := hpke.NewAEAD(s.AEADID)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := kem.NewPrivateKey(material)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(enc, priv, kdf, aeadAlg, aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Open(aad, ct); err != nil || !bytes.Equal(got, pt) {
		t.Errorf("%s: crypto/hpke under the material does not open a message to the golden public key (%v)", v.Algorithm, err)
	}
	p, err := NewInsecure(goldenSeed)
	if err != nil {
		t.Fatal(err)
	}
	ref := v.ref(t)
	got, err := p.Decrypt(context.Background(), ref, unhex(t, v.Handle), enc, ct, aad, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Errorf("%s: the provider does not decrypt a message to the golden public key with the golden handle (%v)", v.Algorithm, err)
	}
}

// TestEd25519RFC8032 checks the RFC 8032 §7.1 TEST 1 relationship between
// a seed and its public key through the provider's own signer path, and
// that the provider's ed25519 public key is crypto/ed25519's for the
// derived material.
func TestEd25519RFC8032(t *testing.T) {
	seed := unhex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	wantPub := "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	s, _ := alg.Default().Lookup(provider.Ed25519)
	signer, err := s.NewSigner(seed, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(signer.PublicKey()); got != wantPub {
		t.Errorf("RFC 8032 TEST 1 public key: got %s, want %s", got, wantPub)
	}
	sig, err := signer.Sign(nil)
	if err != nil {
		t.Fatal(err)
	}
	wantSig := "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
	if got := hex.EncodeToString(sig); got != wantSig {
		t.Errorf("RFC 8032 TEST 1 signature: got %s, want %s", got, wantSig)
	}

	p, err := NewInsecure(goldenSeed)
	if err != nil {
		t.Fatal(err)
	}
	r := goldenRef(t, provider.Ed25519)
	g, err := p.Generate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	known, err := InsecureKnownSecrets(goldenSeed, r)
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(known[0])
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), g.PublicKey) {
		t.Error("provider's ed25519 public key is not crypto/ed25519's for the derived seed")
	}
	if !bytes.Equal(known[1], priv) {
		t.Error("InsecureKnownSecrets' expanded ed25519 key is not seed ‖ public key")
	}
}

package alg

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"sync"

	"golang.org/x/crypto/chacha20"

	"github.com/nexus-os/keystored/core/provider"
)

// rsaExponent is the public exponent of every RSA key keystored makes and
// accepts.
const rsaExponent = 65537

// rsaSpec is the spec of RSA with a bits-bit modulus, signing SHA-256
// digests with RSASSA-PSS (pss: MGF1-SHA-256, salt as long as the hash) or
// RSASSA-PKCS1-v1_5. The private material is the PKCS #1 RSAPrivateKey
// DER, the public key the PKCS #1 RSAPublicKey DER, a signature as long
// as the modulus.
func rsaSpec(name provider.Algorithm, id uint8, bits int, pss bool, cost, generateCost float64) Spec {
	size := bits / 8
	pssOpts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	parsePub := func(pub []byte) (*rsa.PublicKey, bool) {
		k, err := x509.ParsePKCS1PublicKey(pub)
		if err != nil || k.N.BitLen() != bits || k.E != rsaExponent {
			return nil, false
		}
		return k, true
	}
	verifyDigest := func(pub, digest, sig []byte) bool {
		k, ok := parsePub(pub)
		if !ok || len(sig) != size {
			return false
		}
		if pss {
			return rsa.VerifyPSS(k, crypto.SHA256, digest, sig, pssOpts) == nil
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	}
	return Spec{
		Name: name, ID: id, Use: provider.UseSign,
		// A PKCS #1 private key holds n, d and five values of half its
		// size or less, each with a DER header: under 5 modulus sizes.
		SecretSize: 5*size + 64, SecretVaries: true, RandomSize: 32,
		PublicKeySize: size + 32, PublicKeyVaries: true,
		SignatureSize: size,
		Hash:          crypto.SHA256,
		Cost:          cost, GenerateCost: generateCost, CostPerMiB: 36,
		checkPublic: func(pub []byte) bool { _, ok := parsePub(pub); return ok },
		importKey:   importRSA(name, bits),
		newMaterial: func(random []byte, deterministic bool) ([]byte, error) {
			var k *rsa.PrivateKey
			var err error
			if deterministic {
				if m, ok := detRSA.get(random, bits); ok {
					return m, nil
				}
				k, err = insecureDeterministicRSAKey(random, bits)
				if err == nil {
					m := x509.MarshalPKCS1PrivateKey(k)
					detRSA.put(random, bits, m)
					return m, nil
				}
			} else {
				k, err = rsa.GenerateKey(rand.Reader, bits)
			}
			if err != nil {
				return nil, provider.Errorf(provider.EIO, "%s key generation failed: %w", string(name), err)
			}
			return x509.MarshalPKCS1PrivateKey(k), nil
		},
		verifyDigest: verifyDigest,
		newSigner: func(material []byte, hedged bool) (signFuncs, []byte, error) {
			k, err := x509.ParsePKCS1PrivateKey(material)
			if err != nil || k.N.BitLen() != bits || k.E != rsaExponent {
				return signFuncs{}, nil, provider.Errorf(provider.EIO, "%s private key does not parse", string(name))
			}
			pub := x509.MarshalPKCS1PublicKey(&k.PublicKey)
			// The deterministic PSS salt hashes the material: keep a copy,
			// since the caller clears its own once the signer is made.
			var saltKey []byte
			if pss && !hedged {
				saltKey = append([]byte(nil), material...)
			}
			signDigest := func(digest []byte) ([]byte, error) {
				var sig []byte
				var err error
				switch {
				case !pss:
					sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest)
				case hedged:
					sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, digest, pssOpts)
				default:
					sig, err = rsa.SignPSS(deterministicSalt(saltKey, digest), k, crypto.SHA256, digest, pssOpts)
				}
				if err != nil {
					return nil, provider.Errorf(provider.EIO, "%s sign failed: %w", string(name), err)
				}
				return sig, nil
			}
			return signFuncs{
				signDigest: signDigest,
			}, pub, nil
		},
	}
}

// deterministicSalt is the PSS salt of an unhedged (deterministic
// provider's) signature: SHA-256(material ‖ digest), the same for the
// same key and digest.
func deterministicSalt(material, digest []byte) *saltReader {
	h := sha256.New()
	_, _ = h.Write(material) // hash.Hash.Write never fails
	_, _ = h.Write(digest)
	return &saltReader{b: h.Sum(nil)}
}

// saltReader reads its bytes and then zeros.
type saltReader struct{ b []byte }

func (r *saltReader) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	clear(p[n:])
	r.b = r.b[n:]
	return len(p), nil
}

// detRSA remembers the last deterministic RSA keys made, by their seed:
// a deterministic provider makes the same key again for the same seed
// and key reference (every test run, every restart), and the search
// takes up to a second. Only INSECURE keys are kept, which anyone with
// the test provider's seed derives anyway.
var detRSA = &rsaMemo{m: map[[sha256.Size]byte][]byte{}}

// maxRSAMemo bounds detRSA.
const maxRSAMemo = 256

type rsaMemo struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte][]byte
}

func rsaMemoKey(seed []byte, bits int) [sha256.Size]byte {
	h := sha256.New()
	_, _ = h.Write(seed) // hash.Hash.Write never fails
	_, _ = h.Write([]byte{byte(bits >> 8), byte(bits)})
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (r *rsaMemo) get(seed []byte, bits int) ([]byte, bool) {
	k := rsaMemoKey(seed, bits)
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.m[k]
	return append([]byte(nil), m...), ok
}

func (r *rsaMemo) put(seed []byte, bits int, m []byte) {
	k := rsaMemoKey(seed, bits)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= maxRSAMemo {
		for old := range r.m {
			delete(r.m, old)
			break
		}
	}
	r.m[k] = append([]byte(nil), m...)
}

// insecureDeterministicRSAKey makes an RSA key whose primes are the first
// probable primes (with the top two bits set, and p-1 prime to the
// exponent) in a ChaCha20 stream keyed by seed: the same seed gives the
// same key (docs/testing.md has the byte-exact derivation). Only the deterministic, INSECURE test provider uses it:
// crypto/rsa.GenerateKey ignores any random source but the operating
// system's since Go 1.26, and the search here is not constant time.
func insecureDeterministicRSAKey(seed []byte, bits int) (*rsa.PrivateKey, error) {
	stream, err := chacha20.NewUnauthenticatedCipher(seed, make([]byte, chacha20.NonceSize))
	if err != nil {
		return nil, err
	}
	e := big.NewInt(rsaExponent)
	one := big.NewInt(1)
	prime := func() (*big.Int, error) {
		b := make([]byte, bits/16)
		// A prime of bits/2 bits is found within a few thousand candidates
		// with overwhelming probability; the bound only stops a runaway.
		for range 1 << 16 {
			clear(b)
			stream.XORKeyStream(b, b)
			b[0] |= 0xc0
			b[len(b)-1] |= 1
			p := new(big.Int).SetBytes(b)
			if new(big.Int).Mod(new(big.Int).Sub(p, one), e).Sign() != 0 && p.ProbablyPrime(20) {
				return p, nil
			}
		}
		return nil, provider.Errorf(provider.EIO, "no prime found")
	}
	p, err := prime()
	if err != nil {
		return nil, err
	}
	q, err := prime()
	if err != nil {
		return nil, err
	}
	if p.Cmp(q) == 0 {
		return nil, provider.Errorf(provider.EIO, "equal primes")
	}
	n := new(big.Int).Mul(p, q)
	pm, qm := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
	lambda := new(big.Int).Div(new(big.Int).Mul(pm, qm), new(big.Int).GCD(nil, nil, pm, qm))
	d := new(big.Int).ModInverse(e, lambda)
	if d == nil || n.BitLen() != bits {
		return nil, provider.Errorf(provider.EIO, "primes do not make a %d-bit key", bits)
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: rsaExponent}, D: d, Primes: []*big.Int{p, q}}
	k.Precompute()
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return k, nil
}
